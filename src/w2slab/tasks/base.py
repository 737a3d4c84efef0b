"""Task data: binary, balanced items with group ids, and the spec that builds them.

A task spec is declarative (lm-evaluation-harness style): where the rows come from (local mirror files or
a Hugging Face Hub dataset) and a ``convert`` function that turns source rows into binary items.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Item:
    """One binary example: ``text`` the model reads, ``label`` in {0, 1}, ``group`` keeps related items together."""

    text: str
    label: int
    group: str


@dataclasses.dataclass(frozen=True, eq=False)
class TaskData:
    """A converted task.

    texts:  list of n strings.
    labels: int64 array, shape (n,), ground truth in {0, 1}.
    groups: int64 array, shape (n,); items of one group (e.g. one question) always share a split.
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> "TaskData":
        return TaskData(self.name, [self.texts[i] for i in index], self.labels[index], self.groups[index])

    @property
    def positive_rate(self) -> float:
        return float(self.labels.mean()) if len(self) else float("nan")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Declarative description of a built-in task.

    local_files: paths relative to the data directory, read by ``read_local(data_dir)``.
    hub: (dataset id, config name or None, splits) for the Hugging Face Hub.
    convert: source rows → items; must be deterministic (any sampling uses a fixed seed).
    """

    name: str
    description: str
    licence: str
    hub: tuple[str, str | None, tuple[str, ...]]
    local_files: tuple[str, ...]
    read_local: Callable[[Path], list[Row]]
    convert: Callable[[list[Row]], list[Item]]
    template: str
    frozen_features_learnable: bool = True


def balance(items: Sequence[Item], *, seed: int = 0) -> list[Item]:
    """Downsample the majority class to the minority's size (seeded), keeping the original order."""
    labels = np.array([it.label for it in items])
    counts = np.bincount(labels, minlength=2)
    if counts.min() == 0:
        return list(items)  # one-class data is rejected by the caller with a clear message
    majority = int(np.argmax(counts))
    rng = np.random.default_rng(seed)
    majority_idx = np.flatnonzero(labels == majority)
    drop = set(rng.choice(majority_idx, size=counts.max() - counts.min(), replace=False).tolist())
    return [it for i, it in enumerate(items) if i not in drop]


def items_to_task(name: str, items: Sequence[Item]) -> TaskData:
    """Pack items into arrays; group strings become consecutive integer ids (first-seen order)."""
    if not items:
        raise DataError(f"task {name!r}: no examples after conversion")
    labels = np.array([it.label for it in items], dtype=np.int64)
    bad = set(np.unique(labels).tolist()) - {0, 1}
    if bad:
        raise DataError(f"task {name!r}: labels {sorted(bad)} outside {{0, 1}}")
    if len(np.unique(labels)) < 2:
        raise DataError(f"task {name!r}: all {len(labels)} examples have label {labels[0]}; need both classes")
    group_ids: dict[str, int] = {}
    groups = np.array([group_ids.setdefault(it.group, len(group_ids)) for it in items], dtype=np.int64)
    return TaskData(name, [it.text for it in items], labels, groups)


def subsample(task: TaskData, n_examples: int | None, *, seed: int) -> TaskData:
    """Keep about ``n_examples`` items by drawing whole groups in a seeded order (never splits a group)."""
    if n_examples is None or n_examples >= len(task):
        return task
    rng = np.random.default_rng(seed)
    unique_groups = np.unique(task.groups)
    order = rng.permutation(unique_groups)
    sizes = np.bincount(task.groups)[order]
    keep_groups = order[: int(np.searchsorted(np.cumsum(sizes), n_examples)) + 1]
    index = np.flatnonzero(np.isin(task.groups, keep_groups))
    return task.subset(index)
