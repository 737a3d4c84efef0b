"""The stage cache: each stage's arrays stored under a content hash of (stage, version, params, upstream).

Settings that cannot change results (device, inference batch size, paths) must stay out of ``params``.
A ``StageCache(None)`` computes everything and stores nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import stable_hash, write_json, write_npz

log = logging.getLogger(__name__)


class StageCache:
    """Arrays per key in ``<root>/<stage>/<key>.npz`` with a JSON metadata file beside each."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(stage: str, version: int, params: dict, upstream: list[str] | tuple[str, ...] = ()) -> str:
        return stable_hash({"stage": stage, "version": version, "params": params, "upstream": list(upstream)})

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], dict[str, np.ndarray]],
                       meta: dict | None = None) -> dict[str, np.ndarray]:
        """Load the arrays stored under ``key`` or call ``compute()`` and store its result atomically."""
        path = None if self.root is None else self.root / stage / f"{key}.npz"
        if path is not None and path.is_file():
            self.hits += 1
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        self.misses += 1
        arrays = compute()
        if path is not None:
            write_npz(path, **arrays)
            write_json(path.with_suffix(".json"), {"stage": stage, "key": key, **(meta or {})})
        return arrays
