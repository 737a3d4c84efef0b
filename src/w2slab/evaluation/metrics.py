"""Classification metrics on binary ground truth. ``y``: int array (n,) in {0, 1}; ``p``: float array (n,)
= predicted P(class = 1). Higher is better for every metric here."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of items where the 0.5-thresholded prediction equals the label."""
    return float(np.mean((np.asarray(p) >= 0.5) == (np.asarray(y) == 1)))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney form, ties count half); NaN when y has one class."""
    y = np.asarray(y)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """{"accuracy", "auc", "n"} for ground truth y (n,) and P(class 1) p (n,)."""
    return {"accuracy": accuracy(y, p), "auc": roc_auc(y, p), "n": int(len(y))}


def imitation_metrics(y: np.ndarray, p_weak: np.ndarray, p_student: np.ndarray) -> dict[str, float]:
    """Does the student copy its supervisor's errors? Hard predictions on the test set, averaged over seeds.

    y: (n,) ground truth; p_weak, p_student: (n,) or (n_seeds, n) P(class 1). Returns overall agreement,
    agreement where the supervisor is wrong (1.0 = every error copied) and where it is right, and the share of
    supervisor errors (NaN where the supervisor is never wrong)."""
    weak = np.atleast_2d(p_weak) >= 0.5
    student = np.atleast_2d(p_student) >= 0.5
    weak = np.broadcast_to(weak, student.shape)
    agree = weak == student
    wrong = weak != (np.asarray(y)[None, :] == 1)
    with np.errstate(invalid="ignore"):
        return {"agreement": float(agree.mean()),
                "agreement_where_supervisor_wrong": float(agree[wrong].mean()) if wrong.any() else float("nan"),
                "agreement_where_supervisor_right": float(agree[~wrong].mean()) if (~wrong).any() else float("nan"),
                "supervisor_error_rate": float(wrong.mean())}


def reliability_bins(confidence, correct, *, edges=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> list[dict]:
    """Confidence against accuracy: per bin [edges[i], edges[i+1]] (a value on an inner edge goes to the lower
    bin) of ``confidence`` (n,) in [0, 1], {"low", "high", "n", "confidence" (mean), "accuracy" (mean of
    ``correct`` (n,) in {0, 1})}; an empty bin has n = 0 and None for both means."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    edges = np.asarray(edges, dtype=float)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, len(edges) - 2)
    out = []
    for b, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        members = index == b
        out.append({"low": float(low), "high": float(high), "n": int(members.sum()),
                    "confidence": float(confidence[members].mean()) if members.any() else None,
                    "accuracy": float(correct[members].mean()) if members.any() else None})
    return out


def expected_calibration_error(confidence, correct, *, bins: int = 5) -> float:
    """ECE: |accuracy − mean confidence| per equal-width confidence bin of [0, 1], weighted by the bin's share of
    items (:func:`reliability_bins`)."""
    table = reliability_bins(confidence, correct, edges=np.linspace(0, 1, bins + 1))
    n = sum(b["n"] for b in table)
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in table if b["n"]))
