"""Built-in tasks, converted to balanced binary classification as in Burns et al. (2023).

Every task reads the same rows from the local mirror (``W2SLAB_DATA_DIR``) or from the Hugging Face Hub,
then one ``convert`` function makes the items, so both sources give the same examples where the files agree.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Item, Row, TaskSpec, balance
from .readers import read_json_list, read_jsonl, read_label_text_lines, read_tsv, require_keys


def _src(row: Row) -> str:
    return row.get("_src", "row")


def _seed_of(text: str) -> int:
    """A per-question seed, so a question's distractor does not depend on which other rows were loaded."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# --- SST-2 ----------------------------------------------------------------------------------------------
def _read_sst2(data_dir: Path) -> list[Row]:
    return [r for split in ("train", "dev", "test") for r in read_label_text_lines(data_dir / f"sst2/stsa.binary.{split}")]


def _convert_sst2(rows: list[Row]) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        require_keys(row, ("text", "label"), where=_src(row))
        if row["label"] not in (0, 1):
            raise DataError(f"{_src(row)}: label {row['label']!r} outside {{0, 1}}")
        items.append(Item(text=row["text"], label=int(row["label"]), group=f"sst2-{i}"))
    return balance(items, seed=0)


SST2 = TaskSpec(
    name="sst2",
    description="Stanford Sentiment Treebank, sentence level: is the movie-review sentence positive?",
    licence="unspecified (research use)",
    hub=("SetFit/sst2", None, ("train", "validation", "test")),
    local_files=("sst2/stsa.binary.train", "sst2/stsa.binary.dev", "sst2/stsa.binary.test"),
    read_local=_read_sst2,
    convert=_convert_sst2,
    template="{sentence}",
)


def _read_sst2_glue(data_dir: Path) -> list[Row]:
    rows = []
    for name in ("alps_train.tsv", "alps_dev.tsv", "alps_test.tsv"):
        for row in read_tsv(data_dir / "sst2" / name, ("sentence", "label")):
            if row["label"] not in ("0", "1"):
                raise DataError(f"{row['_src']}: label {row['label']!r} outside {{0, 1}}")
            rows.append({"text": row["sentence"].strip(), "label": int(row["label"]), "_src": row["_src"]})
    return rows


def _from_hub_sst2_glue(rows: list[Row]) -> list[Row]:
    return [{**r, "text": r.get("text", r.get("sentence", "")).strip()} for r in rows]


SST2_GLUE = TaskSpec(
    name="sst2_glue",
    description="GLUE SST-2 (train phrases + validation sentences, 68k): is the phrase positive?",
    licence="unspecified (research use)",
    hub=("stanfordnlp/sst2", None, ("train", "validation")),
    local_files=("sst2/alps_train.tsv", "sst2/alps_dev.tsv", "sst2/alps_test.tsv"),
    read_local=_read_sst2_glue,
    convert=lambda rows: _convert_sst2(_from_hub_sst2_glue(rows)),
    template="{sentence}",
)


# --- SciQ -----------------------------------------------------------------------------------------------
def _read_sciq(data_dir: Path) -> list[Row]:
    return read_json_list(data_dir / "sciq/valid.json") + read_json_list(data_dir / "sciq/test.json")


def _convert_sciq(rows: list[Row]) -> list[Item]:
    """Each question gives two items: (question, correct answer) → 1 and (question, one distractor) → 0."""
    items = []
    for row in rows:
        require_keys(row, ("question", "correct_answer", "distractor1", "distractor2", "distractor3"), where=_src(row))
        question = row["question"].strip()
        rng = np.random.default_rng(_seed_of(question))
        distractor = row[f"distractor{rng.integers(1, 4)}"]
        for answer, label in ((row["correct_answer"], 1), (distractor, 0)):
            items.append(Item(text=f"Q: {question}\nA: {str(answer).strip()}", label=label, group=f"sciq-{question}"))
    return items


SCIQ = TaskSpec(
    name="sciq",
    description="SciQ science exam questions as (question, candidate answer): is the candidate correct?",
    licence="CC BY-NC 3.0",
    hub=("allenai/sciq", None, ("validation", "test")),
    local_files=("sciq/valid.json", "sciq/test.json"),
    read_local=_read_sciq,
    convert=_convert_sciq,
    template="Q: {question}\nA: {candidate}",
    frozen_features_learnable=False,
)


# --- BoolQ ----------------------------------------------------------------------------------------------
def _read_boolq(data_dir: Path) -> list[Row]:
    return read_jsonl(data_dir / "boolq/dev.jsonl")


def _convert_boolq(rows: list[Row]) -> list[Item]:
    """Question first, so truncation to the model's length cuts the passage, never the question."""
    items = []
    for row in rows:
        require_keys(row, ("question", "passage", "answer"), where=_src(row))
        if not isinstance(row["answer"], bool):
            raise DataError(f"{_src(row)}: answer {row['answer']!r} is not true/false")
        question = row["question"].strip().rstrip("?")
        passage = row["passage"].strip()
        items.append(Item(text=f"Question: {question}?\nPassage: {passage}", label=int(row["answer"]),
                          group=f"boolq-{hashlib.sha1(passage.encode()).hexdigest()}"))
    return balance(items, seed=0)


BOOLQ = TaskSpec(
    name="boolq",
    description="BoolQ yes/no questions about a Wikipedia passage: is the answer yes?",
    licence="CC BY-SA 3.0",
    hub=("google/boolq", None, ("validation",)),
    local_files=("boolq/dev.jsonl",),
    read_local=_read_boolq,
    convert=_convert_boolq,
    template="Question: {question}?\nPassage: {passage}",
    frozen_features_learnable=False,
)
