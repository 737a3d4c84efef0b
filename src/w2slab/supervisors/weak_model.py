"""The weak supervisor of Burns et al.: a small model trained on ground truth, whose soft predictions
on the transfer half become the student's labels."""
from __future__ import annotations

import numpy as np

from ..errors import NotFittedError
from ..training.heads import HEADS


class WeakModelSupervisor:
    """A head of type ``head`` trained on the weak model's features with ground truth.

    ``fit`` holds out ``val_fraction`` of its items (seeded, by group when ``groups`` is given) for model
    selection on ground truth, which is fair here: the weak model is the ground-truth-trained reference.
    """

    def __init__(self, *, head: str = "logistic", head_params: dict | None = None, val_fraction: float = 0.15,
                 seed: int = 0) -> None:
        self.head = head
        self.head_params = head_params
        self.val_fraction = val_fraction
        self.seed = seed

    def fit(self, X, y, *, sample_weight=None, groups: np.ndarray | None = None) -> "WeakModelSupervisor":
        """X: (n, d) weak-model features of half A; y: (n,) ground truth in {0, 1}."""
        y = np.asarray(y, dtype=np.float32)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        rng = np.random.default_rng(self.seed)
        unique = rng.permutation(np.unique(groups))
        held = np.isin(groups, unique[: max(1, int(round(self.val_fraction * len(unique))))])
        fit_idx, val_idx = np.flatnonzero(~held), np.flatnonzero(held)
        self.model_ = HEADS.get(self.head)(**{**(self.head_params or {}), "loss": "xent", "seed": self.seed})
        weights = None if sample_weight is None else np.asarray(sample_weight)[fit_idx]
        self.model_.fit(X[fit_idx], y[fit_idx], sample_weight=weights, eval_set=(X[val_idx], y[val_idx]))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) class probabilities; column 1 is the soft weak label P(class = 1)."""
        if not hasattr(self, "model_"):
            raise NotFittedError("WeakModelSupervisor is not fitted yet: call fit first")
        return self.model_.predict_proba(X)
