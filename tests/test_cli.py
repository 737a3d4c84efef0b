"""The CLI: one-line errors with exit status 2 and nothing written; a real small run prints the table."""
import os
import subprocess
import sys

import pytest


def w2slab(*args, cwd, cache_dir, env_extra=None):
    env = {**os.environ, "W2SLAB_CACHE_DIR": str(cache_dir), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "w2slab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


BAD_INPUTS = [
    (["run", "--task", "sst3"], "unknown task 'sst3'; did you mean 'sst2'?"),
    (["run", "--weak", "minilmm"], "unknown model 'minilmm'; did you mean 'minilm'?"),
    (["run", "--seeds", "0"], "--seeds: expected a positive integer, got '0'"),
    (["run", "--seeds", "three"], "--seeds: expected a positive integer, got 'three'"),
    (["run", "--loss", ""], "losses is empty"),
    (["run", "--loss", "xent,hinge"], "unknown loss 'hinge'"),
    (["run", "--data-dir", "/no/such/dir"], "data directory '/no/such/dir' does not exist"),
    (["models", "install", "nosuchmodel"], "unknown model 'nosuchmodel'"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_one_line_error_nothing_written(args, message, tmp_path, cache_dir):
    out = w2slab(*args, cwd=tmp_path, cache_dir=cache_dir)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert list(tmp_path.iterdir()) == []  # no results folder, no partial files


def test_results_dir_not_writable(tmp_path, cache_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = w2slab("run", "--results-dir", str(blocker / "results"), cwd=cwd, cache_dir=cache_dir)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "--results-dir" in out.stderr and "is a file" in out.stderr
    assert list(cwd.iterdir()) == []


def test_missing_dataset_file_writes_nothing(tmp_path, cache_dir):
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    out = w2slab("run", "--weak", "tfidf", "--strong", "minilm", "--data-dir", str(empty_mirror), cwd=tmp_path,
                 cache_dir=cache_dir)
    assert out.returncode == 2 and "stsa.binary.train' is missing" in out.stderr
    assert not (tmp_path / "w2slab-results").exists()


def test_small_real_run_and_results_listing(tmp_path, cache_dir):
    out = w2slab("run", "--task", "sst2", "--weak", "tfidf", "--strong", "minilm", "--loss", "xent", "--seeds", "1",
                 "--n-examples", "300", cwd=tmp_path, cache_dir=cache_dir)
    assert out.returncode == 0, out.stderr
    assert "tfidf → minilm" in out.stdout and "PGR [95% CI]" in out.stdout
    assert (tmp_path / "w2slab-results" / "results.sqlite").is_file()
    listed = w2slab("results", cwd=tmp_path, cache_dir=cache_dir)
    assert listed.returncode == 0 and "tfidf" in listed.stdout and "minilm" in listed.stdout


def test_tasks_and_models_listing(tmp_path, cache_dir):
    tasks = w2slab("tasks", "list", cwd=tmp_path, cache_dir=cache_dir)
    assert tasks.returncode == 0 and all(t in tasks.stdout for t in ("sst2", "sciq", "boolq"))
    show = w2slab("tasks", "show", "sciq", cwd=tmp_path, cache_dir=cache_dir)
    assert show.returncode == 0 and show.stdout.count("--- example with label") == 2
    models = w2slab("models", "list", cwd=tmp_path, cache_dir=cache_dir)
    assert models.returncode == 0 and "Gemma Terms of Use" in models.stdout and "Apache-2.0" in models.stdout


def test_tasks_add_then_run_on_user_csv(tmp_path, cache_dir):
    lines = ["sentence,polarity"] + [f"\"{w} movie, truly {w}\",{p}" for w, p in
                                     [("great", "pos"), ("awful", "neg"), ("wonderful", "pos"), ("boring", "neg")] * 60]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    env = {"W2SLAB_TASKS_FILE": str(tmp_path / "tasks.json")}
    add = w2slab("tasks", "add", "mine", "--file", str(tmp_path / "mine.csv"), "--text", "sentence", "--label",
                 "polarity", "--positive", "pos", "--negative", "neg", cwd=tmp_path, cache_dir=cache_dir, env_extra=env)
    assert add.returncode == 0 and "240 items" in add.stdout, add.stderr
    again = w2slab("tasks", "add", "mine", "--file", str(tmp_path / "mine.csv"), "--text", "sentence", "--label",
                   "polarity", cwd=tmp_path, cache_dir=cache_dir, env_extra=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    run = w2slab("run", "--task", "mine", "--weak", "tfidf", "--strong", "minilm", "--loss", "xent", "--seeds", "1",
                 "--n-examples", "240", cwd=tmp_path, cache_dir=cache_dir, env_extra=env)
    assert run.returncode == 0, run.stderr
    assert "task mine" in run.stdout
