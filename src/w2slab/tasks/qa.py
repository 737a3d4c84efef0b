"""Question answering and commonsense tasks. Multiple choice → (question, candidate) items: the correct
candidate (label 1) and one seeded wrong candidate (label 0), both in the question's group."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DataError
from .base import Item, Row, TaskSpec, balance, choice_items
from .readers import read_csv, read_json_list, read_jsonl, read_text, require_keys

MC_RULE = "each question → (question, correct answer) = 1 and (question, one seeded wrong answer) = 0"


def _src(row: Row) -> str:
    return row.get("_src", "row")


def _correct_index(row: Row, value, n: int) -> int:
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise DataError(f"{_src(row)}: answer index {value!r} is not an integer") from None
    if not 0 <= index < n:
        raise DataError(f"{_src(row)}: answer index {index} outside 0..{n - 1} (no correct candidate)")
    return index


def _mc(rows: list[Row], fields: tuple[str, ...], build, prefix: str) -> list[Item]:
    """Generic multiple choice: ``build(row) -> (prompt, candidates, correct index)``."""
    items = []
    for row in rows:
        require_keys(row, fields, where=_src(row))
        prompt, candidates, correct = build(row)
        items += choice_items(prompt, candidates, correct, group=f"{prefix}-{hashlib.sha1(prompt.encode()).hexdigest()}")
    return items


# --- SciQ -----------------------------------------------------------------------------------------------
def _sciq(row: Row):
    candidates = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
    return f"Q: {row['question'].strip()}", candidates, 0


SCIQ = TaskSpec(
    name="sciq", description="SciQ science exam questions: is the candidate answer correct?",
    licence="CC BY-NC 3.0", hub=("allenai/sciq", None, ("validation", "test")),
    local_files=("sciq/valid.json", "sciq/test.json"),
    read_local=lambda d: read_json_list(d / "sciq/valid.json") + read_json_list(d / "sciq/test.json"),
    convert=lambda rows: _mc(rows, ("question", "correct_answer", "distractor1", "distractor2", "distractor3"),
                             _sciq, "sciq"),
    template="Q: {question}\nAnswer: {candidate}", conversion=MC_RULE)


# --- BoolQ ----------------------------------------------------------------------------------------------
def _convert_boolq(rows: list[Row]) -> list[Item]:
    """Question first, so truncation to the model's length cuts the passage, never the question."""
    items = []
    for row in rows:
        require_keys(row, ("question", "passage", "answer"), where=_src(row))
        if not isinstance(row["answer"], bool):
            raise DataError(f"{_src(row)}: answer {row['answer']!r} is not true/false")
        question, passage = row["question"].strip().rstrip("?"), row["passage"].strip()
        items.append(Item(f"Question: {question}?\nPassage: {passage}", int(row["answer"]),
                          f"boolq-{hashlib.sha1(passage.encode()).hexdigest()}"))
    return balance(items, seed=0)


BOOLQ = TaskSpec(
    name="boolq", description="BoolQ yes/no questions about a Wikipedia passage: is the answer yes?",
    licence="CC BY-SA 3.0", hub=("google/boolq", None, ("validation",)), local_files=("boolq/dev.jsonl",),
    read_local=lambda d: read_jsonl(d / "boolq/dev.jsonl"), convert=_convert_boolq,
    template="Question: {question}?\nPassage: {passage}",
    prompt=("{text}\nAnswer the question with yes or no.\nAnswer:", ("no", "yes")),
    conversion="answer true → 1; items grouped by passage; majority class downsampled (seed 0)")


# --- CosmosQA -------------------------------------------------------------------------------------------
COSMOS_QA = TaskSpec(
    name="cosmos_qa", description="CosmosQA commonsense reading comprehension: is the candidate answer right?",
    licence="CC BY 4.0", hub=("allenai/cosmos_qa", None, ("validation",)), local_files=("cosmos_qa/valid.csv",),
    read_local=lambda d: read_csv(d / "cosmos_qa/valid.csv", ("context", "question", "label")),
    convert=lambda rows: _mc(rows, ("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
                             lambda r: (f"Question: {r['question'].strip()}\nContext: {r['context'].strip()}",
                                        [r[f"answer{i}"] for i in range(4)], _correct_index(r, r["label"], 4)),
                             "cosmos"),
    template="Question: {question}\nContext: {context}\nAnswer: {candidate}", conversion=MC_RULE)


# --- DREAM ----------------------------------------------------------------------------------------------
def _read_dream(data_dir: Path) -> list[Row]:
    rows = []
    for split in ("train", "dev", "test"):
        path = data_dir / f"dream/{split}.json"
        try:
            dialogues = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from None
        for i, entry in enumerate(dialogues):
            if not (isinstance(entry, list) and len(entry) == 3):
                raise DataError(f"{path}, dialogue {i}: expected [turns, questions, id]")
            turns, questions, dialogue_id = entry
            for j, q in enumerate(questions):
                rows.append({"dialogue": "\n".join(turns), "question": q.get("question"), "choice": q.get("choice"),
                             "answer": q.get("answer"), "id": f"{dialogue_id}-{j}",
                             "_src": f"{path}, dialogue {i} question {j}"})
    return rows


def _dream(row: Row):
    choices = list(row["choice"])
    if row["answer"] not in choices:
        raise DataError(f"{_src(row)}: answer {row['answer']!r} is not among the choices (no correct candidate)")
    return f"Question: {row['question']}\nDialogue: {row['dialogue']}", choices, choices.index(row["answer"])


DREAM = TaskSpec(
    name="dream", description="DREAM dialogue comprehension: is the candidate answer right?",
    licence="non-commercial research only", hub=("dataset-org/dream", None, ("train", "validation", "test")),
    local_files=("dream/train.json", "dream/dev.json", "dream/test.json"), read_local=_read_dream,
    convert=lambda rows: _mc(rows, ("dialogue", "question", "choice", "answer"), _dream, "dream"),
    hub_rows=lambda rows: [{**r, "dialogue": "\n".join(r["dialogue"])} for r in rows],
    template="Question: {question}\nDialogue: {dialogue}\nAnswer: {candidate}", conversion=MC_RULE)


# --- QuAIL ----------------------------------------------------------------------------------------------
def _read_quail(data_dir: Path) -> list[Row]:
    path = data_dir / "quail/quail_1.3_dev.xml"
    try:
        root = ET.fromstring(read_text(path))
    except ET.ParseError as err:
        raise DataError(f"{path}, line {err.position[0]}: malformed XML") from None
    rows = []
    for text in root.iter("text"):
        body = " ".join((text.findtext("text_body") or "").split())
        for q in text.iter("q"):
            answers = [" ".join((a.text or "").split()) for a in q.iter("a")]
            correct = [i for i, a in enumerate(q.iter("a")) if a.get("correct") == "True"]
            rows.append({"context": body, "question": " ".join((q.text or "").split()), "answers": answers,
                         "correct_answer_id": correct[0] if correct else -1,
                         "_src": f"{path}, text {text.get('id')} question {q.get('id')}"})
    return rows + read_jsonl(data_dir / "quail/challenge.jsonl")


QUAIL = TaskSpec(
    name="quail", description="QuAIL reading comprehension (dev + challenge): is the candidate answer right?",
    licence="CC BY-NC-SA 4.0 (non-commercial)", hub=("textmachinelab/quail", None, ("validation", "challenge")),
    local_files=("quail/quail_1.3_dev.xml", "quail/challenge.jsonl"), read_local=_read_quail,
    convert=lambda rows: _mc(rows, ("context", "question", "answers", "correct_answer_id"),
                             lambda r: (f"Question: {r['question']}\nContext: {r['context']}", r["answers"],
                                        _correct_index(r, r["correct_answer_id"], len(r["answers"]))), "quail"),
    template="Question: {question}\nContext: {context}\nAnswer: {candidate}",
    conversion=MC_RULE)


# --- OpenBookQA -----------------------------------------------------------------------------------------
def _obqa(row: Row):
    stem, choices = row["question"]["stem"], row["question"]["choices"]
    labels = [c["label"] for c in choices]
    if row["answerKey"] not in labels:
        raise DataError(f"{_src(row)}: answerKey {row['answerKey']!r} is not a choice label (no correct candidate)")
    return f"Q: {stem.strip()}", [c["text"] for c in choices], labels.index(row["answerKey"])


OPENBOOKQA = TaskSpec(
    name="openbookqa", description="OpenBookQA elementary science (test split): is the candidate answer right?",
    licence="Apache-2.0", hub=("allenai/openbookqa", "main", ("test",)), local_files=("openbookqa/openbookqa_test.jsonl",),
    read_local=lambda d: read_jsonl(d / "openbookqa/openbookqa_test.jsonl"),
    convert=lambda rows: _mc(rows, ("question", "answerKey"), _obqa, "obqa"),
    hub_rows=lambda rows: [{"question": {"stem": r["question_stem"], "choices": [
        {"text": t, "label": lab} for t, lab in zip(r["choices"]["text"], r["choices"]["label"])]},
        "answerKey": r["answerKey"], "_src": r["_src"]} for r in rows],
    template="Q: {question}\nAnswer: {candidate}", conversion=MC_RULE)


# --- PIQA -----------------------------------------------------------------------------------------------
def _read_piqa(data_dir: Path) -> list[Row]:
    rows = read_jsonl(data_dir / "piqa/valid.jsonl")
    labels_path = data_dir / "piqa/valid-labels.lst"
    labels = read_text(labels_path).split()
    if len(labels) != len(rows):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(rows)} rows of valid.jsonl")
    return [{**row, "label": label} for row, label in zip(rows, labels)]


PIQA = TaskSpec(
    name="piqa", description="PIQA physical commonsense (validation): does the solution achieve the goal?",
    licence="AFL-3.0", hub=("ybisk/piqa", None, ("validation",)),
    local_files=("piqa/valid.jsonl", "piqa/valid-labels.lst"), read_local=_read_piqa,
    convert=lambda rows: _mc(rows, ("goal", "sol1", "sol2", "label"),
                             lambda r: (f"Goal: {r['goal'].strip()}", [r["sol1"], r["sol2"]],
                                        _correct_index(r, r["label"], 2)), "piqa"),
    template="Goal: {goal}\nAnswer: {solution}", conversion=MC_RULE)


# --- HellaSwag ------------------------------------------------------------------------------------------
HELLASWAG = TaskSpec(
    name="hellaswag", description="HellaSwag sentence completion (1,000 validation items): is the ending right?",
    licence="MIT", hub=("Rowan/hellaswag", None, ("validation",)),
    local_files=("hellaswag/hellaswag_val_subset1000.jsonl",),
    read_local=lambda d: read_jsonl(d / "hellaswag/hellaswag_val_subset1000.jsonl"),
    convert=lambda rows: _mc(rows, ("ctx", "endings", "label"),
                             lambda r: (f"{r['activity_label']}: {r['ctx'].strip()}" if r.get("activity_label")
                                        else r["ctx"].strip(), r["endings"],
                                        _correct_index(r, r["label"], len(r["endings"]))), "hellaswag"),
    template="{activity}: {context}\nAnswer: {ending}", conversion=MC_RULE)


# --- MC-TACO --------------------------------------------------------------------------------------------
def _read_mctaco(data_dir: Path) -> list[Row]:
    names = ("sentence", "question", "answer", "label", "category")
    rows = []
    for name in ("dev_3783.tsv", "test_9442.tsv"):
        path = data_dir / f"mctaco/{name}"
        for line_no, line in enumerate(read_text(path).splitlines(), start=1):
            cells = line.split("\t")
            if len(cells) != len(names):
                raise DataError(f"{path}, line {line_no}: {len(cells)} fields, expected {len(names)}")
            rows.append({**dict(zip(names, cells)), "_src": f"{path}, line {line_no}"})
    return rows


def _convert_mctaco(rows: list[Row]) -> list[Item]:
    items = []
    for row in rows:
        require_keys(row, ("sentence", "question", "answer", "label"), where=_src(row))
        if row["label"] not in ("yes", "no"):
            raise DataError(f"{_src(row)}: label {row['label']!r} is not yes/no")
        prompt = f"{row['sentence'].strip()}\nQuestion: {row['question'].strip()}"
        items.append(Item(f"{prompt}\nAnswer: {row['answer'].strip()}", int(row["label"] == "yes"),
                          f"mctaco-{hashlib.sha1(prompt.encode()).hexdigest()}"))
    return balance(items, seed=0)


MCTACO = TaskSpec(
    name="mc_taco", description="MC-TACO temporal commonsense: is the candidate answer plausible?",
    licence="unspecified (research use)", hub=("CogComp/mc_taco", None, ("validation", "test")),
    local_files=("mctaco/dev_3783.tsv", "mctaco/test_9442.tsv"), read_local=_read_mctaco, convert=_convert_mctaco,
    hub_rows=lambda rows: [{**r, "label": "yes" if r["label"] in (1, "yes") else "no"} for r in rows],
    template="{sentence}\nQuestion: {question}\nAnswer: {candidate}",
    conversion="each (sentence, question, candidate) item keeps its yes/no label; grouped by question; majority "
               "class downsampled (seed 0)")


# --- TruthfulQA -----------------------------------------------------------------------------------------
def _convert_truthfulqa(rows: list[Row]) -> list[Item]:
    """Per question, k true and k false answers (k = the smaller count), so each group is balanced."""
    items = []
    for row in rows:
        require_keys(row, ("Question", "Correct Answers", "Incorrect Answers"), where=_src(row))
        true = [a.strip() for a in row["Correct Answers"].split(";") if a.strip()]
        false = [a.strip() for a in row["Incorrect Answers"].split(";") if a.strip()]
        if not true:
            raise DataError(f"{_src(row)}: question has no correct answer")
        k = min(len(true), len(false))
        group = f"tqa-{row['Question']}"
        items += [Item(f"Q: {row['Question'].strip()}\nA: {a}", 1, group) for a in true[:k]]
        items += [Item(f"Q: {row['Question'].strip()}\nA: {a}", 0, group) for a in false[:k]]
    return items


TRUTHFULQA = TaskSpec(
    name="truthfulqa", description="TruthfulQA: is the answer to the question true?",
    licence="Apache-2.0", hub=("truthfulqa/truthful_qa", "generation", ("validation",)),
    local_files=("truthfulqa/TruthfulQA.csv",),
    read_local=lambda d: read_csv(d / "truthfulqa/TruthfulQA.csv", ("Question", "Correct Answers", "Incorrect Answers")),
    convert=_convert_truthfulqa,
    hub_rows=lambda rows: [{"Question": r["question"], "Correct Answers": ";".join(r["correct_answers"]),
                            "Incorrect Answers": ";".join(r["incorrect_answers"]), "_src": r["_src"]} for r in rows],
    template="Q: {question}\nA: {answer}",
    conversion="per question, the first k true and k false answers (k = the smaller count) → balanced groups")


# --- StrategyQA (BIG-bench) -----------------------------------------------------------------------------
def read_bigbench(path: Path) -> list[Row]:
    """BIG-bench task.json → its examples as rows (``input``, ``target_scores``)."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataError(f"{path}: expected a BIG-bench task with an 'examples' list")
    return [{**ex, "_src": f"{path}, example {i}"} for i, ex in enumerate(data["examples"])]


def _convert_strategyqa(rows: list[Row]) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        require_keys(row, ("input", "target_scores"), where=_src(row))
        scores = row["target_scores"]
        if set(scores) != {"Yes", "No"}:
            raise DataError(f"{_src(row)}: target_scores {sorted(scores)} are not Yes/No")
        items.append(Item(f"Q: {row['input'].strip()}", int(scores["Yes"] == 1), f"strategyqa-{i}"))
    return balance(items, seed=0)


STRATEGYQA = TaskSpec(
    name="strategyqa", description="StrategyQA (BIG-bench): is the answer to the implicit-reasoning question yes?",
    licence="Apache-2.0 (BIG-bench)", hub=("tasksource/bigbench", "strategyqa", ("train", "validation")),
    local_files=("bigbench/strategyqa.json",), read_local=lambda d: read_bigbench(d / "bigbench/strategyqa.json"),
    convert=_convert_strategyqa, template="Q: {question}",
    conversion="target Yes → 1; majority class downsampled (seed 0)")


def _bigbench_hub_rows(rows: list[Row]) -> list[Row]:
    """tasksource/bigbench columns → BIG-bench task.json example fields."""
    return [{"input": r["inputs"], "target_scores": dict(zip(r["multiple_choice_targets"], r["multiple_choice_scores"])),
             "_src": r["_src"]} for r in rows]


STRATEGYQA = dataclasses.replace(STRATEGYQA, hub_rows=_bigbench_hub_rows)
