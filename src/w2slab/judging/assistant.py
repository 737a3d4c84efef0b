"""Live models on the judging page. Sandwiching with people (Bowman et al. 2022): a person who cannot read the story
asks an assistant model that has read it, question by question, then chooses an answer. Interactive debate with
people (Khan et al. 2024): two debaters that have read the story argue for the two answers, and the person asks them
questions between rounds, each answered by both.

``LiveAssistant`` answers with the oversight protocol's own assistant prompt (:func:`oversight.assistant_messages`)
and marks its quotes verified or not (:func:`oversight.verify_quotes`), greedily, so the same question about the same
item gets the same answer (and the generation cache serves it). The passages come from the task's local data by
the item's id (``cosmos_qa/…``): items files never hold them, and the page only ever shows the assistant's reply.
``LiveDebaters`` argue with the debate protocol's own prompt (:func:`oversight.argument_messages`, the transcript so
far ending with the person's question), greedily too; the page shows their arguments, quotes marked.
"""
from __future__ import annotations

import threading

from ..errors import ConfigError, DataError
from ..feedback import oversight as O
from ..tasks.passages import PassageQuestion, load_passage_questions


def passages_for(items: list[dict], *, data_dir=None, helper: str = "a live assistant") -> dict[str, PassageQuestion]:
    """{item_id: the item as a PassageQuestion (its own question, answers and order) with the task's passage} for
    "choice" items, the task read from the id's prefix; DataError naming an item whose passage is not found, or
    (naming ``helper``, who needs them) items of another format."""
    out, by_task = {}, {}
    for item in items:
        if item.get("format") != "choice":
            raise DataError(f"{helper} need{'s' * (not helper.endswith('s'))} 'choice' items (written by `w2slab "
                            f"oversight run`), got {item.get('format', 'code')!r} items")
        task = item["item_id"].partition("/")[0]
        if task not in by_task:
            by_task[task] = {q.qid: q.passage for q in load_passage_questions(task, data_dir=data_dir)}
        passage = by_task[task].get(item["item_id"])
        if passage is None:
            raise DataError(f"item {item['item_id']!r} is not a question of task {task!r}: no passage for the assistant")
        out[item["item_id"]] = PassageQuestion(qid=item["item_id"], passage=passage, question=item["question"],
                                               answers=tuple(item["answers"]), correct=int(item["correct"]))
    return out


_ONE_AT_A_TIME = threading.Lock()  # the page's threads share the live models (maybe one LM for both): one generation


def _person_question(question: str, helper: str) -> O.Turn:
    """A person's question (whitespace collapsed, 1–500 characters) as a judge Turn."""
    question = " ".join((question or "").split())
    if not 1 <= len(question) <= 500:
        raise ConfigError(f"a question to the {helper} must have 1 to 500 characters")
    return O.Turn("judge", None, question, question, [], 0, 0, 0)


class _LiveModel:
    """A model on the judging page: ``lm`` (with ``generate``, used greedily) over ``questions`` ({item_id:
    PassageQuestion}), ``name`` stored as the verdicts' critic, ``rounds`` questions a person may ask per item,
    replies of about ``words`` words and at most ``max_tokens`` tokens."""

    def __init__(self, lm, questions: dict[str, PassageQuestion], *, name: str, rounds: int = 2, words: int = 60,
                 max_tokens: int = 120) -> None:
        for label, value in (("rounds", rounds), ("words", words), ("max_tokens", max_tokens)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
        self.lm, self.questions, self.name = lm, questions, name
        self.rounds, self.words, self.max_tokens = rounds, words, max_tokens


class LiveAssistant(_LiveModel):
    """Sandwiching: ``lm`` answers people's questions about ``questions``, one reply per question (parameters: see
    ``_LiveModel``)."""

    def answer(self, item_id: str, question: str) -> O.Turn:
        """The assistant's reply to a person's ``question`` (1–500 characters) about item ``item_id``, quotes
        marked."""
        from ..lm import GenerationRequest

        q = self.questions[item_id]
        asked = _person_question(question, "assistant")
        request = GenerationRequest(messages=O.assistant_messages(q, [asked], words=self.words), n=1,
                                    temperature=0.0, max_tokens=self.max_tokens)
        with _ONE_AT_A_TIME:
            [[generation]] = self.lm.generate([request])
        return O.turn_from(generation, "assistant", None, q)


class LiveDebaters(_LiveModel):
    """Interactive debate: ``lm`` debates ``questions`` for a person, one debater per answer, arguing simultaneously
    (neither sees the other's argument of the same round); each of the ``rounds`` questions a person may ask is
    answered by both, one more debate round (parameters: see ``_LiveModel``)."""

    def opening(self, item_id: str) -> list[O.Turn]:
        """The first round: [the debater for answer A's argument, the debater for B's], quotes marked."""
        return self._round(self.questions[item_id], [])

    def answer(self, item_id: str, question: str, so_far: list[tuple[str, list[str]]]) -> list[O.Turn]:
        """Both debaters' replies to a person's ``question`` (1–500 characters) after the debate ``so_far``:
        [(question, [argument for A, argument for B])] per earlier round, the opening's question "" (the texts as
        the debaters wrote them; quotes are checked again here)."""
        q = self.questions[item_id]
        asked = _person_question(question, "debaters")
        return self._round(q, self.transcript(item_id, so_far) + [asked])

    def transcript(self, item_id: str, so_far: list[tuple[str, list[str]]]) -> list[O.Turn]:
        """The debate ``so_far`` (see :meth:`answer`) as turns: each round's question (if any), then A's and B's."""
        q, turns = self.questions[item_id], []
        for asked, texts in so_far:
            if asked:
                turns.append(_person_question(asked, "debaters"))
            for side, text in enumerate(texts):
                shown, quotes, unparseable = O.verify_quotes(text, q.passage)
                turns.append(O.Turn("debater", side, text.strip(), shown.strip(), quotes, unparseable, 0, 0))
        return turns

    def _round(self, q: PassageQuestion, seen: list[O.Turn]) -> list[O.Turn]:
        from ..lm import GenerationRequest

        requests = [GenerationRequest(messages=O.argument_messages(q, side, seen, role="debater", words=self.words),
                                      n=1, temperature=0.0, max_tokens=self.max_tokens) for side in (0, 1)]
        with _ONE_AT_A_TIME:
            generations = self.lm.generate(requests)
        return [O.turn_from(g, "debater", side, q) for side, [g] in enumerate(generations)]
