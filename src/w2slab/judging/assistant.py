"""Sandwiching with people (Bowman et al. 2022): on the judging page a person who cannot read the story asks an
assistant model that has read it, question by question, then chooses an answer.

``LiveAssistant`` answers with the oversight protocol's own assistant prompt (:func:`oversight.assistant_messages`)
and marks its quotes verified or not (:func:`oversight.verify_quotes`), greedily, so the same question about the same
item gets the same answer (and the generation cache serves it). The passages come from the task's local data by
the item's id (``cosmos_qa/…``): items files never hold them, and the page only ever shows the assistant's reply.
"""
from __future__ import annotations

import threading

from ..errors import ConfigError, DataError
from ..feedback import oversight as O
from ..tasks.passages import PassageQuestion, load_passage_questions


def passages_for(items: list[dict], *, data_dir=None) -> dict[str, PassageQuestion]:
    """{item_id: the item as a PassageQuestion (its own question, answers and order) with the task's passage} for
    "choice" items, the task read from the id's prefix; DataError naming an item whose passage is not found."""
    out, by_task = {}, {}
    for item in items:
        if item.get("format") != "choice":
            raise DataError("a live assistant needs 'choice' items (written by `w2slab oversight run`), "
                            f"got {item.get('format', 'code')!r} items")
        task = item["item_id"].partition("/")[0]
        if task not in by_task:
            by_task[task] = {q.qid: q.passage for q in load_passage_questions(task, data_dir=data_dir)}
        passage = by_task[task].get(item["item_id"])
        if passage is None:
            raise DataError(f"item {item['item_id']!r} is not a question of task {task!r}: no passage for the assistant")
        out[item["item_id"]] = PassageQuestion(qid=item["item_id"], passage=passage, question=item["question"],
                                               answers=tuple(item["answers"]), correct=int(item["correct"]))
    return out


class LiveAssistant:
    """``lm`` (an LM with ``generate``, used greedily) answers people's questions about ``questions`` ({item_id:
    PassageQuestion}); ``name`` is stored as the verdicts' critic; ``rounds``: questions a person may ask per item;
    replies of about ``words`` words, at most ``max_tokens`` tokens."""

    def __init__(self, lm, questions: dict[str, PassageQuestion], *, name: str, rounds: int = 2, words: int = 60,
                 max_tokens: int = 120) -> None:
        for label, value in (("rounds", rounds), ("words", words), ("max_tokens", max_tokens)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
        self.lm, self.questions, self.name = lm, questions, name
        self.rounds, self.words, self.max_tokens = rounds, words, max_tokens
        self._lock = threading.Lock()  # one generation at a time: the page's threads share one model

    def answer(self, item_id: str, question: str) -> O.Turn:
        """The assistant's reply to a person's ``question`` (1–500 characters) about item ``item_id``, quotes
        marked."""
        from ..lm import GenerationRequest

        question = " ".join(question.split())
        if not 1 <= len(question) <= 500:
            raise ConfigError("a question to the assistant must have 1 to 500 characters")
        q = self.questions[item_id]
        asked = O.Turn("judge", None, question, question, [], 0, 0, 0)
        request = GenerationRequest(messages=O.assistant_messages(q, [asked], words=self.words), n=1,
                                    temperature=0.0, max_tokens=self.max_tokens)
        with self._lock:
            [[generation]] = self.lm.generate([request])
        return O.turn_from(generation, "assistant", None, q)
