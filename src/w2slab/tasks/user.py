"""Your own data as a task: a CSV or JSONL file with a text (or text pair) and a label column, or a
question, its candidates and the answer. Declared once with ``w2slab tasks add`` (or ``add_user_task``),
stored in the user task file (``W2SLAB_TASKS_FILE``, default ``~/.config/w2slab/tasks.json``), then loaded
like a built-in task."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import write_json
from .base import Item, Row, TaskSpec, balance, choice_items, items_to_task
from .readers import read_csv, read_jsonl

log = logging.getLogger(__name__)

POSITIVE = ("1", "true", "yes", "positive")
NEGATIVE = ("0", "false", "no", "negative")


@dataclasses.dataclass(frozen=True)
class FileTask:
    """A task read from ``path`` (.csv or .jsonl).

    Classification: ``text`` (and optionally ``text_b``, appended on a new line) and ``label`` columns; label
    values in ``positive`` map to 1 and in ``negative`` to 0 (compared as lower-case strings); anything else
    is an error. Multiple choice: ``question``, ``candidates`` (a JSON list, or in CSV a JSON list string) and
    ``answer`` (the index or the text of the correct candidate). ``id``: optional column whose values must be
    unique; ``group``: optional column whose rows share a split (default: each row, or each question).
    """

    name: str
    path: str
    text: str | None = None
    text_b: str | None = None
    label: str | None = None
    question: str | None = None
    candidates: str | None = None
    answer: str | None = None
    id: str | None = None
    group: str | None = None
    positive: tuple[str, ...] = POSITIVE
    negative: tuple[str, ...] = NEGATIVE
    description: str = ""
    skip_invalid: bool = False  # drop rows with an empty text, an unknown label or no correct candidate

    def __post_init__(self) -> None:
        from ..checks import check_safe_name

        check_safe_name(self.name, "task name")
        object.__setattr__(self, "positive", tuple(str(v).lower() for v in self.positive))
        object.__setattr__(self, "negative", tuple(str(v).lower() for v in self.negative))
        classification = self.text is not None or self.label is not None
        choice = any(v is not None for v in (self.question, self.candidates, self.answer))
        if classification == choice:
            raise ConfigError(f"task {self.name!r}: give either text + label columns or question + candidates + "
                              "answer columns")
        if classification and (self.text is None or self.label is None):
            raise ConfigError(f"task {self.name!r}: a classification task needs both text and label columns")
        if choice and None in (self.question, self.candidates, self.answer):
            raise ConfigError(f"task {self.name!r}: a multiple-choice task needs question, candidates and answer")
        if set(self.positive) & set(self.negative):
            raise ConfigError(f"task {self.name!r}: a label value cannot be both positive and negative")
        if Path(self.path).suffix.lower() not in (".csv", ".jsonl"):
            raise ConfigError(f"task {self.name!r}: file must end in .csv or .jsonl, got {self.path!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        names = (self.text, self.text_b, self.label, self.question, self.candidates, self.answer, self.id, self.group)
        return tuple(c for c in names if c is not None)

    def read(self) -> list[Row]:
        """Rows of the file; every declared column must be present in every row."""
        path = Path(self.path)
        if path.suffix.lower() == ".csv":
            return read_csv(path, self.columns)
        rows = read_jsonl(path)
        for row in rows:
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise DataError(f"{row['_src']}: missing field(s) {', '.join(missing)}")
        return rows

    def convert(self, rows: list[Row]) -> list[Item]:
        """Rows → items (classification balanced by seeded downsampling; multiple choice by construction)."""
        return self.convert_counting(rows)[0]

    def convert_counting(self, rows: list[Row]) -> tuple[list[Item], list[str]]:
        """``convert`` that also returns where each dropped row was (``"file, line N: why"``); rows are dropped
        only with ``skip_invalid``, otherwise the first bad row raises DataError."""
        if self.id is not None:
            seen: dict[str, str] = {}
            for row in rows:
                key = str(row[self.id])
                if key in seen:
                    raise DataError(f"{row['_src']}: duplicate id {key!r} (first at {seen[key]})")
                seen[key] = row["_src"]
        items: list[Item] = []
        skipped: list[str] = []
        for i, row in enumerate(rows):
            try:
                items.extend(self._choice(row, i) if self.question is not None else [self._classify(row, i)])
            except DataError as err:
                if not self.skip_invalid:
                    raise
                skipped.append(str(err))
        if not items:
            raise DataError(f"{self.path}: no valid row ({len(skipped)} skipped)")
        return (items if self.question is not None else balance(items, seed=0)), skipped

    def _classify(self, row: Row, i: int) -> Item:
        value = str(row[self.label]).strip().lower()
        if value in self.positive:
            label = 1
        elif value in self.negative:
            label = 0
        else:
            raise DataError(f"{row['_src']}: label {row[self.label]!r} is not in the declared values "
                            f"(positive {list(self.positive)}, negative {list(self.negative)})")
        text = str(row[self.text]).strip()
        if self.text_b is not None:
            text = f"{text}\n{str(row[self.text_b]).strip()}"
        if not text:
            raise DataError(f"{row['_src']}: empty text")
        return Item(text, label, str(row[self.group]) if self.group else f"row-{i}")

    def _choice(self, row: Row, i: int) -> list[Item]:
        candidates = row[self.candidates]
        if isinstance(candidates, str):
            try:
                candidates = json.loads(candidates)
            except json.JSONDecodeError:
                raise DataError(f"{row['_src']}: candidates must be a JSON list, got {candidates[:40]!r}") from None
        if not isinstance(candidates, list) or len(candidates) < 2:
            raise DataError(f"{row['_src']}: candidates must be a list of at least two answers")
        candidates = [str(c) for c in candidates]
        answer = row[self.answer]
        if isinstance(answer, int) or (isinstance(answer, str) and answer.strip().isdigit()
                                       and answer.strip() not in candidates):
            correct = int(answer)
        elif str(answer) in candidates:
            correct = candidates.index(str(answer))
        else:
            correct = -1
        if not 0 <= correct < len(candidates):
            raise DataError(f"{row['_src']}: answer {answer!r} matches no candidate (no correct candidate)")
        group = str(row[self.group]) if self.group else f"q-{i}"
        return choice_items(str(row[self.question]).strip(), candidates, correct, group=group)

    def spec(self) -> TaskSpec:
        """The TaskSpec that the registry serves for this task."""
        return TaskSpec(name=self.name, description=self.description or f"user task from {self.path}",
                        licence="user data", hub=("", None, ()), local_files=(self.path,),
                        read_local=lambda _data_dir: self.read(), convert=self.convert,
                        template="{question}\\nAnswer: {candidate}" if self.question else
                        ("{text}\\n{text_b}" if self.text_b else "{text}"),
                        conversion="user file; " + ("multiple choice: correct + one seeded wrong candidate"
                                                    if self.question else "labels mapped by the declared values; "
                                                    "majority class downsampled (seed 0)"))


def tasks_file() -> Path:
    """The user task file (``W2SLAB_TASKS_FILE`` or ``~/.config/w2slab/tasks.json``)."""
    return Path(os.environ.get("W2SLAB_TASKS_FILE") or Path.home() / ".config" / "w2slab" / "tasks.json")


def user_tasks() -> dict[str, FileTask]:
    """Declared user tasks by name."""
    path = tasks_file()
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"user task file {str(path)!r} is not valid JSON ({err})") from None
    return {name: FileTask(**entry) for name, entry in entries.items()}


def register_user_tasks(registry) -> None:
    """Add every declared user task that the registry does not have yet."""
    for name, task in user_tasks().items():
        if name not in registry:
            registry.register(name, task.spec())


def add_user_task(task: FileTask, *, replace: bool = False) -> int:
    """Validate ``task`` by loading it completely, then store its declaration; returns the item count.
    A file that fails to load is not declared (and nothing is cached). With ``skip_invalid`` the dropped rows
    are logged as a warning: how many, and which lines."""
    from . import TASKS

    from ..checks import check_new_file

    check_new_file(tasks_file(), "user task file (W2SLAB_TASKS_FILE)", parents=True)
    if task.name in TASKS and task.name not in user_tasks():
        raise ConfigError(f"task name {task.name!r} is taken by a built-in task")
    existing = user_tasks()
    if task.name in existing and not replace:
        raise ConfigError(f"user task {task.name!r} already exists (use --replace to overwrite it)")
    task = dataclasses.replace(task, path=str(Path(task.path).expanduser().resolve()))
    items, skipped = task.convert_counting(task.read())
    if skipped:
        log.warning("task %s: %d invalid row(s) skipped: %s", task.name, len(skipped),
                    "; ".join(skipped[:5]) + (f"; … and {len(skipped) - 5} more" if len(skipped) > 5 else ""))
    data = items_to_task(task.name, items)
    entries = {name: dataclasses.asdict(t) for name, t in existing.items()}
    entries[task.name] = dataclasses.asdict(task)
    write_json(tasks_file(), entries)
    return len(data)
