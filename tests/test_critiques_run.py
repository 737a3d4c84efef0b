"""`run_critiques` end to end on real models: rows in the store, the items file, cache reuse, critic training."""
import json

import pytest

from w2slab.errors import ConfigError
from w2slab.feedback.critiques_run import CritiquesConfig, run_critiques
from w2slab.lm.cache import GenerationCache, cache_file
from w2slab.runner.store import ResultsStore


@pytest.fixture(scope="module")
def small_run(data_dir, cache_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    config = CritiquesConfig(experiment="crit-test", sources=("mbpp",), limit=12, n_problems=3, critics=("smollm2",),
                             judges=("smollm2",), seeds=(0, 1), max_tokens=24)
    result = run_critiques(config, results_dir=results, data_dir=data_dir, cache_dir=cache_dir)
    return config, result, results


def test_run_stores_judgements_and_gap_summaries(small_run):
    config, result, results = small_run
    store = ResultsStore(results / "results.sqlite")
    rows = store.query("judgements", experiment="crit-test")
    # 6 programs: alone once, with the critique of each of 2 seeds, and with another problem's seed-0 critique
    assert len(rows) == 6 * (1 + 2 + 1)
    assert {r["condition"] for r in rows} == {"alone", "critique", "mismatched"}
    assert all(r["judge_kind"] == "model" for r in rows)
    assert {r["seed"] for r in rows if r["condition"] == "mismatched"} == {0}
    control = result["judges"]["smollm2"]["critics"]["smollm2"]
    assert control["mismatched"]["n_seeds"] == 1 and control["content_effect"]["n_groups"] == 3
    summaries = store.query("summaries", experiment="crit-test")
    assert {s["strong"] for s in summaries} == {"tests", "smollm2-alone"}
    tests_row = next(s for s in summaries if s["strong"] == "tests")
    assert tests_row["ceiling"] == 1.0 and tests_row["result"]["protocol"] == "critiques"
    # the self-critique's "critic alone" reference is the judge alone: no gap, so undefined, never a number
    assert not next(s for s in summaries if s["strong"] == "smollm2-alone")["defined"]
    items = [json.loads(line) for line in (results / "critiques/crit-test/items.jsonl").read_text().splitlines()]
    assert len(items) == 6 and all(set(i["critiques"]) == {"smollm2"} for i in items)
    assert result["quality"]["smollm2"]["hallucinated"] is not None


def test_rerun_reads_every_critique_and_score_from_the_cache(small_run, data_dir, cache_dir):
    config, _, results = small_run
    cache = GenerationCache(cache_file(cache_dir))
    before = cache.counts()
    again = run_critiques(config, results_dir=results, data_dir=data_dir, cache_dir=cache_dir)
    assert cache.counts() == before
    assert again["judges"] == small_run[1]["judges"]
    # the cost ledger says so: nothing computed, every critique (6 programs x 2 seeds) read back
    assert all(c["computed"] == 0 for c in again["costs"].values())
    assert again["costs"]["critic:smollm2"]["read_back"] == 12 and again["costs"]["judge:smollm2"]["read_back"] > 0
    assert len(ResultsStore(results / "results.sqlite").query("judgements", experiment="crit-test")) == 24


def test_critic_training_never_sees_a_judged_problem(data_dir, cache_dir, tmp_path):
    config = CritiquesConfig(experiment="crit-train", sources=("mbpp",), limit=14, n_problems=3, critics=("smollm2",),
                             judges=("smollm2",), seeds=(0,), max_tokens=24, train_critic="smollm2",
                             train_problems=4, train_epochs=1.0, eval_problems=2)
    result = run_critiques(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    training = result["training"]
    assert training["train_problems"] == 4 and training["eval_items"] == 4
    for phase in ("before", "after"):
        assert 0 <= training[phase]["hallucinated"] <= 1 and len(training[phase]["examples"]) == 4
    assert training["metrics"]["examples_per_s"] > 0


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('experiment = "x"\ncritic = ["smollm2"]\n')
    with pytest.raises(ConfigError, match="unknown key.*critic"):
        CritiquesConfig.from_toml(path)
    with pytest.raises(ConfigError, match="seeds"):
        CritiquesConfig(seeds=())
    with pytest.raises(ConfigError, match="mismatched_seeds"):
        CritiquesConfig(seeds=(0,), mismatched_seeds=2)
    with pytest.raises(ConfigError, match="calibration"):
        CritiquesConfig(calibration="isotonic")


def test_report_shows_people_and_model_judges_side_by_side(small_run):
    from w2slab.judging import JudgingApp, read_items
    from w2slab.report import write_report
    from w2slab.report.judging import judge_table

    _, _, results = small_run
    store = ResultsStore(results / "results.sqlite")
    app = JudgingApp(read_items(results / "critiques/crit-test/items.jsonl"), store, experiment="crit-test",
                     per_session=2, seed=0)
    session = app.start_session("dana")
    for decision in ("yes", "no"):
        assignment, _ = app.next_item(session)
        assert app.record(assignment["token"], decision)[0] == 303
    table = judge_table(store.query("judgements", experiment="crit-test"))
    assert {r["judge_kind"] for r in table} == {"model", "human"}
    human = next(r for r in table if r["judge_kind"] == "human")
    assert human["judge"] == "human:dana" and human["items"] >= 1
    page = write_report(results_dir=results, out=results / "report", experiment="crit-test")
    text = page.read_text()
    assert 'id="table-critique_gaps"' in text and 'id="table-judges"' in text and "human:dana" in text
    assert (results / "report/judges.csv").read_text().count("\n") == len(table) + 1


def test_results_command_lists_and_exports_judgements(small_run, capsys, tmp_path):
    from w2slab.cli import main

    _, _, results = small_run
    assert main(["results", "--results-dir", str(results), "--table", "judgements", "--experiment", "crit-test",
                 "--where", "condition=alone"]) == 0
    out = capsys.readouterr().out
    assert "smollm2" in out and out.count("alone") >= 6
    target = tmp_path / "judgements.csv"
    assert main(["results", "--results-dir", str(results), "--table", "judgements", "--experiment", "crit-test",
                 "--export", str(target)]) == 0
    assert target.read_text().count("\n") >= 25  # header + at least the 24 model rows
