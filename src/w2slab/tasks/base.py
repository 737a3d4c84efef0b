"""Task data: binary, balanced items with group ids, and the spec that builds them.

A task spec is declarative (lm-evaluation-harness style): where the rows come from (local mirror files or
a Hugging Face Hub dataset) and a ``convert`` function that turns source rows into binary items.
"""
from __future__ import annotations

import dataclasses
import hashlib
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
    """One binary example: ``text`` the model reads, ``label`` in {0, 1}, ``group`` keeps related items together.

    Pairwise items (preferences) also carry ``text_b``: the label says whether ``text`` is preferred over
    ``text_b``, and models see the difference of the two texts' features.
    """

    text: str
    label: int
    group: str
    text_b: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class TaskData:
    """A converted task.

    texts:  list of n strings.
    labels: int64 array, shape (n,), ground truth in {0, 1}.
    groups: int64 array, shape (n,); items of one group (e.g. one question) always share a split.
    texts_b: for pairwise tasks, the n second texts (``labels`` = 1 when ``texts[i]`` is preferred); else None.
    """

    name: str
    texts: list[str]
    labels: np.ndarray
    groups: np.ndarray
    texts_b: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> "TaskData":
        """The items at ``index`` (int array), in that order."""
        texts_b = None if self.texts_b is None else [self.texts_b[i] for i in index]
        return TaskData(self.name, [self.texts[i] for i in index], self.labels[index], self.groups[index], texts_b)

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
    frozen_features_learnable: bool = False  # MiniLM probe's 95% lower bound > 0.55 (docs/tasks.md)
    hub_rows: Callable[[list[Row]], list[Row]] | None = None  # maps Hub columns onto the local rows' fields
    conversion: str = ""  # the binary/balance rule in words, for dataset cards
    prompt: tuple[str, tuple[str, str]] | None = None  # (template with {text}, (word for 0, word for 1)) for LMs


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
    pairwise = [it.text_b is not None for it in items]
    if any(pairwise) and not all(pairwise):
        raise DataError(f"task {name!r}: some items have a second text and some do not")
    texts_b = [it.text_b for it in items] if all(pairwise) else None
    return TaskData(name, [it.text for it in items], labels, groups, texts_b)


def stable_seed(*parts: object) -> int:
    """A seed derived from content (e.g. a question's text), so a row's sampled distractor does not depend on
    which other rows were loaded or in what order."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def choice_items(prompt: str, candidates: Sequence[str], correct: int, *, group: str,
                 template: str = "{prompt}\nAnswer: {candidate}") -> list[Item]:
    """Multiple choice → two items: (prompt, correct candidate) → 1 and (prompt, one wrong candidate) → 0.

    The wrong candidate is drawn with a seed derived from the prompt, so classes are balanced by
    construction and the draw is reproducible. Both items share ``group``.
    """
    wrong = [c for i, c in enumerate(candidates) if i != correct]
    if not 0 <= correct < len(candidates) or not wrong:
        raise DataError(f"group {group!r}: needs a correct candidate and at least one wrong one")
    rng = np.random.default_rng(stable_seed(prompt, *candidates))
    distractor = wrong[int(rng.integers(len(wrong)))]
    return [Item(template.format(prompt=prompt, candidate=str(candidates[correct]).strip()), 1, group),
            Item(template.format(prompt=prompt, candidate=str(distractor).strip()), 0, group)]


def pair_items(pairs: Sequence[tuple[str, str, str, str]], *, template: str, seed: int = 0) -> list[Item]:
    """Pairwise preference items from (prompt, preferred, other, group) tuples.

    Exactly half of the pairs (chosen by a seeded permutation) show the preferred reply second, so the
    classes are balanced exactly; label 1 means ``text`` holds the preferred reply.
    """
    flips = np.random.default_rng(seed).permutation(len(pairs)) < len(pairs) // 2
    items = []
    for (prompt, preferred, other, group), flip in zip(pairs, flips):
        first, second = (other, preferred) if flip else (preferred, other)
        items.append(Item(template.format(prompt=prompt, reply=first), int(not flip), group,
                          text_b=template.format(prompt=prompt, reply=second)))
    return items


def subsample(task: TaskData, n_examples: int | None, *, seed: int) -> TaskData:
    """Keep about ``n_examples`` items by drawing whole groups in a seeded order (never splits a group)."""
    if n_examples is None:
        return task
    if n_examples >= len(task):
        if n_examples > len(task):
            logging.getLogger(__name__).warning("task %s has %d items; n_examples %d asks for more, so all %d are "
                                                "used", task.name, len(task), n_examples, len(task))
        return task
    rng = np.random.default_rng(seed)
    unique_groups = np.unique(task.groups)
    order = rng.permutation(unique_groups)
    sizes = np.bincount(task.groups)[order]
    keep_groups = order[: int(np.searchsorted(np.cumsum(sizes), n_examples)) + 1]
    index = np.flatnonzero(np.isin(task.groups, keep_groups))
    return task.subset(index)
