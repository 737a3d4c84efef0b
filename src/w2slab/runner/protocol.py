"""The weak-to-strong protocol's pure pieces: the group-aware split and the two training stages.

Leak-proofing is structural: ``train_student`` receives feature rows and *targets* only. The caller passes
weak-model predictions as targets in transfer runs and ground truth only in ceiling runs, and
``transfer_targets`` is the one place that builds transfer targets: from weak predictions alone.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError
from ..supervisors import WeakModelSupervisor
from ..training import HEADS


@dataclasses.dataclass(frozen=True)
class Split:
    """Item indices (int64 arrays) of weak half A, transfer half B, the validation slice and the test set."""

    weak: np.ndarray
    transfer: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("weak", "transfer", "val", "test")}


# Below these sizes numbers are refused (docs/protocol.md): with fewer than 16 test items the 95% interval of an
# accuracy is wider than ±0.25, so even 0.75 cannot be told from chance; halves of under 8 items cannot be fit.
MIN_SPLIT = {"weak": 8, "transfer": 8, "val": 4, "test": 16}
WARN_TEST = 100  # under 100 test items (interval about ±0.1) results are computed with a warning


def check_split(split: Split, labels: np.ndarray, task: str) -> None:
    """DataError with the sizes when a part is smaller than MIN_SPLIT or holds one class only; a logged warning
    with the sizes when the test set is under WARN_TEST items."""
    import logging

    from ..errors import DataError

    sizes = split.sizes()
    if sizes["test"] < WARN_TEST:
        logging.getLogger(__name__).warning(
            "task %s: only %d test items (split %s): accuracies carry 95%% intervals of about ±%.2f", task,
            sizes["test"], sizes, 1.96 * (0.25 / max(sizes["test"], 1)) ** 0.5)
    small = [f"{k} {sizes[k]} < {m}" for k, m in MIN_SPLIT.items() if sizes[k] < m]
    if small:
        raise DataError(f"task {task!r} has too few items for the protocol ({len(labels)} items; split "
                        f"{', '.join(f'{k}={v}' for k, v in sizes.items())}: {', '.join(small)}); "
                        "use more items (--n-examples, or a larger file)")
    for name in MIN_SPLIT:
        if len(np.unique(labels[getattr(split, name)])) < 2:
            raise DataError(f"task {task!r}: the {name} part holds one class only; use more items")


def group_split(groups: np.ndarray, *, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Split items so that every group lies in one part; fractions are of items (approximately, by group).

    groups: int array (n,). Groups are shuffled with ``seed`` and dealt in order to test, validation, then
    the remainder in two halves by item count. Labels are not used, so the split cannot leak them.
    """
    rng = np.random.default_rng(seed)
    unique, counts = np.unique(groups, return_counts=True)
    order = rng.permutation(len(unique))
    cumulative = np.cumsum(counts[order]) / len(groups)  # share of items up to and including each group
    rest = 1 - test_fraction - val_fraction
    bounds = [test_fraction, test_fraction + val_fraction, test_fraction + val_fraction + rest / 2]
    part_of_group = np.searchsorted(bounds, cumulative - 1e-12, side="left")  # 0 test, 1 val, 2 A, 3 B
    part = np.empty(len(unique), dtype=np.int64)
    part[order] = part_of_group
    item_part = part[np.searchsorted(unique, groups)]
    return Split(weak=np.flatnonzero(item_part == 2), transfer=np.flatnonzero(item_part == 3),
                 val=np.flatnonzero(item_part == 1), test=np.flatnonzero(item_part == 0))


def train_weak(X_weak, y_weak: np.ndarray, groups_weak: np.ndarray, X_predict, *, head: str, head_params: dict,
               seed: int) -> np.ndarray:
    """Fit the weak supervisor on half A (features X_weak (a, d), ground truth y_weak (a,)) and return its
    soft labels P(class 1) for the rows of X_predict, shape (m,)."""
    supervisor = WeakModelSupervisor(head=head, head_params=head_params, seed=seed)
    supervisor.fit(X_weak, y_weak, groups=groups_weak)
    return supervisor.predict_proba(X_predict)[:, 1]


def transfer_targets(weak_p: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation targets of a transfer run: the weak model's soft labels on B and on the
    validation slice. weak_p: (n,) weak predictions for every item of the task."""
    return weak_p[split.transfer], weak_p[split.val]


def train_student(X_train, t_train: np.ndarray, X_val, t_val: np.ndarray, X_predict, *, head: str,
                  head_params: dict, loss: str, loss_params: dict | None, seed: int, mixup: float = 0.0,
                  anchor: np.ndarray | None = None, anchor_share: float = 0.0,
                  select: bool = True) -> tuple[np.ndarray, list]:
    """Fit a student head on (X_train, targets t_train), selecting the epoch on (X_val, t_val) (with
    ``select=False`` every epoch is trained and the last kept; val agreement is still recorded), and return
    (P(class 1) for the rows of X_predict, shape (m,); per-epoch training history). Each history entry holds
    the epoch's predictions on X_predict (``monitor_p``) for learning curves; they never steer training.
    mixup, anchor, anchor_share: see ``TorchHead``."""
    params = {**head_params, "loss": loss, "loss_params": loss_params, "seed": seed}
    if mixup:
        params["mixup"] = mixup
    student = make_student(head, params)
    student.fit(X_train, t_train, eval_set=(X_val, t_val) if select else None, monitor=X_predict, anchor=anchor,
                anchor_share=anchor_share)
    return student.predict_proba(X_predict)[:, 1], student.history_


def make_student(head: str, params: dict):
    """A student estimator: a registered head on features, or ``'finetune'`` (a FineTuner on texts)."""
    if head == "finetune":
        from ..training.finetune import FineTuner

        if params.get("mixup"):
            raise ConfigError("mixup applies to probes on features, not to fine-tuning")
        return FineTuner(**{k: v for k, v in params.items() if k != "mixup"})
    return HEADS.get(head)(**params)


def group_folds(groups: np.ndarray, folds: int, *, seed: int) -> np.ndarray:
    """Fold index (n,) per item: whole groups dealt round-robin in a seeded order, so a group never straddles
    two folds and folds hold about equally many groups."""
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = np.empty(len(unique), dtype=np.int64)
    fold_of_group[order] = np.arange(len(unique)) % folds
    return fold_of_group[inverse]


def cross_fitted(X, t: np.ndarray, *, head: str, head_params: dict, loss: str, seed: int, folds: int = 5,
                 loss_params: dict | None = None, groups: np.ndarray | None = None, X_extra=None):
    """Out-of-fold predictions (n,) of a student trained on the other folds' targets ``t`` (weak labels),
    each fold predicted by a model that never saw it. No ground truth is involved.

    groups: optional (n,) group ids; a group's items share a fold (a question's candidates never straddle the
    train/predict boundary). X_extra: optional rows (m, d) labelled by the mean of the same fold models; then
    returns (out, extra_p (m,)), so other rows get labels from exactly the labellers of ``t``'s rows."""
    fold_of = group_folds(np.arange(len(t)) if groups is None else groups, folds, seed=seed)
    out = np.empty(len(t), dtype=np.float32)
    extra = None if X_extra is None else np.zeros(X_extra.shape[0], dtype=np.float64)
    for k in range(folds):
        held = fold_of == k
        student = make_student(head, {**head_params, "loss": loss, "loss_params": loss_params, "seed": seed + k})
        student.fit(X[~held], t[~held])
        out[held] = student.predict_proba(X[held])[:, 1]
        if extra is not None:
            extra += student.predict_proba(X_extra)[:, 1] / folds
    return out if extra is None else (out, extra.astype(np.float32))
