"""Questions about a passage, cut to two candidate answers, for oversight protocols with information asymmetry: the
experts (debaters, consultants) read the passage, the judge sees only the question and the two answers.

QuAIL, CosmosQA (the correct answer and one seeded distractor, never "not enough information") and BoolQ (Yes / No).
The correct answer's position (A or B) is drawn from a hash of (seed, question id), so it is balanced and stable.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ..errors import DataError, UnknownNameError
from ..io import stable_hash
from ..paths import data_dir as resolve_data_dir

PASSAGE_TASKS = ("quail", "cosmos_qa", "boolq")
_NO_INFO = ("not enough information", "none of the above choices .")


@dataclasses.dataclass(frozen=True)
class PassageQuestion:
    """qid: stable id; passage: what only the experts see; answers: the two candidates shown as A and B;
    correct: 0 (A) or 1 (B)."""

    qid: str
    passage: str
    question: str
    answers: tuple[str, str]
    correct: int

    @property
    def correct_answer(self) -> str:
        return self.answers[self.correct]


def load_passage_questions(task: str, *, data_dir: str | Path | None = None, limit: int | None = None,
                           seed: int = 0) -> list[PassageQuestion]:
    """The first ``limit`` questions of ``task`` (a name of :data:`PASSAGE_TASKS`) as two-answer questions; ``seed``
    picks distractors and positions. A task without a passage is refused, naming the ones that have one."""
    from .qa import BOOLQ, COSMOS_QA, _read_quail

    if task not in PASSAGE_TASKS:
        from . import TASKS

        if task in TASKS:
            raise DataError(f"task {task!r} has no context field for the experts to read "
                            f"(tasks with a passage: {', '.join(PASSAGE_TASKS)})")
        raise UnknownNameError(f"unknown task {task!r} (tasks with a passage: {', '.join(PASSAGE_TASKS)})")
    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError(f"{task} is read from the local data folder: set W2SLAB_DATA_DIR or --data-dir")
    out, seen = [], set()
    if task == "quail":
        rows = [(r["context"], r["question"], list(r["answers"]), int(r["correct_answer_id"])) for r in _read_quail(root)]
    elif task == "cosmos_qa":
        rows = [(r["context"], r["question"], [r[f"answer{i}"] for i in range(4)], int(r["label"]))
                for r in COSMOS_QA.read_local(root)]
    else:
        rows = [(r["passage"], r["question"].strip().rstrip("?") + "?", ["Yes", "No"], 0 if r["answer"] else 1)
                for r in BOOLQ.read_local(root)]
    for passage, question, answers, correct in rows:
        if not 0 <= correct < len(answers):
            continue  # no correct candidate (a few QuAIL rows): nothing to argue about
        qid = f"{task}/{stable_hash([passage[:200], question, answers[correct]], length=10)}"
        if qid in seen:
            continue  # the same question twice in the file (CosmosQA has some): judged once
        seen.add(qid)
        rng = random.Random(stable_hash([seed, qid]))
        wrong = [a for i, a in enumerate(answers) if i != correct and a.strip().lower() not in _NO_INFO]
        if not wrong or answers[correct].strip().lower() in _NO_INFO:
            continue  # the two-answer form needs a real answer and a real distractor
        pair = [answers[correct], rng.choice(wrong)]
        position = rng.randrange(2)
        if position == 1:
            pair.reverse()
        out.append(PassageQuestion(qid=qid, passage=passage.strip(), question=question.strip(),
                                   answers=(pair[0], pair[1]), correct=position))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError(f"{task}: no question with a passage and two real answers")
    return out
