"""Task registry: ``load_task(name)`` gives a balanced binary :class:`TaskData` with group ids."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DataError
from ..paths import data_dir as resolve_data_dir
from ..registry import Registry
from .base import Item, Row, TaskData, TaskSpec, balance, items_to_task, subsample

log = logging.getLogger(__name__)

TASKS: Registry[TaskSpec] = Registry("task")
TASKS.register("sst2", "w2slab.tasks.builtin:SST2")
TASKS.register("sst2_glue", "w2slab.tasks.builtin:SST2_GLUE")
TASKS.register("sciq", "w2slab.tasks.builtin:SCIQ")
TASKS.register("boolq", "w2slab.tasks.builtin:BOOLQ")


def read_rows(spec: TaskSpec, data_dir: Path | None) -> list[Row]:
    """Source rows from the local mirror when ``data_dir`` is set, else from the Hugging Face Hub."""
    if data_dir is not None:
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
    hub_id, config, splits = spec.hub
    rows: list[Row] = []
    for split in splits:
        for i, row in enumerate(datasets.load_dataset(hub_id, config, split=split)):
            rows.append({**row, "_src": f"{hub_id}[{split}], row {i}"})
    return rows


def load_task(name: str, *, data_dir: str | os.PathLike | None = None, n_examples: int | None = None,
              seed: int = 0) -> TaskData:
    """Load, convert and balance task ``name``; optionally keep about ``n_examples`` items (whole groups).

    data_dir: local mirror root (default: ``W2SLAB_DATA_DIR``; None → Hugging Face Hub).
    seed: chooses which groups a subsample keeps; the conversion itself is seed-free and deterministic.
    """
    spec = TASKS.get(name)
    rows = read_rows(spec, resolve_data_dir(data_dir))
    task = items_to_task(name, spec.convert(rows))
    log.info("task %s: %d rows -> %d balanced items in %d groups", name, len(rows), len(task),
             len(set(task.groups.tolist())))
    return subsample(task, n_examples, seed=seed)


__all__ = ["TASKS", "Item", "Row", "TaskData", "TaskSpec", "balance", "items_to_task", "load_task", "read_rows",
           "subsample"]
