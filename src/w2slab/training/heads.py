"""Classification heads on frozen features, with one estimator contract (fit / predict_proba).

The training loop fits on one screen: shuffled mini-batches, AdamW, a loss from ``losses.LOSSES``, and
model selection on a validation set whose targets the *caller* chooses (weak labels in transfer runs,
so ground truth never steers a transfer student).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, NotFittedError
from ..registry import Registry
from .losses import make_loss

log = logging.getLogger(__name__)

HEADS: Registry[type] = Registry("head")


def _check_inputs(X, y, where: str) -> None:
    if X.ndim != 2:
        raise ConfigError(f"{where}: features must be 2-D (n_samples, n_features), got shape {X.shape}")
    if y is not None:
        if y.shape != (X.shape[0],):
            raise ConfigError(f"{where}: targets must have shape ({X.shape[0]},), got {y.shape}")
        if not np.all((y >= 0) & (y <= 1)):
            raise ConfigError(f"{where}: targets must be probabilities P(class = 1) in [0, 1]")


def validation_score(p: np.ndarray, y_val: np.ndarray) -> tuple[float, float]:
    """(agreement of p >= 0.5 with y_val >= 0.5, minus cross-entropy of p against soft y_val); higher is better.
    p, y_val: (n,) probabilities of class 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    y_val = np.asarray(y_val, dtype=np.float64)
    agreement = float(np.mean((p >= 0.5) == (y_val >= 0.5)))
    return agreement, float(np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p)))


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int, anchor=None,
                  anchor_share: float = 0.0) -> list[np.ndarray]:
    """One epoch's mini-batches of row indices into n examples, shuffled by ``rng``.

    With an ``anchor`` mask (n,) and ``anchor_share`` in (0, 1), anchors and the rest are dealt evenly over
    the batches and anchors are repeated (fresh shuffles) until they fill at least that share of each batch.
    """
    if anchor is None or anchor_share <= 0:
        return np.array_split(rng.permutation(n), math.ceil(n / batch_size))
    anchors, others = np.flatnonzero(anchor), np.flatnonzero(~np.asarray(anchor, dtype=bool))
    if len(anchors) == 0:
        raise ConfigError("anchor_share > 0 but no example is an anchor")
    needed = max(len(anchors), math.ceil(anchor_share / (1 - anchor_share) * len(others)))
    pool = np.concatenate([rng.permutation(anchors) for _ in range(math.ceil(needed / len(anchors)))])[:needed]
    steps = math.ceil((needed + len(others)) / batch_size)
    return [np.concatenate(parts) for parts in zip(np.array_split(pool, steps),
                                                   np.array_split(rng.permutation(others), steps))]


class _Head:
    """What every head shares: ``predict_proba`` over ``_predict_p1`` and train-set standardisation."""

    standardize: bool

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, 2); column 1 is P(class = 1)."""
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit first")
        _check_inputs(X, None, "predict_proba")
        p1 = self._predict_p1(X)
        return np.stack([1 - p1, p1], axis=1)

    def _fit_scaler(self, X) -> None:
        if self.standardize and not sp.issparse(X):
            self.mean_ = np.asarray(X.mean(0), dtype=np.float32)
            self.scale_ = np.asarray(X.std(0), dtype=np.float32) + 1e-6
        else:
            self.mean_, self.scale_ = None, None

    def _scaled(self, X) -> np.ndarray:
        """Dense float32 rows, standardised when fitted so; sparse input stays sparse (float32)."""
        if sp.issparse(X):
            return X.astype(np.float32)
        X = np.asarray(X, dtype=np.float32)
        return X if self.mean_ is None else (X - self.mean_) / self.scale_


class TorchHead(_Head):
    """A logistic (``hidden_dim=0``) or one-hidden-layer MLP classifier trained with a w2s loss.

    Parameters (all keyword-only, stored as given): ``loss`` and ``loss_params`` pick the objective;
    ``epochs``, ``batch_size``, ``lr``, ``weight_decay`` the optimiser; ``patience`` epochs without a better
    validation score end training; ``seed`` fixes initialisation and batch order; ``mixup`` > 0 trains on
    mixup batches (inputs and targets mixed with a weight ~ Beta(mixup, mixup), one per batch).
    """

    def __init__(self, *, hidden_dim: int = 0, loss: str = "xent", loss_params: dict | None = None,
                 epochs: int = 40, batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 1e-2,
                 patience: int = 8, standardize: bool = True, mixup: float = 0.0, seed: int = 0) -> None:
        self.hidden_dim = hidden_dim
        self.loss = loss
        self.loss_params = loss_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.standardize = standardize
        self.mixup = mixup
        self.seed = seed

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("hidden_dim", "loss", "loss_params", "epochs", "batch_size", "lr",
                                              "weight_decay", "patience", "standardize", "mixup", "seed")}

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, X, y, *, sample_weight=None, eval_set=None, monitor=None, anchor=None,
            anchor_share: float = 0.0) -> "TorchHead":
        """Train on features ``X`` (n, d), dense or scipy-sparse, and targets ``y`` (n,) = P(class 1).

        eval_set: optional ``(X_val, y_val)``; the epoch whose predictions agree best with ``y_val``
        (hardened at 0.5; ties broken by lower cross-entropy) is kept. Without it the last epoch is kept.
        sample_weight: optional (n,) non-negative weights of the per-example losses.
        monitor: optional features (m, d) whose P(class 1) is recorded after every epoch in
        ``history_[i]["monitor_p"]`` for learning curves; it never influences training or selection.
        anchor, anchor_share: optional boolean mask (n,) of anchor examples (in self-training: those labelled
        by the supervisor) and the minimum share of every batch they fill, oversampled if there are too few.
        """
        import torch

        y = np.asarray(y, dtype=np.float32)
        _check_inputs(X, y, "fit")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        loss_fn = make_loss(self.loss, self.loss_params)
        weights = torch.ones(len(y)) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
        rng = np.random.default_rng(self.seed)
        torch_gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        self._fit_scaler(X)
        net = self._build(X.shape[1], torch_gen)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        targets = torch.from_numpy(y)
        prior = float(np.clip((y >= 0.5).mean(), 0.01, 0.99))  # class balance of the hardened targets
        # the number of batches does not depend on the shuffle: count them with a throwaway generator
        steps_per_epoch = len(epoch_batches(np.random.default_rng(0), len(y), self.batch_size, anchor, anchor_share))
        total_steps, step = self.epochs * steps_per_epoch, 0
        best_score, best_state, stale, self.history_ = None, None, 0, []
        self.best_epoch_ = self.epochs

        for epoch in range(self.epochs):
            net.train()
            for idx in epoch_batches(rng, len(y), self.batch_size, anchor, anchor_share):
                x, t, w = self._tensor(X, idx), targets[idx], weights[idx]
                if self.mixup > 0:
                    lam, partner = float(rng.beta(self.mixup, self.mixup)), torch.from_numpy(rng.permutation(len(idx)))
                    x, t, w = (lam * v + (1 - lam) * v[partner] for v in (x, t, w))
                logits = net(x).squeeze(-1)  # (b,)
                per_example = loss_fn(logits, t, progress=step / total_steps, prior=prior)  # (b,)
                loss = (per_example * w).sum() / w.sum().clamp(min=1e-12)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
            record = {"epoch": epoch + 1, "train_loss": loss.item()}
            if monitor is not None:
                net.eval()
                record["monitor_p"] = self._predict_p1(monitor, net)
            if eval_set is not None:
                net.eval()
                score = validation_score(self._predict_p1(eval_set[0], net), eval_set[1])
                record.update(val_agreement=score[0], val_xent=-score[1])
                if best_score is None or score > best_score:
                    best_score, stale, self.best_epoch_ = score, 0, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
            self.history_.append(record)
            if eval_set is not None and stale >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_)
        self.model_ = net.eval()
        return self

    # -- helpers ---------------------------------------------------------------------------------------
    def _predict_p1(self, X, net=None) -> np.ndarray:
        import torch

        net = self.model_ if net is None else net
        out = []
        with torch.inference_mode():
            for start in range(0, X.shape[0], 4096):
                idx = np.arange(start, min(start + 4096, X.shape[0]))
                out.append(torch.sigmoid(net(self._tensor(X, idx)).squeeze(-1)).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _tensor(self, X, idx):
        import torch

        batch = self._scaled(X[idx])
        batch = batch.toarray() if sp.issparse(batch) else batch
        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))

    def _build(self, n_features: int, generator):
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))  # local, not global
            out = nn.Linear(self.hidden_dim or n_features, 1)
            # Zero output layer: training starts at p = 0.5 everywhere, so the few hundred steps of a small
            # probe move the decision from neutral instead of first undoing a random initial direction.
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            if self.hidden_dim:
                return nn.Sequential(nn.Linear(n_features, self.hidden_dim), nn.GELU(), out)
            return out


@HEADS.register("logistic")
class LogisticHead(TorchHead):
    """Logistic regression on frozen features (a linear probe)."""

    def __init__(self, **params) -> None:
        params.setdefault("hidden_dim", 0)
        super().__init__(**params)


@HEADS.register("mlp")
class MLPHead(TorchHead):
    """A one-hidden-layer MLP (256 units, GELU) on frozen features."""

    def __init__(self, **params) -> None:
        params.setdefault("hidden_dim", 256)
        super().__init__(**params)


@HEADS.register("sklearn_logistic")
class SklearnLogisticHead(_Head):
    """L2 logistic regression solved exactly by scikit-learn (lbfgs), C chosen on the validation set.

    Soft targets t are fitted exactly by duplicating each row: once as class 1 with weight t, once as
    class 0 with weight 1 - t. Only the cross-entropy loss applies (``loss`` must be 'xent'); this is the
    classic weak learner (and the head of the 'tfidf' baseline), not a weak-to-strong student.
    """

    def __init__(self, *, loss: str = "xent", loss_params: dict | None = None,
                 c_grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0), max_iter: int = 300, standardize: bool = True,
                 seed: int = 0, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 weight_decay: float | None = None) -> None:
        # The optimiser settings of the torch heads are accepted (the protocol passes them to every head) and
        # not used: an exact solver has no epochs or learning rate. Any other keyword is still an error.
        self.loss = loss
        self.loss_params = loss_params
        self.c_grid = c_grid
        self.max_iter = max_iter
        self.standardize = standardize
        self.seed = seed

    def fit(self, X, y, *, sample_weight=None, eval_set=None, monitor=None, anchor=None,
            anchor_share: float = 0.0) -> "SklearnLogisticHead":
        """X: (n, d) dense or sparse; y: (n,) P(class 1). eval_set (X_val, y_val) picks C by agreement.
        ``monitor`` is accepted for the common contract; an exact solver has no epochs to record, and no
        batches to anchor (``anchor_share`` must be 0)."""
        from sklearn.linear_model import LogisticRegression

        if anchor_share:
            raise ConfigError("head 'sklearn_logistic' has no mini-batches: min_supervised_per_batch needs a torch head")

        if self.loss != "xent" or self.loss_params:
            raise ConfigError(f"head 'sklearn_logistic' supports only loss 'xent', got {self.loss!r}")
        y = np.asarray(y, dtype=np.float64)
        _check_inputs(X, y, "fit")
        weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self._fit_scaler(X)
        Xs = self._scaled(X)
        X2 = sp.vstack([Xs, Xs]).tocsr() if sp.issparse(Xs) else np.vstack([Xs, Xs])
        y2 = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
        w2 = np.concatenate([y * weights, (1 - y) * weights])
        grid = self.c_grid if eval_set is not None else (self.c_grid[len(self.c_grid) // 2],)
        best = None
        self.history_ = []
        for c in grid:
            model = LogisticRegression(C=c, max_iter=self.max_iter, random_state=self.seed)
            model.fit(X2, y2, sample_weight=w2)
            self.model_ = model
            record = {"C": c}
            if eval_set is not None:
                score = validation_score(self._predict_p1(eval_set[0]), eval_set[1])
                record["val_agreement"] = score[0]
                if best is None or score > best[0]:
                    best = (score, model)
            self.history_.append(record)
        if best is not None:
            self.model_ = best[1]
        return self

    def _predict_p1(self, X) -> np.ndarray:
        return self.model_.predict_proba(self._scaled(X))[:, 1].astype(np.float32)
