"""Every registered head obeys the estimator contract; heads learn on real MiniLM features."""
import numpy as np
import pytest

from w2slab.errors import NotFittedError
from w2slab.training import HEADS


def _synthetic(n=1000, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return X, y


@pytest.mark.parametrize("name", HEADS.names())
def test_contract(name):
    X, y = _synthetic()
    head = HEADS.get(name)(seed=1)
    with pytest.raises(NotFittedError):
        head.predict_proba(X)
    assert head.fit(X, y, eval_set=(X[:50], y[:50])) is head
    proba = head.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert np.mean((proba[:, 1] >= 0.5) == y) > 0.85
    again = HEADS.get(name)(seed=1).fit(X, y, eval_set=(X[:50], y[:50])).predict_proba(X)
    np.testing.assert_array_equal(proba, again)  # same seed, same numbers


@pytest.mark.parametrize("name", HEADS.names())
def test_sample_weight_zero_ignores_items(name):
    X, y = _synthetic()
    flipped = y.copy()
    flipped[:500] = 1 - flipped[:500]
    weights = np.r_[np.zeros(500), np.ones(500)]
    head = HEADS.get(name)(seed=0).fit(X, flipped, sample_weight=weights)
    assert np.mean((head.predict_proba(X)[:, 1] >= 0.5) == y) > 0.85


def test_soft_targets_are_probabilities():
    X, y = _synthetic()
    with pytest.raises(ValueError, match="probabilities"):
        HEADS.get("logistic")().fit(X, y * 2)


def test_heads_learn_real_features(minilm_sst2):
    X, y = minilm_sst2
    train, val, test = slice(0, 350), slice(350, 450), slice(450, None)
    for name in HEADS.names():
        head = HEADS.get(name)(seed=0).fit(X[train], y[train], eval_set=(X[val], y[val]))
        acc = np.mean((head.predict_proba(X[test])[:, 1] >= 0.5) == y[test])
        # MiniLM probes on SST-2 reach ~0.8 at this size (0.75-0.79 measured); chance is 0.5
        assert acc > 0.68, (name, acc)
