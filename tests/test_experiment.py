"""The protocol end to end on real data and a real model; caching, determinism and the leak test."""
import dataclasses
import sqlite3

import numpy as np
import pytest

from w2slab.runner import ExperimentConfig, ResultsStore, run_experiment
from w2slab.runner.protocol import group_split
from w2slab.tasks import TaskData, load_task

SMALL = dict(task="sst2", weak=("tfidf",), strong=("minilm",), losses=("xent", "logconf"), seeds=2, n_examples=500)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache_dir, data_dir):
    results = tmp_path_factory.mktemp("results")
    return run_experiment(ExperimentConfig(**SMALL), cache_dir=cache_dir, results_dir=results, progress=False), results


def test_runs_and_stores_everything(first_run):
    result, results = first_run
    assert len(result.summaries) == 2
    assert len(result.runs) == 2 + 2 + 4  # floors, ceilings, transfers (per seed)
    for s in result.summaries:
        assert 0.5 < s["ceiling"] <= 1 and 0.4 < s["floor"] <= 1
        assert s["defined"] in (0, 1)
    with sqlite3.connect(results / "results.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 8
    rows = ResultsStore(results / "results.sqlite").query("runs", role="transfer")
    assert {r["loss"] for r in rows} == {"xent", "logconf"}
    assert rows[0]["provenance"]["torch"] and rows[0]["config"]["task"] == "sst2"
    path, _, array = rows[0]["predictions"].partition("#")
    with np.load(path) as preds:
        assert preds[array].shape == (result.split_sizes["test"],)
    text = result.table()
    assert "tfidf → minilm" in text and "PGR" in text


def test_rerun_is_cached_and_identical(first_run, cache_dir):
    result, results = first_run
    again = run_experiment(ExperimentConfig(**SMALL), cache_dir=cache_dir, results_dir=results, progress=False)
    assert again.cache_hits == 2 + 2 + 4
    assert [s["transfer"] for s in again.summaries] == [s["transfer"] for s in result.summaries]
    assert len(ResultsStore(results / "results.sqlite").query("runs")) == 8  # replaced, not duplicated


def test_same_seed_same_numbers_without_cache(first_run, cache_dir, tmp_path):
    result, _ = first_run
    fresh = run_experiment(ExperimentConfig(**SMALL), cache_dir=cache_dir, results_dir=tmp_path, reuse=False,
                           progress=False)
    assert fresh.cache_hits == 0
    assert [s["result"] for s in fresh.summaries] == [s["result"] for s in result.summaries]


def test_strong_to_strong_control_is_labelled(cache_dir, tmp_path):
    r = run_experiment(task="sst2", weak="minilm", strong="minilm", losses="xent", seeds=1, n_examples=400,
                       cache_dir=cache_dir, results_dir=tmp_path, progress=False)
    assert r.summaries[0]["strong_to_strong"] == 1
    assert "s2s control" in r.table()


def test_transfer_never_sees_ground_truth_of_b_val_or_test(cache_dir, data_dir, tmp_path):
    """Scramble the labels of every item outside weak half A: floor and transfer predictions must not move
    by a single bit (the ceiling, trained on ground truth of B, must)."""
    config = ExperimentConfig(**{**SMALL, "weak": ("minilm", "tfidf+minilm@mean"), "seeds": 1, "n_examples": None,
                                 "losses": ("xent", "xent+filter", "logconf+self2", "xent+entropy")})
    task = load_task("sst2", data_dir=data_dir, n_examples=400, seed=0)
    split = group_split(task.groups, test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                        seed=config.split_seed)
    scrambled = task.labels.copy()
    outside_a = np.concatenate([split.transfer, split.val, split.test])
    scrambled[outside_a] = np.random.default_rng(0).integers(0, 2, len(outside_a))
    runs = {}
    for name, labels in (("real", task.labels), ("scrambled", scrambled)):
        data = TaskData(task.name, task.texts, labels, task.groups)
        r = run_experiment(config, task_data=data, cache_dir=cache_dir, results_dir=tmp_path / name, reuse=False,
                           progress=False)
        runs[name] = np.load(r.predictions_path)
    for key in runs["real"].files:
        if key.startswith(("transfer__", "floor__", "weak_labels_")):
            np.testing.assert_array_equal(runs["real"][key], runs["scrambled"][key], err_msg=key)
    assert not np.array_equal(runs["real"]["ceiling__minilm__s0"], runs["scrambled"]["ceiling__minilm__s0"])


def test_config_validation_messages():
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        ExperimentConfig(seeds=0).validate()
    with pytest.raises(ValueError, match="seeds must be an integer"):
        ExperimentConfig(seeds=True).validate()
    with pytest.raises(ValueError, match="losses is empty"):
        ExperimentConfig(losses="").validate()
    with pytest.raises(KeyError, match="did you mean 'sst2'"):
        ExperimentConfig(task="sst3").validate()
    with pytest.raises(ValueError, match="supports only loss 'xent'"):
        ExperimentConfig(head="sklearn_logistic").validate()
    assert dataclasses.replace(ExperimentConfig(), weak="a,b").weak == ("a", "b")


def test_filter_and_self_training_record_what_they_did(cache_dir, tmp_path):
    r = run_experiment(task="sst2", weak="tfidf", strong="minilm", losses="xent+filter,xent+self2,xent+entropy",
                       seeds=1, n_examples=500, cache_dir=cache_dir, results_dir=tmp_path, progress=False)
    by_loss = {run["loss"]: run["metrics"] for run in r.runs if run["role"] == "transfer"}
    f = by_loss["xent+filter"]["filter"]
    assert f["removed"] > 0 and 0 <= f["removed_actually_wrong"] <= 1
    assert by_loss["xent+entropy"]["filter"]["removed_share"] == pytest.approx(0.2, abs=0.01)
    rounds = by_loss["xent+self2"]["self_training"]
    assert [x["round"] for x in rounds] == [0, 1, 2]
    assert all(0 <= x["pseudo_label_accuracy"] <= 1 and 0 <= x["share_of_1"] <= 1 for x in rounds)
    again = run_experiment(task="sst2", weak="tfidf", strong="minilm", losses="xent+self2", seeds=1, n_examples=500,
                           cache_dir=cache_dir, results_dir=tmp_path / "again", progress=False, reuse=False)
    again_rounds = [run["metrics"]["self_training"] for run in again.runs if run["role"] == "transfer"][0]
    assert again_rounds == rounds  # deterministic per seed


def test_bad_methods_and_supervisors():
    with pytest.raises(ValueError, match="unknown or repeated modifier 'selfish'"):
        ExperimentConfig(losses="xent+selfish").validate()
    with pytest.raises(ValueError, match="Dawid-Skene needs at least three supervisors"):
        ExperimentConfig(weak="tfidf+minilm@ds").validate()
    with pytest.raises(ValueError, match="unknown label model .median."):
        ExperimentConfig(weak="tfidf+minilm@median").validate()


def test_prompted_supervisor_end_to_end(cache_dir, tmp_path):
    r = run_experiment(task="sst2", weak="prompt2:smollm2", strong="minilm", losses="xent", seeds=1, n_examples=100,
                       cache_dir=cache_dir, results_dir=tmp_path, progress=False)
    assert 0 < r.summaries[0]["floor"] < 1
    preds = np.load(r.predictions_path)
    assert np.isfinite(preds["weak_labels_transfer__prompt2:smollm2__s0"]).all()
