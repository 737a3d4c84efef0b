"""Self-improvement (LMSI): answer extraction, votes, the label-free filter, one round end to end, resume."""
import dataclasses
import subprocess
import sys
import time

import numpy as np
import pytest

from w2slab.errors import ConfigError
from w2slab.evaluation.metrics import expected_calibration_error
from w2slab.feedback.selfimprove import (SelfImproveConfig, blind, generate_in_chunks,
                                         round_metrics, sample_requests, select_training, vote)
from w2slab.tasks.reasoning import TASKS, extract_answer, load_reasoning

VALID = {"gsm8k": lambda a: a.lstrip("-").replace(".", "", 1).isdigit(), "strategyqa": lambda a: a in ("yes", "no"),
         "openbookqa": lambda a: a in "ABCD", "sciq": lambda a: a in "ABCD", "piqa": lambda a: a in "AB"}


def test_extraction_reads_the_final_answer_and_never_guesses():
    assert extract_answer("gsm8k", "3 + 4 = 7 eggs. The answer is $1,234.") == "1234"
    assert extract_answer("gsm8k", "so 18 - 2 = 16. The answer is \\(\\boxed{16}\\).") == "16"
    assert extract_answer("gsm8k", "She has 9 eggs and sells 9 * 2 = 18") is None  # cut off: no final phrase
    assert extract_answer("gsm8k", "She has 9 eggs and sells 9 * 2 = 18", strict=False) == "18"
    assert extract_answer("strategyqa", "No one knows. The answer is Yes.") == "yes"
    assert extract_answer("openbookqa", "A is wrong. Therefore, the answer is C.") == "C"
    assert extract_answer("openbookqa", "The answer is that roots fall apart.") is None


@pytest.mark.parametrize("task", TASKS)
def test_extraction_on_real_model_outputs(task, data_dir, cache_dir):
    from w2slab.lm import load_lm

    questions = load_reasoning(task, split="test", data_dir=data_dir, limit=2)
    with load_lm("qwen-coder-0.5b", cache=cache_dir) as lm:
        texts = generate_in_chunks(lm, sample_requests(task, questions, k=1, temperature=0.0,
                                                      max_tokens=256, seed=0))
    answers = [extract_answer(task, t[0]) for t in texts]
    assert all(a is None or VALID[task](a) for a in answers), answers
    assert any(a is not None for a in answers), [t[0][-200:] for t in texts]
    assert all(VALID[task](q.answer) for q in questions)


def test_splits_are_disjoint_and_stable(data_dir):
    for task in TASKS:
        train = {q.qid for q in load_reasoning(task, split="train", data_dir=data_dir)}
        test = load_reasoning(task, split="test", data_dir=data_dir)
        assert train and test and not train & {q.qid for q in test}
        assert [q.qid for q in load_reasoning(task, split="test", data_dir=data_dir, limit=5)] == [q.qid for q in test[:5]]


def test_vote_counts_unextractable_answers_and_breaks_ties_by_order():
    tally = vote(["7", None, "8", "7", "8"])
    assert tally["majority"] == "7" and tally["share"] == 0.4 and tally["unextractable"] == 1 and tally["distinct"] == 2
    assert vote([None, None])["majority"] is None
    with pytest.raises(ConfigError):
        vote([])


def test_the_label_free_filter_never_reads_gold(data_dir):
    """Scrambling the gold answers changes nothing the majority filter keeps; the oracle control does change."""
    questions = load_reasoning("gsm8k", split="train", data_dir=data_dir, limit=4)
    samples = [[f"Work. The answer is {q.answer}."] * 2 + ["The answer is 1."] for q in questions]
    scrambled = [dataclasses.replace(q, answer="999999") for q in questions]
    for filter_name in ("majority", "none"):
        kept_real = select_training([blind(q) for q in questions], samples, "gsm8k", filter=filter_name, tau=0.6)
        kept_scrambled = select_training([blind(q) for q in scrambled], samples, "gsm8k", filter=filter_name, tau=0.6)
        assert kept_real == kept_scrambled
        # and the filter itself is blind: given the gold it keeps the same thing
        assert select_training(questions, samples, "gsm8k", filter=filter_name, tau=0.6)[0] == kept_real[0]
    oracle_real = select_training(questions, samples, "gsm8k", filter="oracle", tau=0.6)[1]["kept"]
    oracle_scrambled = select_training(scrambled, samples, "gsm8k", filter="oracle", tau=0.6)[1]["kept"]
    assert oracle_real == 4 and oracle_scrambled == 0  # the leak test can fail: gold does change the oracle
    with pytest.raises(ConfigError, match="tau"):
        select_training(questions, samples, "gsm8k", filter="majority", tau=1.5)


def test_round_metrics_reinforcement_and_calibration(data_dir):
    questions = load_reasoning("strategyqa", split="test", data_dir=data_dir, limit=3)
    wrong = {"yes": "no", "no": "yes"}
    before = round_metrics(questions, [f"The answer is {q.answer}." for q in questions],
                           [[f"The answer is {wrong[q.answer]}."] * 2 + [f"The answer is {q.answer}."] for q in questions],
                           "strategyqa")
    after = round_metrics(questions, ["no idea"] * 3, [[f"The answer is {wrong[q.answer]}."] * 3 for q in questions],
                          "strategyqa", previous=before, round0=before)
    assert before["greedy_acc"] == 1.0 and before["maj_acc"] == 0.0 and after["greedy_unextractable"] == 3
    assert after["reinforcement"] == {"wrong_confident_before": 3, "wrong_more_confident_after": 3, "fixed_after": 0}
    assert after["agreement_with_round0"] == 1.0 and after["ece"] == pytest.approx(1.0)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0


def test_study_end_to_end_stores_rounds_and_gaps_and_keeps_test_questions_out(data_dir, cache_dir, tmp_path):
    from w2slab.feedback.selfimprove_run import SelfImproveStudy, run_selfimprove_study
    from w2slab.lm.cache import GenerationCache, cache_file
    from w2slab.report import write_report
    from w2slab.runner.store import ResultsStore

    study = SelfImproveStudy(experiment="si-test", models=("smollm2",), tasks=("strategyqa",), n_train=6, n_test=3,
                             k=2, max_tokens=48, rounds=1, filters=("majority", "oracle", "none", "gold"), tau=0.5,
                             seeds=(0,))
    assert study.cells()[0].filters == ("majority", "oracle", "none")  # no gold rationales in StrategyQA
    [cell] = run_selfimprove_study(study, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    test_ids = {q.qid for q in load_reasoning("strategyqa", split="test", data_dir=data_dir, limit=3)}
    for chain in cell["chains"]:
        assert chain["rounds"][0]["test"]["n"] == 3
        assert not set(chain["rounds"][0].get("kept", {}).get("kept_qids", [])) & test_ids
        if chain["stopped"] is None:
            assert len(chain["rounds"]) == 2 and chain["rounds"][1]["train_metrics"]["examples"] >= 1
        else:
            assert chain["stopped"].startswith("round 1:")
    assert all(c["stopped"] is None for c in cell["chains"] if c["filter"] == "none")  # keeps every sample

    store = ResultsStore(tmp_path / "results.sqlite")
    rounds = store.query("rounds", experiment="si-test")
    assert len(rounds) == sum(len(c["rounds"]) for c in cell["chains"])
    base = [r for r in rounds if r["round"] == 0]
    assert len({r["greedy_acc"] for r in base}) == 1  # one base model, greedy: the same round 0 everywhere
    summaries = store.query("summaries", experiment="si-test")
    finished = {c["filter"] for c in cell["chains"] if c["stopped"] is None}
    expected = {"majority", "none"} & finished if "oracle" in finished else set()
    assert {s["result"]["filter"] for s in summaries} == expected
    for s in summaries:
        assert s["strong"] == "oracle-trained" and s["floor"] == base[0]["greedy_acc"]
        assert s["defined"] == (s["pgr"] is not None)
    assert (tmp_path / "selfimprove" / "si-test" / "smollm2__strategyqa.json").is_file()

    generations = GenerationCache(cache_file(cache_dir)).counts()["generations"]
    again = run_selfimprove_study(study, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)[0]
    assert GenerationCache(cache_file(cache_dir)).counts()["generations"] == generations  # nothing regenerated
    assert [c["rounds"][-1]["test"] for c in again["chains"]] == [c["rounds"][-1]["test"] for c in cell["chains"]]
    assert len(store.query("rounds", experiment="si-test")) == len(rounds)  # replaced, not duplicated

    page = write_report(results_dir=tmp_path, experiment="si-test").read_text()
    assert "Self-improvement: rounds" in page and "smollm2 on strategyqa, error reinforcement" in page


def test_resume_after_a_kill_recomputes_no_finished_generation(data_dir, tmp_path):
    from w2slab.lm import load_lm
    from w2slab.lm.cache import GenerationCache, cache_file

    script = (
        "import sys\nfrom w2slab.lm import load_lm\nfrom w2slab.feedback.selfimprove import generate_in_chunks, "
        "sample_requests\nfrom w2slab.tasks.reasoning import load_reasoning\n"
        f"qs = load_reasoning('strategyqa', split='train', data_dir={str(data_dir)!r}, limit=6)\n"
        f"lm = load_lm('smollm2', cache={str(tmp_path)!r})\n"
        "generate_in_chunks(lm, sample_requests('strategyqa', qs, k=2, temperature=0.7, max_tokens=64, seed=1), chunk=1)\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    cache = GenerationCache(cache_file(tmp_path))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and cache.counts().get("generations", 0) < 4 and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done = cache.counts()["generations"]
    assert 2 <= done < 12, done  # killed mid-round: some chunks finished, not all
    questions = load_reasoning("strategyqa", split="train", data_dir=data_dir, limit=6)
    with load_lm("smollm2", cache=tmp_path) as lm:
        generate_in_chunks(lm, sample_requests("strategyqa", questions, k=2, temperature=0.7, max_tokens=64, seed=1),
                           chunk=1)
        assert lm.hits == done and lm.backend_calls == 12 - done


def test_config_is_checked():
    with pytest.raises(ConfigError, match="filters"):
        SelfImproveConfig(filters=("majority", "vibes"))
    with pytest.raises(ConfigError, match="k "):
        sample_requests("gsm8k", [], k=0, temperature=0.7, max_tokens=8, seed=0)
    with pytest.raises(ConfigError, match="tau"):
        SelfImproveConfig(tau=0)
    with pytest.raises(ConfigError, match="parallel"):
        SelfImproveConfig(parallel=0)
    from w2slab.feedback.selfimprove_run import SelfImproveStudy

    assert {cell.parallel for cell in SelfImproveStudy(parallel=1).cells()} == {1}


def _cell_result(seeds, rng_seed=0, n_test=8):
    """A cell's result in run_self_improvement's shape: greedy correctness per (filter, seed, round)."""
    config = {"experiment": "x", "task": "strategyqa", "model": "smollm2", "n_train": 6, "n_test": n_test, "k": 2,
              "filters": ["majority", "oracle", "none"], "seeds": list(seeds), "rounds": 1}
    rng = np.random.default_rng(rng_seed)
    base = rng.integers(0, 2, n_test).tolist()
    chains = [{"filter": f, "seed": s, "stopped": None,
               "rounds": [{"round": 0, "test": {"greedy_correct": base}},
                          {"round": 1, "test": {"greedy_correct": np.random.default_rng([s, i]).integers(
                              0, 2, n_test).tolist()}}]}
              for s in seeds for i, f in enumerate(config["filters"])]
    return {"config": config, "chains": chains, "base": {str(s): {"greedy_acc": 0.5} for s in seeds}}


def test_a_study_run_one_seed_at_a_time_adds_up_to_the_study_run_at_once():
    from w2slab.feedback.selfimprove_run import gap_summaries, merge_earlier_seeds

    at_once = _cell_result((0, 1, 2))
    stored = None
    for seed in (0, 1, 2):  # three runs of --seeds N into the same results folder
        stored = merge_earlier_seeds(_cell_result((seed,)), stored)
    assert stored["chains"] == at_once["chains"] and stored["config"]["seeds"] == [0, 1, 2]
    assert stored["base"] == at_once["base"]

    def numbers(result):
        return [(s["loss"], s["transfer"], s["pgr"], s["result"]["n_seeds"]) for s in gap_summaries(result, "now")]

    assert numbers(stored) == numbers(at_once) and {n[-1] for n in numbers(stored)} == {3}
    assert numbers(_cell_result((2,)))[0][-1] == 1  # what the gap rows held before: the last run's seed only
    other = merge_earlier_seeds(_cell_result((1,), n_test=6), _cell_result((0,)))  # other settings: not merged
    assert [c["seed"] for c in other["chains"]] == [1, 1, 1]
    one_slot = _cell_result((1,))
    one_slot["config"]["parallel"] = 1  # stored cells predate the field; the slot count is not a setting of the cell
    assert [c["seed"] for c in merge_earlier_seeds(one_slot, _cell_result((0,)))["chains"]] == [0, 0, 0, 1, 1, 1]


def test_the_floor_is_each_seeds_own_base_when_machines_disagree():
    """Seeds of a cell run in different sessions may greedy-decode the base model differently: the floor and
    the change pair each seed with its own round 0 instead of taking the first seed's for all."""
    from w2slab.feedback.selfimprove_run import gap_summaries

    result = _cell_result((0, 1))
    for chain in result["chains"]:
        if chain["seed"] == 1:  # this seed's session got every base answer right
            chain["rounds"][0]["test"]["greedy_correct"] = [1] * 8
    base = [c["rounds"][0]["test"]["greedy_correct"] for c in result["chains"] if c["filter"] == "majority"]
    for row in gap_summaries(result, "now"):
        assert row["floor"] == pytest.approx(np.mean(base))
        transfer = np.mean([c["rounds"][1]["test"]["greedy_correct"] for c in result["chains"]
                            if c["filter"] == row["result"]["filter"]])
        assert row["result"]["change"]["mean"] == pytest.approx(transfer - np.mean(base))


def test_a_gap_between_two_collapsed_models_is_flagged():
    """Qwen-Coder-0.5B on PIQA: the majority-trained model and the oracle reference both answered 'B' to every
    test question, and the gap recovered read 1.00 [1.00, 1.00]. The table says both collapsed; one that has not
    is not flagged, and cells stored before the measure show a dash."""
    from w2slab.feedback.selfimprove_run import gap_summaries
    from w2slab.report.selfimprove import selfimprove_gap_table

    assert {r["one_answer"] for r in selfimprove_gap_table(gap_summaries(_cell_result((0,)), "now"))} == {"—"}
    result = _cell_result((0, 1))
    shares = {"majority": 1.0, "oracle": 0.98, "none": 0.5}
    for chain in result["chains"]:
        chain["rounds"][1]["test"]["top_answer_share"] = shares[chain["filter"]] - 0.02 * chain["seed"]
    rows = {r["filter"]: r for r in selfimprove_gap_table(gap_summaries(result, "now"))}
    assert rows["majority"]["one_answer"] == "99% / 97% (both collapsed)"
    assert rows["none"]["one_answer"] == "49% / 97%"
