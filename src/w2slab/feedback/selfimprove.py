"""Self-improvement on a model's own majority votes (LMSI, Huang et al. 2022), and how much of what it learns is
its own error.

Round r: the round-r model writes k chain-of-thought samples per *training* question; final answers are
extracted (:func:`w2slab.tasks.reasoning.extract_answer`) and voted; questions whose majority holds at least a
share tau of the k samples are kept, and the samples reaching the majority become a LoRA SFT set; the trained
adapter (run on llama.cpp through a LoRA GGUF) is round r+1's model. Each round trains a fresh adapter on the base
model from the current round's outputs. Test questions are never trained on.

Filters (``filter``): 'majority' (LMSI), and controls marked as such — 'oracle' (keep only majorities that are
correct: uses gold labels, an upper bound), 'none' (every sample, no vote), 'gold' (SFT on the dataset's gold
rationales, GSM8K). Only 'oracle' and 'gold' ever see a gold label: the others get questions with the answer
blanked (:func:`blind`), which a leak test checks.
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from ..checks import check_int_at_least, check_safe_name, freeze_lists
from ..errors import ConfigError, DataError
from ..evaluation.metrics import expected_calibration_error
from ..tasks.reasoning import ReasoningQuestion, extract_answer, question_messages

FILTERS = ("majority", "oracle", "none", "gold")


def blind(question: ReasoningQuestion) -> ReasoningQuestion:
    """The question without its gold answer and rationale: what a label-free filter may see."""
    return dataclasses.replace(question, answer="", rationale=None)


def vote(answers: list[str | None]) -> dict:
    """Majority vote over k extracted answers (None = unextractable, counted, never a vote).

    majority: the most frequent answer (ties: the one reached first), None if no answer was extractable;
    share: its votes / k (all samples, so unextractable ones lower it); distinct: distinct answers;
    entropy: of the answer distribution (nats, unextractable as its own outcome)."""
    k = len(answers)
    if k == 0:
        raise ConfigError("vote needs at least one answer")
    counts = collections.Counter(a for a in answers if a is not None)
    unextractable = sum(a is None for a in answers)
    majority = None
    if counts:
        first = {a: i for i, a in reversed(list(enumerate(answers))) if a is not None}
        majority = min(counts, key=lambda a: (-counts[a], first[a]))
    outcomes = list(counts.values()) + ([unextractable] if unextractable else [])
    probs = np.array(outcomes, dtype=float) / k
    return {"majority": majority, "share": counts[majority] / k if majority is not None else 0.0,
            "distinct": len(counts), "unextractable": unextractable,
            "entropy": float(-(probs * np.log(probs)).sum())}


def select_training(questions: list[ReasoningQuestion], samples: list[list[str]], task: str, *, filter: str,
                    tau: float) -> tuple[list[dict], dict]:
    """SFT rows ({"prompt": [user], "completion": [assistant]}: TRL puts the loss on the answer only, as LMSI
    trains) from one round's samples, and what was kept.

    questions: the training questions (blinded for 'majority' and 'none'); samples[i]: the k texts for
    question i. Returns (rows, info): info has kept_qids, the majority per kept question and counts."""
    if filter not in FILTERS:
        raise ConfigError(f"filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    if not 0 < tau <= 1:
        raise ConfigError(f"tau must be in (0, 1], got {tau!r}")
    rows, kept, majorities, unextractable = [], [], {}, 0
    for question, texts in zip(questions, samples):
        prompt = list(question_messages(task, question))
        if filter == "gold":
            if not question.rationale:
                raise DataError(f"{task} has no gold rationales: the 'gold' control needs them (GSM8K has)")
            rows.append(_sft_row(prompt, question.rationale))
            kept.append(question.qid)
            continue
        answers = [extract_answer(task, t) for t in texts]
        unextractable += sum(a is None for a in answers)
        if filter == "none":
            rows += [_sft_row(prompt, t) for t in texts]
            kept.append(question.qid)
            continue
        tally = vote(answers)
        if tally["majority"] is None or tally["share"] < tau:
            continue
        if filter == "oracle" and tally["majority"] != question.answer:
            continue
        majorities[question.qid] = tally["majority"]
        kept.append(question.qid)
        rows += [_sft_row(prompt, t)
                 for t, a in zip(texts, answers) if a == tally["majority"]]
    return rows, {"kept_qids": kept, "majorities": majorities, "kept": len(kept), "examples": len(rows),
                  "unextractable": unextractable}


def _sft_row(prompt: list[dict], answer: str) -> dict:
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def round_metrics(questions: list[ReasoningQuestion], greedy: list[str], samples: list[list[str]], task: str, *,
                 previous: dict | None = None, round0: dict | None = None, high_agreement: float = 0.6) -> dict:
    """One round's measurements on the held-out test questions (gold used for scoring only).

    greedy[i]: the greedy answer text; samples[i]: k sampled texts. previous / round0: earlier rounds' outputs of
    this function, for error reinforcement and agreement. Returns accuracies, unextractable counts, vote
    share/entropy/distinct means, ECE of vote share as confidence, the share of the most common greedy answer
    (collapse) beside the best constant answer's accuracy, and per question: majorities, shares and whether the
    greedy answer and the majority are correct."""
    greedy_answers = [extract_answer(task, t) for t in greedy]
    tallies = [vote([extract_answer(task, t) for t in texts]) for texts in samples]
    gold = [q.answer for q in questions]
    correct_majority = np.array([t["majority"] == g for t, g in zip(tallies, gold)], dtype=float)
    shares = np.array([t["share"] for t in tallies])
    out = {"n": len(questions), "greedy_acc": float(np.mean([a == g for a, g in zip(greedy_answers, gold)])),
           "maj_acc": float(correct_majority.mean()),
           "greedy_unextractable": int(sum(a is None for a in greedy_answers)),
           "sample_unextractable": int(sum(t["unextractable"] for t in tallies)),
           "mean_share": float(shares.mean()), "mean_entropy": float(np.mean([t["entropy"] for t in tallies])),
           "mean_distinct": float(np.mean([t["distinct"] for t in tallies])),
           "ece": expected_calibration_error(shares, correct_majority),
           "majorities": [t["majority"] for t in tallies], "shares": shares.tolist(),
           "greedy_correct": [int(a == g) for a, g in zip(greedy_answers, gold)],
           # collapse: the share of questions given the most common greedy answer, next to the best accuracy
           # any constant answer reaches on these questions (gold read for reporting only)
           "top_answer_share": max(collections.Counter(greedy_answers).values()) / len(questions),
           "constant_baseline": max(collections.Counter(gold).values()) / len(questions),
           "majority_correct": correct_majority.astype(int).tolist()}
    if previous is not None:
        was_wrong_sure = [i for i, (m, s) in enumerate(zip(previous["majorities"], previous["shares"]))
                          if m != gold[i] and s >= high_agreement]
        out["reinforcement"] = {
            "wrong_confident_before": len(was_wrong_sure),
            "wrong_more_confident_after": sum(1 for i in was_wrong_sure
                                              if tallies[i]["majority"] != gold[i] and shares[i] > previous["shares"][i]),
            "fixed_after": sum(1 for i in was_wrong_sure if tallies[i]["majority"] == gold[i])}
    if round0 is not None:
        out["agreement_with_round0"] = float(np.mean([t["majority"] == m for t, m in zip(tallies, round0["majorities"])]))
    return out


def sample_requests(task: str, questions: list[ReasoningQuestion], *, k: int, temperature: float, max_tokens: int,
                    seed: int) -> list:
    """One request per question for k samples (sample i seeded from (seed, i) by the LM layer)."""
    from ..lm import GenerationRequest

    check_int_at_least(k, "k (samples per question)", 1)
    return [GenerationRequest(messages=question_messages(task, q), n=k, temperature=temperature,
                              max_tokens=max_tokens, seed=seed) for q in questions]


def generate_in_chunks(lm, requests: list, *, chunk: int = 8) -> list[list[str]]:
    """Texts of every request, ``chunk`` requests per call: with a cached LM each finished chunk is stored at once,
    so a run killed mid-round recomputes at most one chunk."""
    from ..lm import in_chunks

    return [[g.text for g in samples] for samples in in_chunks(lm.generate, requests, chunk=chunk)]


def seed_for(seed: int, round_index: int) -> int:
    """Sampling seed of (experiment seed, round): rounds never reuse each other's samples."""
    return seed * 1000 + round_index


@dataclasses.dataclass(frozen=True)
class SelfImproveConfig:
    """One self-improvement study cell: ``model`` on ``task``, ``rounds`` rounds of k samples at ``temperature``
    (at most ``max_tokens`` each), vote threshold ``tau``, each ``filter`` and each ``seed`` (sampling and
    training); n_train / n_test questions (the first of each split); LoRA SFT for ``train_epochs`` at ``lr``.
    ``parallel``: llama.cpp slots. 4 decodes faster on 2 cores; 1 makes greedy text bit-identical between fresh
    runs (llama.cpp is not batch-invariant, docs/lm.md). It is not part of a cell's identity: cached generations
    are reused whatever it is."""

    experiment: str = "selfimprove"
    task: str = "gsm8k"
    model: str = "qwen-coder-0.5b"
    n_train: int = 100
    n_test: int = 60
    k: int = 5
    temperature: float = 0.7
    max_tokens: int = 256
    tau: float = 0.6
    rounds: int = 2
    filters: tuple[str, ...] = ("majority", "oracle", "none", "gold")
    seeds: tuple[int, ...] = (0,)
    train_epochs: float = 1.0
    lr: float = 2e-4
    high_agreement: float = 0.6
    parallel: int = 4

    def __post_init__(self) -> None:
        check_safe_name(self.experiment, "experiment")
        unknown = set(self.filters) - set(FILTERS)
        if unknown or not self.filters or isinstance(self.filters, str):
            raise ConfigError(f"filters must be some of {', '.join(FILTERS)}, got {list(self.filters)}")
        for name in ("n_train", "n_test", "k", "max_tokens", "rounds", "parallel"):
            check_int_at_least(getattr(self, name), name, 1)
        if not 0 < self.tau <= 1:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau!r}")
        freeze_lists(self, ("filters", "seeds"))


def run_self_improvement(config: SelfImproveConfig, *, data_dir=None, cache_dir=None, progress: bool = False) -> dict:
    """Every (filter, seed) of ``config``: round-by-round test metrics and what each round kept. The 'gold'
    control trains once (one round). A round whose kept set is empty stops that chain, saying which and why.
    Returns {"config", "chains": [{filter, seed, rounds: [...], stopped}], "base": round-0 metrics per seed}."""
    from ..lm import load_lm
    from ..tasks.reasoning import load_reasoning
    from ..training.policy import PolicyTraining, train_sft

    train = load_reasoning(config.task, split="train", data_dir=data_dir, limit=config.n_train)
    test = load_reasoning(config.task, split="test", data_dir=data_dir, limit=config.n_test)
    if not train or not test:
        raise DataError(f"{config.task}: no questions in a split (train {len(train)}, test {len(test)})")
    if {q.qid for q in train} & {q.qid for q in test}:
        raise DataError(f"{config.task}: a question is in both splits")

    def evaluate(lm, seed, round_index, previous, round0):
        greedy = generate_in_chunks(lm, sample_requests(config.task, test, k=1, temperature=0.0,
                                                        max_tokens=config.max_tokens, seed=0))
        sampled = generate_in_chunks(lm, sample_requests(config.task, test, k=config.k, temperature=config.temperature,
                                                         max_tokens=config.max_tokens, seed=seed_for(seed, round_index)))
        return round_metrics(test, [g[0] for g in greedy], sampled, config.task, previous=previous, round0=round0,
                             high_agreement=config.high_agreement)

    base = load_lm(config.model, progress=progress, cache=cache_dir, parallel=config.parallel)
    chains, base_metrics = [], {}
    try:
        for seed in config.seeds:
            base_metrics[seed] = evaluate(base, seed, 0, None, None)
            for filter_name in config.filters:
                rounds = [{"round": 0, "test": base_metrics[seed]}]
                lm, stopped = base, None
                n_rounds = 1 if filter_name == "gold" else config.rounds
                for r in range(n_rounds):
                    seen = train if filter_name in ("oracle", "gold") else [blind(q) for q in train]
                    samples = [] if filter_name == "gold" else generate_in_chunks(lm, sample_requests(
                        config.task, seen, k=config.k, temperature=config.temperature, max_tokens=config.max_tokens,
                        seed=seed_for(seed, r)))
                    rows, info = select_training(seen, samples or [[]] * len(seen), config.task,
                                                 filter=filter_name, tau=config.tau)
                    info.update(_pseudo_label_quality(train, info))
                    if not rows:
                        stopped = (f"round {r + 1}: no training question reached a vote share >= {config.tau} "
                                   f"({info['unextractable']} unextractable answers)")
                        rounds[-1]["kept"] = info
                        break
                    trained = train_sft(config.model, rows, cache=cache_dir, config=PolicyTraining(
                        epochs=config.train_epochs, lr=config.lr, max_length=config.max_tokens + 192, seed=seed))
                    if lm is not base:
                        lm.close()
                    lm = load_lm(config.model, adapter=str(trained.adapter), progress=progress, cache=cache_dir,
                                 parallel=config.parallel)
                    rounds[-1]["kept"] = info
                    rounds.append({"round": r + 1, "train_metrics": trained.metrics,
                                   "test": evaluate(lm, seed, r + 1, rounds[-1]["test"], base_metrics[seed])})
                if lm is not base:
                    lm.close()
                chains.append({"filter": filter_name, "seed": seed, "rounds": rounds, "stopped": stopped})
    finally:
        base.close()
    return {"config": dataclasses.asdict(config), "chains": chains,
            "base": {str(s): {k: v for k, v in m.items() if k not in ("majorities", "shares")}
                     for s, m in base_metrics.items()}}


def _pseudo_label_quality(train: list[ReasoningQuestion], info: dict) -> dict:
    """Accuracy of the kept majorities against gold — computed after selection, for reporting only."""
    gold = {q.qid: q.answer for q in train}
    majorities = info.get("majorities", {})
    if not majorities:
        return {"pseudo_label_acc": None, "kept_wrong_share": None}
    right = [gold[qid] == answer for qid, answer in majorities.items()]
    return {"pseudo_label_acc": float(np.mean(right)), "kept_wrong_share": float(1 - np.mean(right))}
