"""Losses for training a binary student on soft targets (Burns et al., 2023).

Every loss maps ``logits`` (float tensor, shape (b,), log-odds of class 1) and ``targets`` (float tensor,
shape (b,), P(class = 1) from the supervisor) to per-example losses of shape (b,); lower is better. They
also receive ``progress`` (fraction of training done, in [0, 1]) for warm-ups and ``prior`` (share of class 1
among the hardened supervisor labels of the whole training set), which only ``logconf_global`` uses.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..errors import ConfigError
from ..registry import Registry

LOSSES: Registry[type] = Registry("loss")


def _warmup(progress: float, warmup_frac: float) -> float:
    """Linear ramp from 0 at the start of training to 1 at ``warmup_frac`` of it, then 1."""
    if warmup_frac <= 0:
        return 1.0
    return min(1.0, progress / warmup_frac)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")


@LOSSES.register("xent")
@dataclasses.dataclass(frozen=True)
class SoftCrossEntropy:
    """Cross-entropy against soft targets: -(t log p + (1 - t) log(1 - p)). Plain imitation."""

    def __call__(self, logits, targets, *, progress: float, prior: float):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


@LOSSES.register("logconf")
@dataclasses.dataclass(frozen=True)
class AuxiliaryConfidence:
    """Auxiliary confidence loss: cross-entropy against (1 - a) * weak + a * hardened student prediction.

    The student's predictions are hardened with a threshold chosen per batch so that the batch's share of
    class 1 equals the mean of the batch's *soft* weak labels (the reference implementation's rule), which
    stops the student collapsing onto one class. The threshold is a statistic of the whole batch, so this loss
    refuses gradient accumulation and multi-process training (a micro-batch would quantile over a few items).
    ``a`` rises linearly from 0 to ``aux_coef`` over the first ``warmup_frac`` of training (the public
    reference implementation's schedule reached only 10% of its target before jumping; this one is linear).
    """

    aux_coef: float = 0.5
    warmup_frac: float = 0.2
    batch_statistics: ClassVar[bool] = True  # the loss of an item depends on the rest of its batch

    def share(self, targets, prior: float) -> float:
        """The share of class 1 the hardened predictions get: mean soft weak label of the batch."""
        return float(targets.mean())

    def __post_init__(self) -> None:
        _check_fraction("aux_coef", self.aux_coef)
        _check_fraction("warmup_frac", self.warmup_frac)

    def coefficient(self, progress: float) -> float:
        return self.aux_coef * _warmup(progress, self.warmup_frac)

    def __call__(self, logits, targets, *, progress: float, prior: float):
        import torch
        import torch.nn.functional as F

        probs = torch.sigmoid(logits.detach())
        threshold = torch.quantile(probs, 1.0 - min(max(self.share(targets, prior), 0.0), 1.0))
        hardened = (probs > threshold).to(logits.dtype)
        a = self.coefficient(progress)
        return F.binary_cross_entropy_with_logits(logits, (1 - a) * targets + a * hardened, reduction="none")


@LOSSES.register("logconf_global")
@dataclasses.dataclass(frozen=True)
class AuxiliaryConfidenceGlobalPrior(AuxiliaryConfidence):
    """``logconf`` with w2slab's earlier threshold rule: the share of class 1 among the *hardened* weak labels of
    the whole training set (``prior``), the same for every batch. For biased, unconfident supervisors it differs
    a lot from the reference rule (0.633 vs 0.525 in one check); kept for comparison."""

    def share(self, targets, prior: float) -> float:
        return prior


@LOSSES.register("product")
@dataclasses.dataclass(frozen=True)
class ProductLoss:
    """Cross-entropy against the normalised product weak^alpha * student^beta (per class).

    ``beta`` is warmed up linearly from 0 over the first ``warmup_frac`` of training, so training starts as
    plain imitation and the student's own confidence enters gradually.
    """

    alpha: float = 1.0
    beta: float = 1.0
    warmup_frac: float = 0.2

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ConfigError(f"alpha and beta must be >= 0, got {self.alpha!r}, {self.beta!r}")
        _check_fraction("warmup_frac", self.warmup_frac)

    def __call__(self, logits, targets, *, progress: float, prior: float):
        import torch
        import torch.nn.functional as F

        eps = 1e-6
        beta = self.beta * _warmup(progress, self.warmup_frac)
        student = torch.sigmoid(logits.detach()).clamp(eps, 1 - eps)
        weak = targets.clamp(eps, 1 - eps)
        one = weak ** self.alpha * student ** beta
        zero = (1 - weak) ** self.alpha * (1 - student) ** beta
        return F.binary_cross_entropy_with_logits(logits, one / (one + zero), reduction="none")


def make_loss(name: str, params: dict | None = None):
    """Instantiate loss ``name`` with keyword ``params`` (unknown parameters are rejected)."""
    cls = LOSSES.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params or {}) - fields
    if unknown:
        allowed = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"loss {name!r} has no parameter(s) {', '.join(sorted(unknown))} (allowed: {allowed})")
    return cls(**(params or {}))
