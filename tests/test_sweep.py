"""Sweeps: TOML parsing and its errors, planning, local and Ray executors on real models and data, resume
after kill -9, concurrent writers, failures recorded while the sweep carries on, cache ls / gc."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from w2slab.cli import main
from w2slab.errors import ConfigError, W2SError
from w2slab.runner.cache import collect_garbage
from w2slab.runner.driver import plan_sweep, run_sweep, sweep_status
from w2slab.runner.store import ResultsStore
from w2slab.runner.sweep import Sweep

SMALL = """
name = "small"
tasks = ["sst2", "amazon_polarity"]
ladder = ["tfidf", "minilm-l3", "minilm"]
methods = ["xent", "logconf"]
seeds = 2
n_examples = 300
epochs = 8
n_bootstrap = 200

[[models]]
name = "minilm-l3"
base = "minilm"
layer = 3
"""
N_RUNS = 2 * 3 * 2 * 2  # tasks × pairs (all weak < strong of 3 models) × methods × seeds
N_ROWS = N_RUNS + 2 * 2 * 2 + 2 * 2 * 2  # + floor rows (tfidf, minilm-l3) + ceiling rows (minilm-l3, minilm)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def stages_only_cache(tmp: Path, session_cache: Path) -> Path:
    """A cache sharing the session's features, models and converted tasks but with empty stage outputs."""
    tmp.mkdir(parents=True, exist_ok=True)
    for area in ("features", "models", "tasks"):
        (session_cache / area).mkdir(parents=True, exist_ok=True)
        (tmp / area).symlink_to(session_cache / area)
    return tmp


def finished_npz(folder: Path) -> list[Path]:
    """Finished stage files; a kill can leave a hidden temp file (``.name….npz``) that is not an entry."""
    return [p for p in folder.rglob("*.npz") if not p.name.startswith(".")]


def stage_files(cache: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished_npz(cache / "stages")}


# -- the file format ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\nseed = 3', "unknown key 'seed' (did you mean 'seeds'?)"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\nepochs = "ten"', "'epochs' must be an integer"),
    ('tasks = ["sst2"]\nladder = ["minilm"]', "the grid is empty"),
    ('tasks = []\nladder = ["tfidf", "minilm"]', "'tasks' is missing or empty"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "m3"]\n[[models]]\nname = "m3"\nbase = "minilm"\nlayer = 3\n'
     '[[models]]\nname = "m3"\nbase = "minilm"\nlayer = 4', "'m3' is defined twice with different settings (layer 3 vs 4)"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\nweak = ["tfidf"]', "give exactly one of"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilmm"]', "did you mean 'minilm'?"),
    ('tasks = ["sst"]\nladder = ["tfidf", "minilm"]', "did you mean 'sst2'?"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\nmethods = [{method = "logconf", aux_coef = 3}]', "aux_coef"),
    ('tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\nmethods = ["xent+sefl2"]', "unknown or repeated modifier"),
    ('tasks = ["sst2"\n', "not valid TOML"),
    ('tasks = [{ n_examples = 900 }]\nladder = ["tfidf", "minilm"]', "a table in 'tasks' needs a 'name'"),
    ('tasks = [{ name = "sst2", n_example = 900 }]\nladder = ["tfidf", "minilm"]',
     "task 'sst2': unknown key 'n_example' (did you mean 'n_examples'?)"),
    ('tasks = [{ name = "sst2", n_examples = 5 }]\nladder = ["tfidf", "minilm"]', "n_examples"),
])
def test_bad_sweep_files_fail_with_one_line(tmp_path, text, message):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(W2SError) as err:
        Sweep.from_file(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("bad.toml") or "sweep file bad.toml" in str(err.value)


def test_a_task_table_overrides_data_settings_for_that_task_only():
    plain = Sweep.from_dict({"tasks": ["sst2", "boolq"], "ladder": ["tfidf", "minilm"], "n_examples": 600})
    mixed = Sweep.from_dict({"tasks": [{"name": "sst2", "n_examples": 2000}, "boolq"], "ladder": ["tfidf", "minilm"],
                             "n_examples": 600})
    assert [t.n_examples for t in mixed.tasks] == [2000, 600]
    keys = {r.task.task: r.key for r in plain.runs()}, {r.task.task: r.key for r in mixed.runs()}
    assert keys[0]["boolq"] == keys[1]["boolq"] and keys[0]["sst2"] != keys[1]["sst2"]


def test_pair_forms_and_run_keys(tmp_path):
    ladder = Sweep.from_dict({"tasks": ["sst2"], "ladder": ["tfidf", "minilm", "mpnet"], "pairs": "adjacent"})
    assert [(w.name, s) for w, s in ladder.pairs] == [("tfidf", "minilm"), ("minilm", "mpnet")]
    every = Sweep.from_dict({"tasks": ["sst2"], "ladder": ["tfidf", "minilm", "mpnet"]})
    assert len(every.pairs) == 3
    cross = Sweep.from_dict({"tasks": ["sst2"], "weak": ["tfidf", "tfidf+minilm@mean"], "strong": ["mpnet"],
                             "seeds": [0, 5]})
    assert [w.kind for w, _ in cross.pairs] == ["model", "ensemble"] and cross.seeds == (0, 5)
    runs = every.runs()
    assert len(runs) == len({r.key for r in runs}) == 3
    # keys depend on what determines results, not on names: an alias with the same settings shares keys
    alias = Sweep.from_dict({"tasks": ["sst2"], "pairs": [["tfidf", "small"]],
                             "models": [{"name": "small", "base": "minilm"}]})
    direct = Sweep.from_dict({"tasks": ["sst2"], "pairs": [["tfidf", "minilm"]]})
    assert alias.runs()[0].key == direct.runs()[0].key
    other_layer = Sweep.from_dict({"tasks": ["sst2"], "pairs": [["tfidf", "minilm"]], "layer": 3})
    assert other_layer.runs()[0].key != direct.runs()[0].key


def test_plan_of_a_large_grid_needs_no_data_or_models(tmp_path):
    big = Sweep.from_dict({"tasks": ["sst2", "boolq", "sciq", "anli", "piqa"], "ladder": ["tfidf", "minilm", "mpnet"],
                           "methods": ["xent", "logconf", "product", "xent+filter"], "seeds": 50})
    plan = plan_sweep(big, cache_dir=tmp_path)
    assert len(plan.runs) == 5 * 3 * 4 * 50 and not plan.cached
    assert "3000 runs, 0 cached" in plan.table()


# -- real sweeps ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, cache_dir, data_dir):
    """The small sweep on the local process pool (2 workers), with fresh stage outputs (features shared)."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write(folder / "small.toml", SMALL)
    cache = stages_only_cache(folder / "cache", cache_dir)
    result = run_sweep(path, executor="local", processes=2, threads=1, cache_dir=cache, results_dir=folder / "results",
                       progress=False)
    return path, folder / "results", result, cache


def test_local_sweep_stores_every_run_and_summary(local_sweep):
    path, results, result, cache = local_sweep
    assert result.failures == [] and result.total == N_RUNS
    store = ResultsStore(results / "results.sqlite")
    runs = store.dataframe("runs", experiment="small")
    assert len(runs) == N_ROWS and runs.run_key.is_unique
    summaries = store.dataframe("summaries", experiment="small")
    assert len(summaries) == N_RUNS // 2  # one per (task, pair, method) over 2 seeds
    assert set(summaries.task) == {"sst2", "amazon_polarity"}
    # real models learn: every ceiling beats chance on 60 test items
    assert (runs[runs.role == "ceiling"].accuracy > 0.6).all()
    status = sweep_status(path, cache_dir=cache, results_dir=results)
    assert (status["done"], status["failed"], status["left"]) == (N_RUNS, 0, 0)


def test_rerun_and_extensions_compute_only_new_runs(local_sweep, tmp_path):
    path, results, _, cache = local_sweep
    again = run_sweep(path, executor="serial", cache_dir=cache, results_dir=results, progress=False)
    assert (again.computed, again.cached) == (0, N_RUNS)
    extended = write(tmp_path / "small.toml", SMALL.replace("seeds = 2", "seeds = 3")
                     .replace('methods = ["xent", "logconf"]', 'methods = ["xent", "logconf", "product"]'))
    plan = plan_sweep(extended, cache_dir=cache)
    assert len(plan.runs) == 2 * 3 * 3 * 3 and len(plan.cached) == N_RUNS
    more = run_sweep(extended, executor="serial", cache_dir=cache, results_dir=tmp_path / "results", progress=False)
    assert (more.computed, more.cached) == (2 * 3 * 3 * 3 - N_RUNS, N_RUNS)


def test_ray_sweep_matches_local_metrics(local_sweep, tmp_path, cache_dir):
    pytest.importorskip("ray")
    path, results, _, cache = local_sweep
    ray_cache = stages_only_cache(tmp_path / "cache", cache_dir)
    result = run_sweep(path, executor="ray", processes=2, cache_dir=ray_cache, results_dir=tmp_path / "results",
                       progress=False)
    assert result.failures == [] and result.computed == N_RUNS  # nothing came from the local run's stages
    local = ResultsStore(results / "results.sqlite").dataframe("runs", experiment="small").sort_values("run_key")
    ray = ResultsStore(tmp_path / "results" / "results.sqlite").dataframe("runs").sort_values("run_key")
    assert list(local.run_key) == list(ray.run_key)
    assert np.array_equal(local.accuracy.to_numpy(), ray.accuracy.to_numpy())
    assert np.array_equal(local.auc.to_numpy(), ray.auc.to_numpy())


def test_kill_minus_9_then_resume_recomputes_nothing_finished(local_sweep, tmp_path, cache_dir):
    path, reference, _, _ = local_sweep
    cache = stages_only_cache(tmp_path / "cache", cache_dir)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "w2slab.cli", "sweep", "run", str(path), "--executor", "serial",
               "--cache-dir", str(cache), "--results-dir", str(results), "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while len(finished_npz(cache / "stages" / "run")) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = stage_files(cache)
    runs_before = len(finished_npz(cache / "stages" / "run"))
    assert 4 <= runs_before < N_RUNS, "the kill must land in the middle of the sweep"

    resumed = run_sweep(path, executor="serial", cache_dir=cache, results_dir=results, progress=False)
    after = stage_files(cache)
    rewritten = [p for p, identity in finished_before.items() if after.get(p) != identity]
    assert rewritten == []  # 0 finished stages recomputed
    assert (resumed.cached, resumed.computed) == (runs_before, N_RUNS - runs_before)
    for npz in after:  # no corrupt artifact
        with np.load(npz) as data:
            assert data.files
    rows = ResultsStore(results / "results.sqlite").dataframe("runs")
    assert len(rows) == N_ROWS and rows.run_key.is_unique  # 0 lost, 0 duplicated
    expected = ResultsStore(reference / "results.sqlite").dataframe("runs", experiment="small")
    merged = rows.merge(expected, on="run_key", suffixes=("", "_ref"))
    assert len(merged) == N_ROWS and np.array_equal(merged.accuracy, merged.accuracy_ref)
    assert collect_garbage(cache, temp_grace_s=0)["files"] >= 0
    assert not list(cache.rglob(".tmp-*"))


def test_failed_run_is_recorded_and_the_sweep_continues(tmp_path, cache_dir):
    # a prompted LM cannot score a pairwise task: that supervisor fails at run time, the other pair runs
    path = write(tmp_path / "mixed.toml", 'name = "mixed"\ntasks = ["hh_rlhf_harmless"]\n'
                 'pairs = [["prompt:smollm2", "minilm"], ["tfidf", "minilm"]]\nn_examples = 200\nepochs = 3\n')
    results, cache = tmp_path / "results", stages_only_cache(tmp_path / "cache", cache_dir)
    result = run_sweep(path, executor="serial", cache_dir=cache, results_dir=results, progress=False)
    assert result.computed == 1 and len(result.failures) == 1
    assert "pairwise" in result.failures[0][1]
    failures = ResultsStore(results / "results.sqlite").query("failures", experiment="mixed")
    assert len(failures) == 1 and failures[0]["weak"] == "prompt:smollm2"
    status = sweep_status(path, cache_dir=cache, results_dir=results)
    assert (status["done"], status["failed"], status["left"]) == (1, 1, 0)
    assert main(["sweep", "run", str(path), "--cache-dir", str(cache), "--results-dir", str(results),
                 "--executor", "serial", "--no-progress"]) == 1


def _write_rows(path: str, writer: int, n: int) -> None:
    store = ResultsStore(path)
    for i in range(n):
        row = {"run_key": f"w{writer}-{i}", "experiment": f"writer{writer}", "created_at": "2026-11-25", "task": "t",
               "weak": "a", "strong": "b", "loss": "xent", "seed": i, "role": "transfer", "accuracy": 0.5,
               "auc": 0.5, "metrics": {}, "config": {}, "predictions": None, "timings": {}, "provenance": {}}
        store.write([row], [])


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "results.sqlite")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_rows, args=(path, w, 150)) for w in range(2)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    rows = ResultsStore(path).dataframe("runs")
    assert len(rows) == 300 and rows.run_key.is_unique
    assert rows.groupby("experiment").size().to_dict() == {"writer0": 150, "writer1": 150}


def test_cli_plan_status_results_export_and_cache(local_sweep, tmp_path, capsys):
    path, results, _, cache = local_sweep
    assert main(["sweep", "plan", str(path), "--cache-dir", str(cache)]) == 0
    assert f"{N_RUNS} runs, {N_RUNS} cached, 0 to compute" in capsys.readouterr().out
    assert main(["sweep", "status", str(path), "--cache-dir", str(cache), "--results-dir", str(results)]) == 0
    assert f"{N_RUNS} of {N_RUNS} runs done, 0 failed, 0 left" in capsys.readouterr().out
    csv, parquet = tmp_path / "runs.csv", tmp_path / "summaries.parquet"
    assert main(["results", "--results-dir", str(results), "--table", "runs", "--where", "role=transfer",
                 "--where", "task=sst2,amazon_polarity", "--export", str(csv)]) == 0
    assert main(["results", "--results-dir", str(results), "--experiment", "small", "--export", str(parquet)]) == 0
    import pandas as pd

    assert len(pd.read_csv(csv)) == N_RUNS
    assert len(pd.read_parquet(parquet)) == N_RUNS // 2
    assert main(["results", "--results-dir", str(results), "--where", "colour=red"]) == 2
    assert "unknown column" in capsys.readouterr().err
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    assert "stages/run" in capsys.readouterr().out


def test_cache_gc_removes_temp_files_old_and_outdated_entries(tmp_path):
    stage = tmp_path / "stages" / "student"
    stage.mkdir(parents=True)
    np.savez(stage / "old.npz", a=np.zeros(3))
    (stage / "old.json").write_text('{"w2slab": "0.0.1"}')  # written by another version: outdated
    np.savez(stage / "fresh.npz", a=np.zeros(3))
    (stage / "fresh.json").write_text('{"w2slab": "%s"}' % __import__("w2slab").__version__)
    (stage / ".tmp-fresh.npz-abc.npz").write_bytes(b"half")
    assert collect_garbage(tmp_path, dry_run=True, temp_grace_s=0)["files"] == 3
    assert (stage / "old.npz").exists()
    collect_garbage(tmp_path, temp_grace_s=0)
    assert sorted(p.name for p in stage.iterdir()) == ["fresh.json", "fresh.npz"]
    collect_garbage(tmp_path, older_than_days=0.0)
    assert not list(stage.iterdir())


def test_unwritable_cache_and_silent_ray_address_fail_before_any_work(tmp_path):
    path = write(tmp_path / "s.toml", 'tasks = ["sst2"]\nladder = ["tfidf", "minilm"]\n')
    blocker = write(tmp_path / "file", "not a folder")
    with pytest.raises(ConfigError, match="cache directory .* is not writable"):
        run_sweep(path, cache_dir=blocker / "cache", results_dir=tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="does not answer"):
        run_sweep(path, executor="ray", address="127.0.0.1:9", results_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
