"""Performance gap recovered, with a paired bootstrap over test items and an honest 'undefined'.

PGR = (transfer - floor) / (ceiling - floor), on test accuracy. The three predictions are resampled
*together* (the same test items in each resample), so their correlation is kept. With several seeds, each
resample also draws the seeds with replacement (separately for floor, transfer and ceiling) before averaging
their correctness per item, so the interval combines seed variance and test-set variance.

When is PGR undefined? PGR divides by the ceiling–floor gap; when that gap is within test-set noise the
ratio is noise too (a 0.01 gap turns a 0.01 transfer wobble into a PGR swing of 1.0). PGR is defined only when
1. the paired bootstrap's 95% interval of the gap lies entirely above zero (the ceiling beats the floor
   significantly on this test set, two-sided 5% level), and
2. the 95% interval of PGR itself is at most ``max_ci_width`` wide (default 1.0): an interval wider than the
   whole distance from "nothing recovered" (0) to "everything recovered" (1) cannot tell any two methods
   apart, which happens when the gap is barely significant (e.g. SciQ on frozen features: floor 0.54,
   ceiling 0.585, PGR interval -2.2 to +0.6).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PGRResult:
    """Accuracies are means over seeds; intervals are 95% paired-bootstrap percentiles."""

    floor: float
    transfer: float
    ceiling: float
    gap: float
    gap_ci: tuple[float, float]
    pgr: float | None
    pgr_ci: tuple[float, float] | None
    defined: bool
    reason: str
    n_test: int
    n_seeds: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def pgr(floor: float, transfer: float, ceiling: float) -> float:
    """The point estimate; NaN when ceiling == floor."""
    gap = ceiling - floor
    return float("nan") if gap == 0 else (transfer - floor) / gap


def _boot_accuracy(correct: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Accuracy in each resample, shape (n_boot,): items weighted by ``counts`` (n_boot, n), and with several
    seeds (rows of ``correct``, (n_seeds, n) in {0, 1}) the seeds drawn with replacement in each resample."""
    n_boot, n = counts.shape
    n_seeds = correct.shape[0]
    if n_seeds == 1:
        return counts @ correct[0] / n
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    seed_weights = np.stack([np.bincount(row, minlength=n_seeds) for row in draws]) / n_seeds  # (n_boot, n_seeds)
    return (counts * (seed_weights @ correct)).sum(1) / n


def pgr_with_ci(y: np.ndarray, p_floor: np.ndarray, p_transfer: np.ndarray, p_ceiling: np.ndarray, *,
                n_boot: int = 2000, seed: int = 0, level: float = 0.95, max_ci_width: float = 1.0) -> PGRResult:
    """PGR of test accuracy with a paired bootstrap interval.

    y: int (n,) ground truth in {0, 1}. p_*: P(class 1), shape (n,) or (n_seeds, n); seeds may differ
    between the three (the floor of a weak model shared by all transfer seeds may be (n,)).
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ConfigError(f"y must be a non-empty 1-D array, got shape {y.shape}")
    for name, p in (("p_floor", p_floor), ("p_transfer", p_transfer), ("p_ceiling", p_ceiling)):
        if np.atleast_2d(p).shape[1] != len(y):
            raise ConfigError(f"{name} has {np.atleast_2d(p).shape[1]} items per seed, y has {len(y)}")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be >= 100, got {n_boot}")
    per_seed = [((np.atleast_2d(p) >= 0.5) == (y[None, :] == 1)).astype(np.float64)
                for p in (p_floor, p_transfer, p_ceiling)]  # each (n_seeds, n)
    floor, transfer, ceiling = (c.mean() for c in per_seed)
    n = len(y)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (n_boot, n): resample weights of items
    boot = np.stack([_boot_accuracy(c, counts, rng) for c in per_seed], axis=1)  # (n_boot, 3)
    gaps = boot[:, 2] - boot[:, 0]
    tail = (1 - level) / 2 * 100
    gap_ci = (float(np.percentile(gaps, tail)), float(np.percentile(gaps, 100 - tail)))
    gap = float(ceiling - floor)
    n_seeds = max(np.atleast_2d(p).shape[0] for p in (p_floor, p_transfer, p_ceiling))
    common = dict(floor=float(floor), transfer=float(transfer), ceiling=float(ceiling), gap=gap, gap_ci=gap_ci,
                  n_test=n, n_seeds=n_seeds)
    if gap_ci[0] <= 0:
        reason = (f"ceiling - floor = {gap:+.3f} (95% CI {gap_ci[0]:+.3f} to {gap_ci[1]:+.3f}) is within "
                  f"test-set noise on {n} items")
        return PGRResult(**common, pgr=None, pgr_ci=None, defined=False, reason=reason)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_pgr = np.where(gaps > 0, (boot[:, 1] - boot[:, 0]) / gaps, np.nan)
    ci = (float(np.nanpercentile(boot_pgr, tail)), float(np.nanpercentile(boot_pgr, 100 - tail)))
    point = pgr(floor, transfer, ceiling)
    if ci[1] - ci[0] > max_ci_width:
        reason = (f"ceiling - floor = {gap:+.3f} is too small for a usable ratio: PGR {point:+.2f} has 95% CI "
                  f"{ci[0]:+.2f} to {ci[1]:+.2f}, wider than {max_ci_width:g}")
        return PGRResult(**common, pgr=None, pgr_ci=None, defined=False, reason=reason)
    return PGRResult(**common, pgr=point, pgr_ci=ci, defined=True, reason="")
