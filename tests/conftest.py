"""Shared fixtures: the real dataset mirror, a per-session cache, and small real feature matrices."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("W2SLAB_DATA_DIR") or REPO.parent / "shared" / "datasets").resolve()


def pytest_configure(config):
    os.environ["W2SLAB_DATA_DIR"] = str(DATA_DIR)
    # One fresh cache per test session: tests never read the user's cache, and the session computes each
    # feature once. W2SLAB_TEST_CACHE_DIR keeps a cache across sessions for local iteration.
    os.environ["W2SLAB_CACHE_DIR"] = os.environ.get("W2SLAB_TEST_CACHE_DIR") or tempfile.mkdtemp(prefix="w2slab-test-")
    # Installed weights (2-3 GB once joined and dequantised) are the same in every session: keep one copy of them
    # outside the per-session cache instead of a fresh copy per session and per test that uses its own cache.
    os.environ.setdefault("W2SLAB_MODELS_DIR", str(Path.home() / ".cache" / "w2slab-test-models"))
    os.environ["W2SLAB_TASKS_FILE"] = os.path.join(tempfile.mkdtemp(prefix="w2slab-tasks-"), "tasks.json")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def pytest_unconfigure(config):
    """Remove the session's own cache and task registry (a few hundred MB); a W2SLAB_TEST_CACHE_DIR is kept."""
    if not os.environ.get("W2SLAB_TEST_CACHE_DIR"):
        shutil.rmtree(os.environ["W2SLAB_CACHE_DIR"], ignore_errors=True)
    shutil.rmtree(os.path.dirname(os.environ["W2SLAB_TASKS_FILE"]), ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "sst2").is_dir():
        pytest.fail(f"dataset mirror not found at {DATA_DIR}; set W2SLAB_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The session's cache (features, installed models, converted tasks), isolated from the user's cache."""
    return Path(os.environ["W2SLAB_CACHE_DIR"])


@pytest.fixture(scope="session")
def sst2_small(data_dir):
    from w2slab.tasks import load_task

    return load_task("sst2", data_dir=data_dir, n_examples=600, seed=0)


@pytest.fixture(scope="session")
def minilm_sst2(sst2_small, cache_dir):
    """Real MiniLM features of 600 SST-2 sentences: (X (600, 384) float32, y (600,))."""
    from w2slab.models import make_featurizer

    features = make_featurizer("minilm", cache=cache_dir, progress=False)
    return features.transform(sst2_small.texts), sst2_small.labels
