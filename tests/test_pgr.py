"""PGR and its bootstrap interval on constructed cases with known answers."""
import numpy as np
import pytest

from w2slab.evaluation import accuracy, pgr, pgr_with_ci, roc_auc


def _preds(y, correct):
    """P(class 1) that is right exactly where ``correct`` is True."""
    return np.where(correct, y, 1 - y).astype(float)


def test_point_pgr():
    assert pgr(0.6, 0.8, 1.0) == pytest.approx(0.5)
    assert np.isnan(pgr(0.7, 0.7, 0.7))


def test_known_case_with_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    floor = _preds(y, np.arange(2000) < 1200)          # 60% correct
    ceiling = _preds(y, np.arange(2000) < 1800)        # 90% correct, a superset of floor's correct items
    transfer = _preds(y, np.arange(2000) < 1500)       # 75%: halfway
    r = pgr_with_ci(y, floor, transfer, ceiling, n_boot=1000)
    assert (r.floor, r.transfer, r.ceiling) == pytest.approx((0.6, 0.75, 0.9))
    assert r.defined and r.pgr == pytest.approx(0.5)
    assert r.pgr_ci[0] < 0.5 < r.pgr_ci[1]
    assert r.pgr_ci[1] - r.pgr_ci[0] < 0.1  # nested correct sets: paired resampling keeps it tight


def test_paired_resampling_gives_zero_width_when_transfer_equals_ceiling():
    y = np.array([0, 1] * 200)
    floor = _preds(y, np.arange(400) % 4 != 0)
    ceiling = _preds(y, np.ones(400, bool))
    r = pgr_with_ci(y, floor, ceiling.copy(), ceiling, n_boot=500)
    assert r.pgr == 1.0 and r.pgr_ci == (1.0, 1.0)


def test_undefined_when_gap_is_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    floor = _preds(y, rng.random(300) < 0.52)
    ceiling = _preds(y, rng.random(300) < 0.54)
    transfer = _preds(y, rng.random(300) < 0.53)
    r = pgr_with_ci(y, floor, transfer, ceiling)
    assert not r.defined and r.pgr is None
    assert "within test-set noise" in r.reason


def test_seeds_are_averaged_per_item():
    y = np.array([1, 0, 1, 0])
    floor = np.array([[1, 1, 1, 1.0], [0, 0, 0, 0.0]])  # 50% each seed
    r = pgr_with_ci(y, floor, y.astype(float), y.astype(float), n_boot=200)
    assert r.floor == 0.5 and r.n_seeds == 2


def test_metrics():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert accuracy(y, p) == 0.5
    assert roc_auc(y, p) == pytest.approx(0.75)
    assert np.isnan(roc_auc(np.ones(3), np.ones(3)))


def test_undefined_when_interval_is_too_wide_even_if_gap_is_significant():
    # SciQ-like: floor 0.54, ceiling 0.585 on 600 items, transfer in between with its own noise
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 600)
    base = rng.random(600)
    floor = _preds(y, base < 0.54)
    ceiling = _preds(y, base < 0.585)  # nested: the gap is significant
    transfer = _preds(y, rng.random(600) < 0.55)
    r = pgr_with_ci(y, floor, transfer, ceiling)
    assert r.gap_ci[0] > 0
    assert not r.defined and "too small for a usable ratio" in r.reason
    assert pgr_with_ci(y, floor, transfer, ceiling, max_ci_width=100).defined
