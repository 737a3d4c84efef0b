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


def test_a_wide_interval_is_printed_not_hidden():
    # SciQ-like: floor 0.54, ceiling 0.585 on 600 items, transfer in between with its own noise
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 600)
    base = rng.random(600)
    floor = _preds(y, base < 0.54)
    ceiling = _preds(y, base < 0.585)  # nested: the gap is significant
    transfer = _preds(y, rng.random(600) < 0.55)
    r = pgr_with_ci(y, floor, transfer, ceiling)
    assert r.gap_ci[0] > 0
    assert r.defined and r.pgr is not None and r.pgr_ci[1] - r.pgr_ci[0] > 1  # the old rule hid it
    assert r.reason.startswith("wide")


def test_undefined_is_decided_by_floor_and_ceiling_alone():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    base = rng.random(400)
    floor, ceiling = _preds(y, base < 0.60), _preds(y, base < 0.66)
    verdicts = set()
    for transfer_share in (0.58, 0.61, 0.63, 0.70):  # methods: noisy, near floor, between, beyond ceiling
        r = pgr_with_ci(y, floor, _preds(y, rng.random(400) < transfer_share), ceiling)
        verdicts.add((r.defined, r.gap_ci))
    assert len(verdicts) == 1  # the old max-width rule made some methods defined and others not


def _independent_seed_width(y, floor, transfer, ceiling, n_boot=2000, seed=0):
    """The old interval: seeds drawn separately for floor, transfer and ceiling (for comparison)."""
    rng = np.random.default_rng(seed)
    n, k = len(y), floor.shape[0]
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    accs = []
    for p in (floor, transfer, ceiling):
        correct = ((p >= 0.5) == (y == 1)).astype(float)
        w = np.stack([np.bincount(r, minlength=k) for r in rng.integers(0, k, size=(n_boot, k))]) / k
        accs.append((counts * (w @ correct)).sum(1) / n)
    ratio = (accs[1] - accs[0]) / (accs[2] - accs[0])
    return np.percentile(ratio, 97.5) - np.percentile(ratio, 2.5)


def test_seeds_are_drawn_jointly_so_paired_seeds_stay_paired():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    order = np.arange(500)
    floor = np.stack([_preds(y, order < 500 * a) for a in (0.55, 0.65, 0.75)])     # seeds differ a lot
    transfer = np.stack([_preds(y, order < 500 * (a + 0.1)) for a in (0.55, 0.65, 0.75)])  # floor_s + 10 points
    ceiling = np.stack([_preds(y, order < 475)] * 3)
    r = pgr_with_ci(y, floor, transfer, ceiling)
    joint = r.pgr_ci[1] - r.pgr_ci[0]
    assert joint < 0.6 * _independent_seed_width(y, floor, transfer, ceiling)


def test_per_seed_pgrs_get_the_same_guard():
    from w2slab.evaluation.pgr import pgr_per_seed

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    base = rng.random(300)
    floor = np.stack([_preds(y, base < 0.6), _preds(y, base < 0.6)])
    ceiling = np.stack([_preds(y, base < 0.9), _preds(y, base < 0.605)])  # seed 1: the gap is noise
    transfer = np.stack([_preds(y, base < 0.75), _preds(y, base < 0.603)])
    values = pgr_per_seed(y, floor, transfer, ceiling, n_boot=300)
    acc = [accuracy(y, p[0]) for p in (floor, transfer, ceiling)]
    assert values[0] == pytest.approx(pgr(*acc)) and values[1] is None


def test_reliability_bins_and_ece_on_a_known_case():
    from w2slab.evaluation.metrics import expected_calibration_error, reliability_bins

    confidence, correct = [0.55, 0.6, 0.65, 0.95], [1, 0, 1, 1]
    bins = reliability_bins(confidence, correct, edges=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    assert [b["n"] for b in bins] == [2, 1, 0, 0, 1]  # 0.6, on an inner edge, goes to the lower bin
    assert bins[0]["accuracy"] == 0.5 and bins[0]["confidence"] == pytest.approx(0.575)
    assert bins[2]["accuracy"] is None and bins[4]["accuracy"] == 1.0
    # default: 5 bins of [0, 1]; |0.5 - 0.575| * 2/4 + |1 - 0.65| * 1/4 + |1 - 0.95| * 1/4
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0375 + 0.0875 + 0.0125)
