"""Questions with a checkable final answer, for chain-of-thought generation: GSM8K (a number), StrategyQA (yes /
no), and the multiple-choice OpenBookQA, SciQ (A-D, without the support passage) and PIQA (A or B) (a letter), with the prompt that asks for reasoning and the extraction of the final answer.

Extraction never guesses: an answer that cannot be read is ``None`` and is counted by callers, never dropped or
scored as wrong without saying so.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..errors import DataError, UnknownNameError
from ..io import stable_hash
from ..paths import data_dir as resolve_data_dir
from .qa import _read_piqa
from .readers import read_json_list

TASKS = ("gsm8k", "strategyqa", "openbookqa", "sciq", "piqa")
TASKS_WITH_RATIONALES = ("gsm8k",)  # gold chains of thought, for the 'gold' SFT control
ANSWER_FORMAT = {"gsm8k": "a number", "strategyqa": "Yes or No", "openbookqa": "one letter (A, B, C or D)",
                 "sciq": "one letter (A, B, C or D)", "piqa": "one letter (A or B)"}


@dataclasses.dataclass(frozen=True)
class ReasoningQuestion:
    """qid: stable id; question: text shown to the model (choices included); answer: the gold final answer,
    normalised as :func:`extract_answer` normalises a model's; rationale: a gold chain of thought where the
    dataset has one (GSM8K), else None."""

    qid: str
    question: str
    answer: str
    rationale: str | None = None


def load_reasoning(task: str, *, split: str, data_dir: str | Path | None = None,
                   limit: int | None = None) -> list[ReasoningQuestion]:
    """``split`` 'train' or 'test'. GSM8K has both; SciQ's train is its validation file; StrategyQA, OpenBookQA and
    PIQA (one file here) are split by a hash of the question id, half and half, so the split never depends on
    ``limit``."""
    if task not in TASKS:
        raise UnknownNameError(f"unknown reasoning task {task!r} (known: {', '.join(TASKS)})")
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError(f"{task} is read from the local data folder: set W2SLAB_DATA_DIR or --data-dir")
    if task == "gsm8k":
        questions = [_gsm8k(i, row) for i, row in enumerate(_jsonl(root / f"gsm8k/{split}.jsonl"))]
    elif task == "sciq":
        questions = _sciq(root / f"sciq/{'test' if split == 'test' else 'valid'}.json")
    else:
        every = {"strategyqa": _strategyqa, "openbookqa": _openbookqa, "piqa": _piqa}[task](root)
        questions = [q for q in every if (int(stable_hash(q.qid, length=8), 16) % 2 == 0) == (split == "test")]
    return questions[:limit] if limit is not None else questions


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} is missing")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _gsm8k(index: int, row: dict) -> ReasoningQuestion:
    rationale, _, final = row["answer"].rpartition("####")
    rationale = re.sub(r"<<[^>]*>>", "", rationale).strip()
    return ReasoningQuestion(qid=f"gsm8k/{stable_hash(row['question'], length=10)}", question=row["question"],
                             answer=_number(final), rationale=f"{rationale}\nThe answer is {_number(final)}.")


def _strategyqa(root: Path) -> list[ReasoningQuestion]:
    path = root / "bigbench/strategyqa.json"
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} is missing")
    rows = json.loads(path.read_text(encoding="utf-8"))["examples"]
    return [ReasoningQuestion(qid=f"strategyqa/{stable_hash(r['input'], length=10)}", question=r["input"],
                              answer=max(r["target_scores"], key=r["target_scores"].get).lower())
            for r in rows]


def _openbookqa(root: Path) -> list[ReasoningQuestion]:
    out = []
    for row in _jsonl(root / "openbookqa/openbookqa_test.jsonl"):
        choices = "\n".join(f"{c['label']}. {c['text']}" for c in row["question"]["choices"])
        out.append(ReasoningQuestion(qid=f"openbookqa/{row['id']}", question=f"{row['question']['stem']}\n{choices}",
                                     answer=row["answerKey"].strip().upper()))
    return out


def question_messages(task: str, question: ReasoningQuestion) -> tuple[dict, ...]:
    """The chat prompt: think step by step, end with 'The answer is X.'"""
    return ({"role": "user", "content": (
        f"{question.question}\n\nThink step by step, briefly. End with \"The answer is X.\" where X is "
        f"{ANSWER_FORMAT[task]}.")},)


_FINAL = re.compile(r"answer is[:\s]*\**\s*([^\n]*)", re.I)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def _number(text: str) -> str:
    """'$1,234.50' → '1234.5'; '18' → '18'."""
    value = float(text.replace("$", "").replace(",", "").strip())
    return str(int(value)) if value == int(value) else repr(value)


def extract_answer(task: str, text: str, *, strict: bool = True) -> str | None:
    """The final answer in ``text``, normalised (a number for gsm8k, 'yes' / 'no', a capital letter), or None.
    The last "answer is ..." phrase is read; with ``strict`` (default) a text without one has no answer (a
    reply cut off mid-reasoning is not guessed from its last number); otherwise the last number / yes-no word /
    standalone letter of the whole text is taken."""
    match = None
    for match in _FINAL.finditer(text):
        pass
    tail = match.group(1) if match else None
    if strict and tail is None:
        return None
    if task == "gsm8k":
        numbers = _NUMBER.findall(tail if tail and _NUMBER.search(tail) else text)
        try:
            return _number(numbers[0] if tail and _NUMBER.search(tail) else numbers[-1]) if numbers else None
        except ValueError:
            return None
    if task == "strategyqa":
        words = re.findall(r"\b(yes|no)\b", tail if tail and re.search(r"\b(yes|no)\b", tail, re.I) else text, re.I)
        if not words:
            return None
        return (words[0] if tail and re.search(r"\b(yes|no)\b", tail, re.I) else words[-1]).lower()
    letters = re.findall(r"\b([A-D])\b", tail if tail and re.search(r"\b[A-D]\b", tail) else text)
    if not letters:
        return None
    return letters[0] if tail and re.search(r"\b[A-D]\b", tail) else letters[-1]


def _lettered(options: list[str]) -> str:
    return "\n".join(f"{'ABCD'[i]}. {text}" for i, text in enumerate(options))


def _sciq(path: Path) -> list[ReasoningQuestion]:
    """SciQ without its support passage; the correct answer's position is drawn from a hash of the question, so
    it is stable and spread evenly over A-D."""
    out = []
    for row in read_json_list(path):
        qid = f"sciq/{stable_hash(row['question'] + row['correct_answer'], length=10)}"
        options = [row["distractor1"], row["distractor2"], row["distractor3"]]
        position = int(stable_hash(qid, length=8), 16) % 4
        options.insert(position, row["correct_answer"])
        out.append(ReasoningQuestion(qid=qid, question=f"{row['question']}\n{_lettered(options)}",
                                     answer="ABCD"[position]))
    return out


def _piqa(root: Path) -> list[ReasoningQuestion]:
    """PIQA's validation file (the test labels are not public): a goal and two solutions, A or B."""
    return [ReasoningQuestion(qid=f"piqa/{stable_hash(r['goal'] + r['sol1'], length=10)}",
                              question=f"Goal: {r['goal']}\n{_lettered([r['sol1'], r['sol2']])}",
                              answer="AB"[int(r["label"])]) for r in _read_piqa(root)]
