"""The stage cache: each stage's arrays stored under a content hash of (stage, version, params, upstream).

Settings that cannot change results (device, inference batch size, paths) must stay out of ``params``.
A ``StageCache(None)`` computes everything and stores nothing. ``cache_usage`` and ``collect_garbage``
back ``w2slab cache ls / gc``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import stable_hash, write_json, write_npz
from ..paths import models_dir

log = logging.getLogger(__name__)

# the stage folders w2slab writes (runner.stages, supervisors, training.policy)
STAGES = ("weak", "bootstrap", "prompt", "student", "run", "policy-sft", "policy-reward", "policy-dpo")
AREAS = ("features", "stages", "tasks", "models")  # the cache root's folders (and lm/generations.sqlite)


class StageCache:
    """Arrays per key in ``<root>/<stage>/<key>.npz`` with a JSON metadata file beside each.

    ``hits``, ``misses`` and ``computed`` (the (stage, key) pairs this object computed) let callers and tests
    count exactly what was recomputed."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0
        self.computed: list[tuple[str, str]] = []

    @staticmethod
    def key(stage: str, version: int, params: dict, upstream: list[str] | tuple[str, ...] = ()) -> str:
        return stable_hash({"stage": stage, "version": version, "w2slab": __version__, "params": params,
                            "upstream": list(upstream)})

    def path(self, stage: str, key: str) -> Path | None:
        return None if self.root is None else self.root / stage / f"{key}.npz"

    def keys(self, stage: str) -> set[str]:
        """Every key stored for ``stage`` (one directory listing: fast for tens of thousands of entries)."""
        folder = None if self.root is None else self.root / stage
        if folder is None or not folder.is_dir():
            return set()
        with os.scandir(folder) as entries:
            return {e.name[:-4] for e in entries if e.name.endswith(".npz") and not e.name.startswith(".")}

    def load(self, stage: str, key: str) -> dict[str, np.ndarray]:
        with np.load(self.path(stage, key)) as data:
            return {k: data[k] for k in data.files}

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], dict[str, np.ndarray]],
                       meta: dict | None = None) -> dict[str, np.ndarray]:
        """Load the arrays stored under ``key`` or call ``compute()`` and store its result atomically."""
        path = self.path(stage, key)
        if path is not None and path.is_file():
            self.hits += 1
            return self.load(stage, key)
        self.misses += 1
        arrays = compute()
        if path is not None:
            # metadata first, arrays last: an .npz present means the entry is complete
            write_json(path.with_suffix(".json"), {"stage": stage, "key": key, "w2slab": __version__,
                                                   "created": time.time(), **(meta or {})})
            write_npz(path, **arrays)
        self.computed.append((stage, key))
        return arrays


def cache_usage(root: str | Path) -> list[dict]:
    """One row per cache area and stage: files, MB, newest modification (ISO date) and leftover temp files."""
    root = Path(root)
    rows = []
    for area in AREAS:
        folder = models_dir(root) if area == "models" else root / area
        if not folder.is_dir():
            continue
        parts = sorted(p for p in folder.iterdir() if p.is_dir()) if area == "stages" else [folder]
        for part in parts:
            files = [p for p in part.rglob("*") if p.is_file()]
            newest = max((f.stat().st_mtime for f in files), default=None)
            rows.append({"area": area if part == folder else f"{area}/{part.name}",
                         "entries": sum(1 for f in files if not f.name.startswith(".tmp-")) if area != "stages"
                         else sum(1 for f in files if f.suffix == ".npz"),
                         "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
                         "newest": time.strftime("%Y-%m-%d %H:%M", time.localtime(newest)) if newest else "-",
                         "temp_files": sum(1 for f in files if f.name.startswith(".tmp-"))})
    from ..lm.cache import usage

    lm = usage(root)
    if lm is not None:
        rows.append({"area": "lm/generations", "entries": lm["entries"], "mb": lm["mb"],
                     "newest": time.strftime("%Y-%m-%d %H:%M", time.localtime(lm["newest"])), "temp_files": 0})
    return rows


def collect_garbage(root: str | Path, *, older_than_days: float | None = None, stages: tuple[str, ...] = (),
                    dry_run: bool = False, temp_grace_s: float = 3600) -> dict:
    """Delete stage entries not modified for ``older_than_days`` (optionally only of ``stages``), entries of
    other w2slab versions, and temp files of killed writers older than ``temp_grace_s``.

    Features and installed models are only touched through temp-file cleanup: they are expensive and keyed
    by content, so they never go stale. Returns {"files": n, "mb": size} of what was (or would be) deleted.
    """
    root, now = Path(root), time.time()
    doomed: list[Path] = []
    for path in root.rglob(".tmp-*") if root.is_dir() else ():
        if now - path.stat().st_mtime > temp_grace_s:
            doomed.append(path)
    stage_root = root / "stages"
    for folder in sorted(stage_root.iterdir()) if stage_root.is_dir() else ():
        if stages and folder.name not in stages:
            continue
        for npz in folder.glob("*.npz"):
            age_days = (now - npz.stat().st_mtime) / 86400
            meta = npz.with_suffix(".json")
            stale = _version_of(meta) not in (None, __version__)
            if stale or (older_than_days is not None and age_days > older_than_days) or (stages and older_than_days is None):
                doomed += [npz] + ([meta] if meta.is_file() else [])
    size = sum(p.stat().st_size for p in doomed if p.exists())
    if not dry_run:
        for path in doomed:
            path.unlink(missing_ok=True)
    generations = _trim_generations(root, older_than_days, stages, dry_run)
    orphans = _orphaned_feature_folders(root, now, temp_grace_s) if not stages else []
    if not dry_run:
        for folder in orphans:
            shutil.rmtree(folder, ignore_errors=True)
    return {"files": len(doomed), "mb": round(size / 2**20, 2), "generations": generations, "orphans": len(orphans)}


def _orphaned_feature_folders(root: Path, now: float, grace_s: float) -> list[Path]:
    """Feature folders that hold a spec but no vectors (left by a run that failed before extracting), older than
    ``grace_s`` so a run that is extracting right now keeps its folder."""
    folder = root / "features"
    if not folder.is_dir():
        return []
    return [d for d in folder.iterdir() if d.is_dir() and not any(d.glob("chunk-*.npy"))
            and now - d.stat().st_mtime > grace_s]


def known_stages(root: str | Path) -> set[str]:
    """Stage names ``cache gc --stage`` accepts: those with entries under ``root`` and every stage w2slab
    writes, plus 'generations' (the LM cache)."""
    stage_root = Path(root) / "stages"
    present = {p.name for p in stage_root.iterdir() if p.is_dir()} if stage_root.is_dir() else set()
    return present | set(STAGES) | {"generations"}


def _trim_generations(root: Path, older_than_days: float | None, stages: tuple[str, ...], dry_run: bool) -> int:
    """Generation-cache entries older than ``older_than_days`` (all, when 'generations' is named with no age)."""
    from ..lm.cache import GenerationCache, cache_file

    if (stages and "generations" not in stages) or (older_than_days is None and not stages):
        return 0
    path = cache_file(root)
    if not path.is_file():
        return 0
    store = GenerationCache(path)
    try:
        return store.trim(older_than_days=older_than_days, dry_run=dry_run)
    finally:
        store.close()


def _version_of(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text()).get("w2slab")
    except (OSError, ValueError):
        return None
