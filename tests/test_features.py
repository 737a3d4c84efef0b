"""Real MiniLM features: cached per text, a second run never calls the model (counted)."""
import numpy as np
import pytest

from w2slab.errors import ConfigError
from w2slab.models import make_featurizer
from w2slab.models.features import FeatureSpec


def test_features_are_real_and_cached(sst2_small, cache_dir, minilm_sst2):
    X, _ = minilm_sst2
    assert X.shape == (len(sst2_small), 384) and X.dtype == np.float32
    assert np.isfinite(X).all() and X.std() > 0.01

    fresh = make_featurizer("minilm", cache=cache_dir, progress=False)
    again = fresh.transform(sst2_small.texts)
    assert fresh.model_calls_ == 0  # every vector came from the disk cache
    np.testing.assert_array_equal(again, X)

    # a subset plus 5 new texts computes exactly the new texts (one batch)
    new = ["a wholly new sentence number %d ." % i for i in range(5)]
    partial = make_featurizer("minilm", cache=cache_dir, progress=False)
    out = partial.transform(sst2_small.texts[:50] + new)
    assert partial.model_calls_ == 1
    np.testing.assert_array_equal(out[:50], X[:50])


def test_cached_vectors_match_direct_computation(sst2_small, cache_dir, minilm_sst2):
    X, _ = minilm_sst2
    direct = make_featurizer("minilm", cache=cache_dir, progress=False).compute(sst2_small.texts[:20])
    np.testing.assert_allclose(X[:20], direct, atol=2e-3, rtol=2e-3)  # float16 storage


def test_pooling_and_layer_change_the_cache_key(sst2_small, cache_dir, minilm_sst2):
    X, _ = minilm_sst2
    first = make_featurizer("minilm", pooling="first", cache=cache_dir, progress=False)
    layer3 = make_featurizer("minilm", layer=3, cache=cache_dir, progress=False)
    a = first.transform(sst2_small.texts[:8])
    b = layer3.transform(sst2_small.texts[:8])
    assert first.model_calls_ == 1 and layer3.model_calls_ == 1
    assert not np.allclose(a, X[:8]) and not np.allclose(b, X[:8])
    assert first.store().root != layer3.store().root


def test_bad_feature_spec():
    with pytest.raises(ConfigError, match="pooling 'max'"):
        FeatureSpec(model="minilm", pooling="max")


def test_tfidf_features(sst2_small):
    X = make_featurizer("tfidf").transform(sst2_small.texts)
    assert X.shape[0] == len(sst2_small) and X.nnz > 0
