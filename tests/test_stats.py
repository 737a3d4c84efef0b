"""Statistics across tasks and imitation metrics against constructed cases with known answers."""
import numpy as np
import pytest

from w2slab.evaluation import compare_paired, imitation_metrics, median_with_ci, pgr_with_ci


def test_median_with_ci():
    r = median_with_ci(np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert r["median"] == 0.3 and r["n"] == 5
    assert r["ci"][0] <= 0.3 <= r["ci"][1]
    assert median_with_ci(np.full(7, 0.42))["ci"] == (0.42, 0.42)


def test_compare_paired_known_case():
    # B beats A by exactly 0.1 on 8 tasks, loses by 0.05 on 2: Wilcoxon W = 3 (ranks 1.5 + 1.5), p = 0.0234 (scipy exact)
    a = np.array([0.1] * 8 + [0.6, 0.6])
    b = np.array([0.2] * 8 + [0.55, 0.55])
    r = compare_paired(a, b)
    assert (r["a_better"], r["b_better"], r["ties"]) == (2, 8, 0)
    assert r["mean_diff"] == pytest.approx(-0.07)
    assert r["mean_diff_ci"][1] < 0
    assert r["wilcoxon_statistic"] == pytest.approx(3.0)
    assert r["wilcoxon_p"] < 0.05


def test_compare_paired_all_ties_has_no_test():
    r = compare_paired(np.array([0.3, 0.4]), np.array([0.3, 0.4]))
    assert r["ties"] == 2 and r["wilcoxon_p"] is None


def test_imitation_metrics_known_case():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    weak = np.array([1, 1, 0, 0, 0, 0, 1, 1.0])      # wrong on items 2, 3, 6, 7
    student = np.array([1, 1, 0, 1, 0, 1, 1, 0.0])   # copies errors on 2 and 6, fixes 3 and 7; flips right item 5
    m = imitation_metrics(y, weak, student)
    assert m["supervisor_error_rate"] == 0.5
    assert m["agreement_where_supervisor_wrong"] == 0.5
    assert m["agreement_where_supervisor_right"] == 0.75
    assert m["agreement"] == pytest.approx(5 / 8)


def test_seed_variance_widens_the_pgr_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    floor = np.where(np.arange(1000) < 600, y, 1 - y)
    ceiling = np.where(np.arange(1000) < 900, y, 1 - y)
    steady = np.stack([np.where(np.arange(1000) < 750, y, 1 - y)] * 3)
    noisy = np.stack([np.where(np.arange(1000) < k, y, 1 - y) for k in (650, 750, 850)])  # same mean, seeds differ
    a = pgr_with_ci(y, floor, steady, ceiling)
    b = pgr_with_ci(y, floor, noisy, ceiling)
    assert a.pgr == pytest.approx(b.pgr)
    assert (b.pgr_ci[1] - b.pgr_ci[0]) > 1.5 * (a.pgr_ci[1] - a.pgr_ci[0])
