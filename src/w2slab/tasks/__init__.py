"""Task registry: ``load_task(name)`` gives a balanced binary :class:`TaskData` with group ids.

Built-in tasks are registered lazily (``"module:attr"``), so listing names imports no dataset code; user
tasks (CSV / JSONL files declared with ``w2slab tasks add``) are read from the user task file.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path, stable_hash
from ..paths import cache_dir
from ..paths import data_dir as resolve_data_dir
from ..registry import Registry
from .base import Item, Row, TaskData, TaskSpec, balance, items_to_task, subsample

log = logging.getLogger(__name__)

TASKS: Registry[TaskSpec] = Registry("task")
_BUILTIN = {
    "sst2": "sentiment:SST2", "sst2_glue": "sentiment:SST2_GLUE", "tweeteval_sentiment": "sentiment:TWEETEVAL",
    "amazon_polarity": "sentiment:AMAZON", "tweeteval_offensive": "sentiment:TWEETEVAL_OFFENSIVE",
    "boolq": "qa:BOOLQ", "cosmos_qa": "qa:COSMOS_QA", "dream": "qa:DREAM", "quail": "qa:QUAIL", "sciq": "qa:SCIQ",
    "openbookqa": "qa:OPENBOOKQA", "piqa": "qa:PIQA", "hellaswag": "qa:HELLASWAG", "mc_taco": "qa:MCTACO",
    "truthfulqa": "qa:TRUTHFULQA", "strategyqa": "qa:STRATEGYQA",
    "ethics_justice": "ethics:JUSTICE", "ethics_deontology": "ethics:DEONTOLOGY", "ethics_virtue": "ethics:VIRTUE",
    "ethics_utilitarianism": "ethics:UTILITARIANISM", "ethics_commonsense": "ethics:COMMONSENSE",
    "anli": "nli:ANLI",
    "hh_rlhf_harmless": "preference:HH_RLHF", "hhh_harmless": "preference:HHH_HARMLESS",
    "hhh_helpful": "preference:HHH_HELPFUL", "hhh_honest": "preference:HHH_HONEST", "hhh_other": "preference:HHH_OTHER",
    "chess_puzzles": "chess_tasks:LICHESS", "chess_mate_in_one": "chess_tasks:CHECKMATE",
}
for _name, _target in _BUILTIN.items():
    TASKS.register(_name, f"w2slab.tasks.{_target}")


def get_spec(name: str) -> TaskSpec:
    """The spec of a built-in or user task."""
    if name not in TASKS:
        from .user import register_user_tasks

        register_user_tasks(TASKS)
    return TASKS.get(name)


def read_rows(spec: TaskSpec, data_dir: Path | None) -> list[Row]:
    """Source rows from the local mirror when ``data_dir`` is set, else from the Hugging Face Hub."""
    if data_dir is not None or not spec.hub[0]:
        return spec.read_local(data_dir)
    return _read_hub(spec)


def _read_hub(spec: TaskSpec) -> list[Row]:
    try:
        import datasets  # optional: only needed without a local mirror
    except ImportError:
        raise DataError(
            f"task {spec.name!r}: no data directory (--data-dir or W2SLAB_DATA_DIR) and the 'datasets' package "
            "for the Hugging Face Hub is not installed (pip install datasets)"
        ) from None
    from ..checks import hub_reachable

    if not hub_reachable():
        raise DataError(f"task {spec.name!r}: no data directory (--data-dir or W2SLAB_DATA_DIR) and the Hugging Face "
                        "Hub is unreachable (offline): point --data-dir at a local mirror")
    hub_id, config, splits = spec.hub
    rows: list[Row] = []
    for split in splits:
        for i, row in enumerate(datasets.load_dataset(hub_id, config, split=split)):
            rows.append({**row, "_src": f"{hub_id}[{split}], row {i}"})
    return spec.hub_rows(rows) if spec.hub_rows else rows


def load_task(name: str, *, data_dir: str | os.PathLike | None = None, n_examples: int | None = None,
              seed: int = 0) -> TaskData:
    """Load, convert and balance task ``name``; optionally keep about ``n_examples`` items (whole groups).

    data_dir: local mirror root (default: ``W2SLAB_DATA_DIR``; None → Hugging Face Hub).
    seed: chooses which groups a subsample keeps; the conversion itself is seed-free and deterministic.
    """
    spec = get_spec(name)
    local = resolve_data_dir(data_dir)
    cache_file = _cache_file(spec, local)
    task = _read_cached(name, cache_file) if cache_file else None
    if task is None:
        rows = read_rows(spec, local)
        task = items_to_task(name, spec.convert(rows))  # raises before anything is cached
        log.info("task %s: %d rows -> %d balanced items in %d groups", name, len(rows), len(task),
                 len(set(task.groups.tolist())))
        if cache_file:
            _write_cached(cache_file, task)
    return subsample(task, n_examples, seed=seed)


CONVERSION_VERSION = 3  # bump when any conversion changes, so cached conversions are not reused


def source_identity(name: str, data_dir: str | os.PathLike | None) -> dict:
    """What a task's items are made of, independent of where the files lie: the conversion version and, per
    source file, its size and the sha256 of its first and last MiB (or the Hub dataset id). Cheap: no parsing."""
    from ..io import file_fingerprint

    spec = get_spec(name)
    if data_dir is None and not all(Path(f).is_absolute() for f in spec.local_files):  # from the Hub
        return {"task": name, "version": CONVERSION_VERSION, "hub": list(spec.hub)}
    root = Path(data_dir or "/")
    files = []
    for rel in sorted(spec.local_files):
        path = root / rel
        if not path.is_file():
            files.append([rel, None])  # the loader names the missing file later
            continue
        files.append([Path(rel).name, file_fingerprint(path)])
    return {"task": name, "version": CONVERSION_VERSION, "files": files}


def _cache_file(spec: TaskSpec, data_dir: Path | None) -> Path | None:
    """Converted tasks from the local mirror are cached, keyed by the source files' paths, sizes and mtimes."""
    if data_dir is None:
        return None
    files = sorted(data_dir / f for f in spec.local_files)
    if not all(f.is_file() for f in files):
        return None  # let the reader name the missing file
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = stable_hash({"task": spec.name, "version": CONVERSION_VERSION, "files": stats})
    return cache_dir() / "tasks" / f"{spec.name}-{key}.json.gz"


def _read_cached(name: str, path: Path) -> TaskData | None:
    if not path.is_file():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return TaskData(name, data["texts"], np.array(data["labels"], dtype=np.int64),
                    np.array(data["groups"], dtype=np.int64), data["texts_b"])


def _write_cached(path: Path, task: TaskData) -> None:
    payload = {"texts": task.texts, "texts_b": task.texts_b, "labels": task.labels.tolist(),
               "groups": task.groups.tolist()}
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(payload, f)


__all__ = ["TASKS", "Item", "Row", "TaskData", "TaskSpec", "balance", "get_spec", "items_to_task", "load_task",
           "read_rows", "subsample"]
