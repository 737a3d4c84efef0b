"""Oversight protocols: quote verification on real transcripts, consultancy balance, a judge that never sees the
passage, and a full two-round study end to end with the generation cache proving reuse."""
import dataclasses
import json

import pytest

from w2slab.errors import ConfigError, DataError
from w2slab.feedback import oversight as O
from w2slab.tasks.passages import load_passage_questions


class Recording:
    """A real LM that also keeps every prompt it is asked to score (to check what a judge sees)."""

    def __init__(self, lm):
        self.lm, self.prompts = lm, []

    def loglikelihood(self, requests):
        self.prompts += [m["content"] for r in requests for m in r.messages]
        return self.lm.loglikelihood(requests)


def test_passage_questions_are_two_answer_and_balanced(data_dir):
    for task in ("quail", "cosmos_qa", "boolq"):
        qs = load_passage_questions(task, data_dir=data_dir, limit=200)
        assert len(qs) == 200 and all(len(q.answers) == 2 and q.answers[0] != q.answers[1] for q in qs)
        assert 70 <= sum(q.correct for q in qs) <= 130  # the correct answer's position is spread over A and B
        assert all("not enough information" not in a.lower() for q in qs for a in q.answers)
    assert [q.qid for q in load_passage_questions("quail", data_dir=data_dir, limit=5)] == \
        [q.qid for q in load_passage_questions("quail", data_dir=data_dir, limit=200)[:5]]
    with pytest.raises(DataError, match="no context field"):
        load_passage_questions("sst2", data_dir=data_dir)


def test_quotes_on_a_real_transcript_true_verified_altered_not(data_dir, cache_dir):
    from w2slab.lm import load_lm

    [q] = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=1)
    with load_lm("smollm2", cache=cache_dir) as lm:
        [[turn]] = O.run_protocol("debate", [q], expert_lm=lm, rounds=1)[:1] and [O.run_protocol(
            "consultancy", [q], expert_lm=lm, rounds=1)[0]]
    true_quote = " ".join(q.passage.split()[2:9])
    altered = true_quote.replace(true_quote.split()[3], "zebra", 1)
    text = f"{turn.text} <quote>{true_quote}</quote> and <quote>{altered}</quote> and <quote>never closed"
    shown, quotes, unparseable = O.verify_quotes(text, q.passage)
    assert quotes[-2:] == [{"text": true_quote, "verified": True}, {"text": altered, "verified": False}]
    assert f"<v_quote>{true_quote}</v_quote>" in shown and f"<u_quote>{altered}</u_quote>" in shown
    assert unparseable == 1 and "<quote>" not in shown
    for quote in turn.quotes:  # whatever the model quoted itself is verified exactly when it is in the passage
        assert quote["verified"] == (O._normal(quote["text"]) in O._normal(q.passage))


def test_consultants_argue_for_the_correct_answer_half_of_the_time(data_dir):
    qs = load_passage_questions("boolq", data_dir=data_dir, limit=40)
    for seed in (0, 1):
        sides = O.consultant_sides(qs, seed)
        assert sum(s == q.correct for s, q in zip(sides, qs)) == 20
    assert O.consultant_sides(qs, 0) != O.consultant_sides(qs, 1)


def test_the_judge_never_sees_the_passage(data_dir, cache_dir):
    from w2slab.lm import load_lm

    qs = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=2)
    with load_lm("smollm2", cache=cache_dir) as lm:
        judge = Recording(lm)
        for scoring in O.JUDGE_SCORING:
            for protocol in ("consultancy", "debate", "sandwich"):
                transcripts = O.run_protocol(protocol, qs, expert_lm=lm, judge_lm=lm, rounds=1)
                O.p_correct(judge, qs, transcripts, scoring=scoring)
            O.p_correct(judge, qs, [None] * 2, scoring=scoring)
            leaked = [p for p in judge.prompts for q in qs if q.passage[:80] in p]
            assert judge.prompts and leaked == []
            expert = Recording(lm)
            O.p_correct(expert, qs, [None] * 2, passage=True, scoring=scoring)  # the check catches a prompt showing it
            assert all(any(q.passage[:80] in p for p in expert.prompts) for q in qs)


def test_answers_scoring_reads_each_answer_text_and_has_no_slots(data_dir, cache_dir):
    """Scoring by the answers' own text: the two continuations are the two answers, no A/B list is shown, and
    P(correct) follows from the per-token log-probs (the same scores recomputed here)."""
    import numpy as np

    from w2slab.lm import ScoreRequest, load_lm

    qs = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=3)
    with load_lm("smollm2", cache=cache_dir) as lm:
        out = O.p_correct(lm, qs, [None] * 3, scoring="answers")
        assert out["flip_rate"] is None and out["p"].shape == (3,) and np.all((out["p"] > 0) & (out["p"] < 1))
        for q, p in zip(qs, out["p"]):
            messages = O.answer_messages(q, None)
            assert "\nA: " not in messages[0]["content"] and q.question in messages[0]["content"]
            right, wrong = lm.loglikelihood([ScoreRequest(messages=messages, continuation=q.answers[i])
                                             for i in (q.correct, 1 - q.correct)])
            margin = right.logprob / right.n_tokens - wrong.logprob / wrong.n_tokens
            assert p == pytest.approx(1 / (1 + np.exp(-margin)))
    with pytest.raises(ConfigError, match="judge scoring"):
        O.p_correct(None, qs, [None] * 3, scoring="vibes")


def test_accuracy_by_overlap_splits_questions_by_which_answer_echoes_the_passage(data_dir):
    """A reader who always picks the answer sharing more words with the passage is right on every "correct_more"
    question and wrong on every "wrong_more" one; seeds average per question; both groups exist in CosmosQA."""
    import numpy as np

    from w2slab.tasks.passages import PassageQuestion

    q = PassageQuestion(qid="t", passage="The cat sat on the mat.", question="Who sat?", answers=("The cat", "A dog ran"),
                        correct=1)
    assert O.passage_overlap(q) == (1.0, 0.0)
    qs = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=200)
    echo = np.array([1.0 if o[q.correct] >= o[1 - q.correct] else 0.0 for q in qs for o in [O.passage_overlap(q)]])
    out = O.accuracy_by_overlap(qs, echo)
    assert sum(v["n"] for v in out.values()) == 200 and out["correct_more"]["n"] > 20 and out["wrong_more"]["n"] > 20
    assert out["correct_more"]["accuracy"] == 1.0 and out["wrong_more"]["accuracy"] == 0.0
    low, high = O.accuracy_by_overlap(qs, np.full(200, 0.7))["wrong_more"]["ci"]
    assert low == high == 1.0
    two_seeds = O.accuracy_by_overlap(qs, np.stack([echo, 1 - echo]))
    assert two_seeds["correct_more"]["accuracy"] == two_seeds["wrong_more"]["accuracy"] == 0.5
    with pytest.raises(ConfigError, match="200 questions"):
        O.accuracy_by_overlap(qs, np.ones(3))


def test_a_constant_preference_for_yes_or_no_is_told_apart_from_reading(data_dir):
    """On BoolQ a reader that always prefers "No" scores the share of "No" answers while knowing nothing (AUC 0.5);
    a reader with the same preference plus a little information has an AUC above 0.5, and batch calibration turns
    that information into accuracy. CosmosQA's answers vary: no single prior."""
    import numpy as np

    qs = load_passage_questions("boolq", data_dir=data_dir, limit=300)
    yes = np.array([q.correct_answer == "Yes" for q in qs])
    rng = np.random.default_rng(0)
    p_yes = np.full(300, 0.2)  # always leans "No", reads nothing
    blind = O.fixed_answer_prior(qs, np.where(yes, p_yes, 1 - p_yes))
    assert blind["answer"] == "No" and blind["base_rate"] == pytest.approx(1 - yes.mean())
    assert blind["mean_p"] == pytest.approx(0.8) and blind["auc"] == 0.5
    log_odds = np.log(0.2 / 0.8) + np.where(yes, 1.0, -1.0) + rng.normal(0, 1.0, 300)  # leans "No", reads a little
    p_read = 1 / (1 + np.exp(-log_odds))
    reader = O.fixed_answer_prior(qs, np.where(yes, p_read, 1 - p_read))
    raw = float(((p_read >= 0.5) == yes).mean())
    assert reader["auc"] > 0.75 and reader["batch_calibrated"] > raw + 0.1
    assert O.fixed_answer_prior(load_passage_questions("cosmos_qa", data_dir=data_dir, limit=20), np.ones(20)) is None
    with pytest.raises(ConfigError, match="300 questions"):
        O.fixed_answer_prior(qs, np.ones(3))


def test_best_of_n_keeps_the_argument_the_selector_finds_most_convincing(data_dir, cache_dir):
    """Best-of-N: each argument is one of N real samples, the kept one has the selector's highest P(its side) —
    recomputed here from the transcript — and sample 0 is the argument best_of = 1 writes (no new generation)."""
    from w2slab.lm import load_lm
    from w2slab.lm.cache import GenerationCache, cache_file

    qs = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=2)
    kwargs = dict(rounds=1, max_tokens=24, words=20, scoring="answers")
    with load_lm("smollm2", cache=cache_dir) as lm:
        for protocol, n in (("consultancy", 3), ("debate", 2)):
            best = O.run_protocol(protocol, qs, expert_lm=lm, best_of=n, selector_lm=lm, **kwargs)
            for q, turns in zip(qs, best):
                for turn in turns:  # one round, simultaneous: each argument was chosen with nothing before it
                    assert len(turn.selector_p) == n and turn.selector_p[turn.chosen] == max(turn.selector_p)
                    p = O.p_correct(lm, [q], [[turn]], both_orders=False, scoring="answers")["p"][0]
                    assert (p if turn.side == q.correct else 1 - p) == pytest.approx(max(turn.selector_p), abs=1e-6)
            counts = GenerationCache(cache_file(cache_dir)).counts()
            single = O.run_protocol(protocol, qs, expert_lm=lm, **kwargs)
            assert GenerationCache(cache_file(cache_dir)).counts() == counts  # sample 0 came from the cache
            assert all(t.selector_p is None and t.chosen == 0 for ts in single for t in ts)
            assert [t.text for ts, b in zip(single, best) for t, u in zip(ts, b) if u.chosen == 0] == \
                [u.text for b in best for u in b if u.chosen == 0]
        with pytest.raises(ConfigError, match="selector"):
            O.run_protocol("debate", qs, expert_lm=lm, best_of=2)
        with pytest.raises(ConfigError, match="best_of"):
            O.run_protocol("debate", qs, expert_lm=lm, best_of=0)


def test_an_interactive_judge_asks_the_debaters_between_rounds(data_dir, cache_dir):
    """Interactive debate: after round 1 the judge asks one question from a prompt without the passage, and both
    round-2 arguments were written from prompts that end with it: the same requests, rebuilt here, are all cache
    hits with the same text (a debater prompt without the question would be a new request)."""
    from w2slab.lm import GenerationRequest, generate_in_chunks, load_lm
    from w2slab.lm.cache import GenerationCache, cache_file

    qs = load_passage_questions("boolq", data_dir=data_dir, limit=2)
    kwargs = dict(rounds=2, max_tokens=24, words=20, seed=3, temperature=0.7)
    with load_lm("smollm2", cache=cache_dir) as lm:
        transcripts = O.run_protocol("debate", qs, expert_lm=lm, judge_lm=lm, interactive=True, **kwargs)
        assert [[t.speaker for t in ts] for ts in transcripts] == [["debater"] * 2 + ["judge"] + ["debater"] * 2] * 2
        asking = [O.judge_question_messages(q, ts[:2], to="debaters") for q, ts in zip(qs, transcripts)]
        arguing = [O.argument_messages(q, side, ts[:3], role="debater", words=20)
                   for q, ts in zip(qs, transcripts) for side in (0, 1)]
        assert not any(q.passage[:80] in m[0]["content"] for q, m in zip(qs, asking))
        assert all("Judge's question: " in m[0]["content"] and "Answer the judge's question first" in m[0]["content"]
                   for m in arguing)
        counts = GenerationCache(cache_file(cache_dir)).counts()
        seed = lambda who: 3 * 1000 + 1 * 10 + who  # noqa: E731  (run_protocol's seed for round 2, speaker who)
        rebuilt = [GenerationRequest(messages=m, temperature=0.7, max_tokens=24, seed=seed(2)) for m in asking]
        rebuilt += [GenerationRequest(messages=m, temperature=0.7, max_tokens=24, seed=seed(i % 2))
                    for i, m in enumerate(arguing)]
        texts = [g[0].text.strip() for g in generate_in_chunks(lm, rebuilt)]
        assert GenerationCache(cache_file(cache_dir)).counts() == counts
        assert texts == [ts[2].text for ts in transcripts] + [t.text for ts in transcripts for t in ts[3:]]
        with pytest.raises(ConfigError, match="rounds >= 2"):
            O.run_protocol("debate", qs, expert_lm=lm, judge_lm=lm, interactive=True, rounds=1)
        with pytest.raises(ConfigError, match="needs debate"):
            O.run_protocol("consultancy", qs, expert_lm=lm, judge_lm=lm, interactive=True, rounds=2)
        with pytest.raises(ConfigError, match="judge's LM"):
            O.run_protocol("debate", qs, expert_lm=lm, interactive=True, rounds=2)


def test_a_two_round_study_end_to_end_and_the_cache_proves_reuse(data_dir, cache_dir, tmp_path, capsys):
    from w2slab.cli import main
    from w2slab.feedback.oversight_run import OversightConfig, run_oversight
    from w2slab.lm.cache import GenerationCache, cache_file
    from w2slab.report import write_report
    from w2slab.report.judging import oversight_table
    from w2slab.runner.store import ResultsStore

    config = OversightConfig(experiment="ov-test", task="cosmos_qa", n_questions=3, judges=("smollm2",),
                             experts=("smollm2",), rounds=2, seeds=(0,), max_tokens=48, words=30)
    result = run_oversight(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    assert result["n"] == 3 and set(result["judges"]["smollm2"]["smollm2"]) == {"consultancy", "debate", "sandwich"}
    debate = result["quotes"]["debate:smollm2"]
    assert len(debate) == 1 and all(s["arguments"] == 3 * 2 * 2 for s in debate)  # 3 questions x 2 rounds x 2 sides
    store = ResultsStore(tmp_path / "results.sqlite")
    rows = store.query("judgements", experiment="ov-test")
    assert len(rows) == 3 * (1 + 1 + 3)  # blind, expert, 3 protocols (one seed)
    summaries = store.query("summaries", experiment="ov-test")
    assert {s["result"]["oversight_protocol"] for s in summaries} == {"consultancy", "debate", "sandwich"}
    assert all(s["floor"] == result["judges"]["smollm2"]["blind"]["accuracy"] for s in summaries)
    by_protocol = result["judges"]["smollm2"]["smollm2"]
    vs = by_protocol["debate"]["vs_consultancy"]  # debate minus consultancy, paired, for the same judge and expert
    assert vs["mean"] == pytest.approx(by_protocol["debate"]["accuracy"] - by_protocol["consultancy"]["accuracy"])
    assert vs["ci"][0] <= vs["mean"] <= vs["ci"][1] and "vs_consultancy" not in by_protocol["consultancy"]
    table = {r["protocol"]: r["debate_vs_consultancy"] for r in oversight_table(summaries)}
    assert table["debate"].startswith(f"{vs['mean']:+.3f} [") and table["consultancy"] == table["sandwich"] == ""

    cache = GenerationCache(cache_file(cache_dir)).counts()
    again = run_oversight(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    assert GenerationCache(cache_file(cache_dir)).counts() == cache  # every argument and verdict came from the cache
    assert again["judges"] == result["judges"]
    assert len(store.query("judgements", experiment="ov-test")) == len(rows)
    toml = tmp_path / "ov-test.toml"
    toml.write_text('experiment = "ov-test"\ntask = "cosmos_qa"\nn_questions = 3\njudges = ["smollm2"]\n'
                    'experts = ["smollm2"]\nrounds = 2\nseeds = [0]\nmax_tokens = 48\nwords = 30\n')
    assert main(["oversight", "run", str(toml), "--results-dir", str(tmp_path), "--data-dir", str(data_dir),
                 "--cache-dir", str(cache_dir)]) == 0  # the CLI over the same study: all from the cache
    assert GenerationCache(cache_file(cache_dir)).counts() == cache
    printed = capsys.readouterr().out
    assert "debate_vs_consultancy" in printed and table["debate"] in next(
        line for line in printed.splitlines() if " debate " in line)

    from w2slab.judging import read_items

    items = read_items(tmp_path / "oversight" / "ov-test" / "items.jsonl")  # what the human-judging page serves
    assert len(items) == 3 and set(items[0]["critiques"]) == {"consultancy:smollm2", "debate:smollm2"}
    assert not any(q.passage[:80] in json.dumps(i) for i in items for q in load_passage_questions(
        "cosmos_qa", data_dir=data_dir, limit=3))
    report = write_report(results_dir=tmp_path, experiment="ov-test")
    assert "Oversight: a judge without the passage" in report.read_text()
    assert "Debater for" in (report.parent / "transcripts.html").read_text() or \
        "debater for" in (report.parent / "transcripts.html").read_text()


def test_a_best_of_n_study_gives_each_judge_the_arguments_it_chose(data_dir, cache_dir, tmp_path):
    """With the judge as selector, consultancy transcripts are per judge, every kept turn carries its N selector
    scores, and the rows are stored under keys of their own (beside a best_of = 1 run of the same experiment)."""
    from w2slab.feedback.oversight_run import OversightConfig, run_oversight
    from w2slab.report.judging import oversight_table
    from w2slab.runner.store import ResultsStore

    config = OversightConfig(experiment="ov-best", task="boolq", n_questions=2, judges=("smollm2",),
                             experts=("smollm2",), protocols=("consultancy",), rounds=1, seeds=(0,), max_tokens=24,
                             words=20, judge_scoring="answers", best_of=2)
    result = run_oversight(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    assert set(result["quotes"]) == {"consultancy:smollm2:smollm2"}  # chosen by the judge: per judge
    lines = [json.loads(x) for x in (tmp_path / "oversight/ov-best/transcripts.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(len(t["turns"][0]["selector_p"]) == 2 for t in lines)
    run_oversight(dataclasses.replace(config, best_of=1), results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    rows = ResultsStore(tmp_path / "results.sqlite").query("judgements", experiment="ov-best")
    assert len([r for r in rows if r["condition"] == "consultancy"]) == 2 * 2  # both runs kept, none overwritten
    best = [s for s in ResultsStore(tmp_path / "results.sqlite").query("summaries", experiment="ov-best")]
    assert sorted(s["result"]["best_of"] for s in best) == [1, 2]
    assert sorted(r["protocol"] for r in oversight_table(best)) == ["consultancy", "consultancy best-of-2"]


def test_an_interactive_study_gives_each_judge_its_own_debates(data_dir, cache_dir, tmp_path):
    """interactive = true: debate transcripts are per judge (the judge asks), carry the judge's question, and their
    rows and summary are kept beside a non-interactive run of the same experiment."""
    from w2slab.feedback.oversight_run import OversightConfig, run_oversight
    from w2slab.report.judging import oversight_table
    from w2slab.runner.store import ResultsStore

    config = OversightConfig(experiment="ov-ask", task="boolq", n_questions=2, judges=("smollm2",),
                             experts=("smollm2",), protocols=("debate",), rounds=2, seeds=(0,), max_tokens=24,
                             words=20, judge_scoring="answers", interactive=True)
    result = run_oversight(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    assert set(result["quotes"]) == {"debate:smollm2:smollm2"}
    lines = [json.loads(x) for x in (tmp_path / "oversight/ov-ask/transcripts.jsonl").read_text().splitlines()]
    assert [[t["speaker"] for t in x["turns"]] for x in lines] == [["debater", "debater", "judge", "debater",
                                                                    "debater"]] * 2
    run_oversight(dataclasses.replace(config, interactive=False), results_dir=tmp_path, data_dir=data_dir,
                  cache_dir=cache_dir)
    store = ResultsStore(tmp_path / "results.sqlite")
    assert len([r for r in store.query("judgements", experiment="ov-ask") if r["condition"] == "debate"]) == 2 * 2
    summaries = store.query("summaries", experiment="ov-ask")
    assert sorted(s["result"]["interactive"] for s in summaries) == [False, True]
    assert sorted(r["protocol"] for r in oversight_table(summaries)) == ["debate", "debate interactive"]


def test_config_is_checked(data_dir):
    from w2slab.feedback.oversight_run import OversightConfig

    with pytest.raises(DataError, match="no context field"):
        OversightConfig(task="sst2")
    with pytest.raises(ConfigError, match="rounds"):
        OversightConfig(rounds=0)
    with pytest.raises(ConfigError, match="unknown protocol"):
        OversightConfig(protocols=("debate", "duel"))
    with pytest.raises(ConfigError, match="judge_scoring"):
        OversightConfig(judge_scoring="letter")
    with pytest.raises(ConfigError, match="best_of"):
        OversightConfig(best_of=0)
    with pytest.raises(ConfigError, match="interactive"):
        OversightConfig(interactive=True, rounds=1)
    with pytest.raises(ConfigError, match="interactive"):
        OversightConfig(interactive=True, protocols=("consultancy",))
    assert OversightConfig(interactive=True).per_judge("debate") and not OversightConfig().per_judge("debate")
    with pytest.raises(ConfigError, match="rounds"):
        O.run_protocol("debate", [], expert_lm=None, rounds=0)
