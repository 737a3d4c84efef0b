"""Statistics across tasks: median PGR with a bootstrap interval, and paired comparison of two methods.

Inputs are per-task (or per task-and-pair) PGR point estimates; undefined PGRs are excluded by the caller
and counted in the output so a reader sees how many tasks a claim rests on.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import ConfigError


def median_with_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Median of ``values`` (k,) with a percentile bootstrap interval over the k entries (tasks)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ConfigError("median_with_ci needs a non-empty 1-D array")
    rng = np.random.default_rng(seed)
    boots = np.median(values[rng.integers(0, len(values), (n_boot, len(values)))], axis=1)
    tail = (1 - level) / 2 * 100
    return {"median": float(np.median(values)), "ci": (float(np.percentile(boots, tail)),
                                                       float(np.percentile(boots, 100 - tail))), "n": len(values)}


def compare_paired(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired comparison of method A and B over the same k tasks: a[i], b[i] are their PGRs on task i.

    Returns how many tasks go each way, the mean difference A - B with a paired bootstrap interval (tasks
    resampled), and the Wilcoxon signed-rank test (two-sided; zero differences dropped; None with fewer than
    two non-zero differences).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ConfigError(f"compare_paired needs two 1-D arrays of the same non-zero length, got {a.shape}, {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    tail = (1 - level) / 2 * 100
    nonzero = diff[diff != 0]
    if len(nonzero) >= 2:
        test = stats.wilcoxon(nonzero)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    else:
        statistic, p_value = None, None
    return {"n_tasks": len(diff), "a_better": int((diff > 0).sum()), "b_better": int((diff < 0).sum()),
            "ties": int((diff == 0).sum()), "mean_diff": float(diff.mean()),
            "mean_diff_ci": (float(np.percentile(boots, tail)), float(np.percentile(boots, 100 - tail))),
            "wilcoxon_statistic": statistic, "wilcoxon_p": p_value}
