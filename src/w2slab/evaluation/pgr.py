"""Performance gap recovered, with a paired bootstrap over test items and an honest 'undefined'.

PGR = (transfer - floor) / (ceiling - floor), on test accuracy. The three predictions are resampled
*together* (the same test items in each resample), so their correlation is kept. With several seeds, each
resample also draws seeds with replacement — *jointly*: transfer seed s learned from floor seed s, so a drawn
seed index takes floor, transfer and ceiling of that seed together (a floor shared by all seeds stays as is).
The interval thus combines seed variance and test-set variance without breaking the pairing.

When is PGR undefined? PGR divides by the ceiling–floor gap; when that gap is within test-set noise the
ratio is noise too (a 0.01 gap turns a 0.01 transfer wobble into a PGR swing of 1.0). PGR is undefined exactly
when the paired bootstrap's 95% interval of the gap reaches zero. That depends on floor and ceiling alone, so it
is decided once per (task, weak, strong) and holds for every method trained on that pair. When the gap is real
but small, PGR is printed with its (wide) interval and the reason says it is wide; it is never hidden.
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


def _boot_accuracy(correct: np.ndarray, counts: np.ndarray, seed_weights: np.ndarray) -> np.ndarray:
    """Accuracy in each resample, shape (n_boot,): items weighted by ``counts`` (n_boot, n); seeds (rows of
    ``correct``, (n_seeds, n) in {0, 1}) weighted by ``seed_weights`` (n_boot, n_seeds), the same draw for
    floor, transfer and ceiling; a single row is used as is."""
    n = counts.shape[1]
    if correct.shape[0] == 1:
        return counts @ correct[0] / n
    return (counts * (seed_weights @ correct)).sum(1) / n


WIDE_CI = 1.0  # a PGR interval wider than this cannot tell "nothing recovered" from "everything": said so


def pgr_with_ci(y: np.ndarray, p_floor: np.ndarray, p_transfer: np.ndarray, p_ceiling: np.ndarray, *,
                n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> PGRResult:
    """PGR of test accuracy with a paired bootstrap interval.

    y: int (n,) ground truth in {0, 1}. p_*: P(class 1), shape (n,) or (n_seeds, n); row s of each is seed s
    (a floor shared by all seeds may be (n,)); arrays with several rows must have the same number of rows.
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
    seed_counts = {c.shape[0] for c in per_seed} - {1}
    if len(seed_counts) > 1:
        raise ConfigError(f"floor, transfer and ceiling have different seed counts {sorted(seed_counts)}; "
                          "seeds are resampled jointly, so they must match (or be 1 for a shared floor)")
    n_seeds = max(seed_counts, default=1)
    floor, transfer, ceiling = (c.mean() for c in per_seed)
    n = len(y)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (n_boot, n): resample weights of items
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # one seed draw per resample, shared by all three
    seed_weights = np.stack([np.bincount(row, minlength=n_seeds) for row in draws]) / n_seeds  # (n_boot, n_seeds)
    boot = np.stack([_boot_accuracy(c, counts, seed_weights) for c in per_seed], axis=1)  # (n_boot, 3)
    gaps = boot[:, 2] - boot[:, 0]
    tail = (1 - level) / 2 * 100
    gap_ci = (float(np.percentile(gaps, tail)), float(np.percentile(gaps, 100 - tail)))
    gap = float(ceiling - floor)
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
    reason = ""
    if ci[1] - ci[0] > WIDE_CI:
        reason = (f"wide: ceiling - floor = {gap:+.3f} is small, so the 95% CI of PGR ({ci[0]:+.2f} to {ci[1]:+.2f}) "
                  f"is wider than {WIDE_CI:g}")
    return PGRResult(**common, pgr=point, pgr_ci=ci, defined=True, reason=reason)


def pgr_per_seed(y: np.ndarray, floor: np.ndarray, transfer: np.ndarray, ceiling: np.ndarray, *,
                 n_boot: int = 2000, seed: int = 0) -> list[float | None]:
    """Each seed's own PGR, under the same guard as the headline: None where that seed's ceiling - floor gap
    is within test-set noise (its 95% paired-bootstrap interval reaches zero). Arrays (n_seeds, n) or (n,)."""
    rows = max(np.atleast_2d(a).shape[0] for a in (floor, transfer, ceiling))
    pick = lambda a, s: np.atleast_2d(a)[s if np.atleast_2d(a).shape[0] > 1 else 0]  # noqa: E731
    out = []
    for s in range(rows):
        r = pgr_with_ci(y, pick(floor, s), pick(transfer, s), pick(ceiling, s), n_boot=n_boot, seed=seed + s)
        out.append(r.pgr if r.defined else None)
    return out
