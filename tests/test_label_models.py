"""Label models: Dawid–Skene recovers known reliabilities from synthetic votes, without ground truth."""
import numpy as np
import pytest

from w2slab.errors import ConfigError
from w2slab.supervisors.label_models import combine, dawid_skene, majority_vote, mean_probability, stack_votes


def _votes(accuracies, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    cols = [np.where(rng.random(n) < acc, y, 1 - y).astype(float) for acc in accuracies]
    return y, np.stack(cols, axis=1)


def test_dawid_skene_recovers_known_reliabilities():
    accuracies = [0.9, 0.75, 0.6, 0.55]
    y, votes = _votes(accuracies)
    fit = dawid_skene(votes)
    np.testing.assert_allclose(fit.accuracy, accuracies, atol=0.03)
    assert abs(fit.prior - y.mean()) < 0.05
    # it beats the plain vote because it trusts the reliable supervisor more
    ds_acc = np.mean((fit.posterior >= 0.5) == y)
    vote_acc = np.mean((majority_vote(votes) > 0.5) == y)
    assert ds_acc > vote_acc + 0.02


def test_soft_votes_and_simple_combiners():
    votes = np.array([[0.9, 0.2, 0.7], [0.1, 0.4, 0.3]])
    np.testing.assert_allclose(mean_probability(votes), [0.6, 0.8 / 3])
    np.testing.assert_allclose(majority_vote(votes), [2 / 3, 0.0])
    assert combine({"a": votes[:, 0], "b": votes[:, 1], "c": votes[:, 2]}, how="ds").shape == (2,)


def test_supervisors_with_different_item_sets_are_rejected():
    with pytest.raises(ConfigError, match="must label the same items: a labels 3 items, b labels 2 items"):
        stack_votes({"a": np.array([0.1, 0.2, 0.3]), "b": np.array([0.5, 0.5])})
    with pytest.raises(ConfigError, match="at least two supervisors"):
        stack_votes({"a": np.array([0.1])})
