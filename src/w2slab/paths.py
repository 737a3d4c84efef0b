"""Where w2slab reads data and keeps its caches, each overridable by environment variable.

- data: ``--data-dir`` > ``W2SLAB_DATA_DIR`` > None (load from the Hugging Face Hub)
- cache (features, stage artifacts, installed models): ``W2SLAB_CACHE_DIR`` > ``~/.cache/w2slab``
- installed models alone: ``W2SLAB_MODELS_DIR`` > ``<cache>/models`` (weights are the same whatever the cache, so
  several caches, e.g. test sessions, can share one copy of them)
- results: ``./w2slab-results`` unless given
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local dataset mirror, or None when tasks should come from the Hugging Face Hub."""
    value = explicit if explicit is not None else os.environ.get("W2SLAB_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"data directory {str(path)!r} is a file, not a folder (from --data-dir or W2SLAB_DATA_DIR)")
    if not path.is_dir():
        raise DataError(f"data directory {str(path)!r} does not exist (from --data-dir or W2SLAB_DATA_DIR)")
    return path


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Root of features, stage outputs and installed models."""
    value = explicit or os.environ.get("W2SLAB_CACHE_DIR") or Path.home() / ".cache" / "w2slab"
    return Path(value).expanduser()


def models_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where zoo models are materialised: ``W2SLAB_MODELS_DIR`` if set, else ``<cache>/models``."""
    shared = os.environ.get("W2SLAB_MODELS_DIR")
    return Path(shared).expanduser() if shared else cache_dir(cache) / "models"


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where results.sqlite and predictions go."""
    return Path(explicit or "w2slab-results")
