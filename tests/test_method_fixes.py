"""What skewed W2S numbers, each fixed with a test that fails on the old behaviour (issue "Numbers a reviewer
believes"): final-epoch training, self-training seeds, group folds, chain labellers, content-keyed sweeps,
and skipping invalid rows of user files."""
import shutil

import numpy as np
import pytest

from w2slab.errors import DataError
from w2slab.runner.protocol import cross_fitted, group_folds, train_student
from w2slab.runner.stages import self_training_seeds
from w2slab.supervisors.refine import parse_method

HEAD = {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-2}


def test_final_epoch_rule_trains_every_epoch_and_names_itself(minilm_sst2):
    X, y = minilm_sst2
    t = np.clip(y + np.random.default_rng(0).normal(0, 0.45, len(y)), 0.01, 0.99).astype(np.float32)  # noisy labels
    common = dict(head="logistic", head_params={**HEAD, "patience": 2}, loss="logconf", loss_params=None, seed=0)
    _, selected = train_student(X[:300], t[:300], X[300:400], t[300:400], X[400:], **common)
    p_final, final = train_student(X[:300], t[:300], X[300:400], t[300:400], X[400:], select=False, **common)
    assert len(final) == HEAD["epochs"] and "val_agreement" not in final[-1]
    assert len(selected) < HEAD["epochs"]  # weak-label selection stopped early on these noisy labels
    assert parse_method("logconf+final").epoch_rule == "final"
    assert parse_method("logconf").epoch_rule == "weak-val" and parse_method("xent+oracle").epoch_rule == "oracle"


def test_self_training_round_seeds_never_equal_another_seed():
    base = set(range(100))
    derived = [s for seed in range(100) for r in range(10) for s in self_training_seeds(seed, r)]
    assert not base & set(derived)  # the old seed + r + 1 made round 0 of seed s train exactly like seed s + 1
    assert len(set(derived)) == len(derived)


def test_cross_fitting_folds_keep_groups_whole():
    groups = np.repeat(np.arange(60), 2)  # a question's two candidates share a group
    folds = group_folds(groups, 5, seed=3)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert sorted(np.bincount(folds).tolist()) == [24] * 5


def test_cross_fitted_extra_rows_get_the_same_labellers(minilm_sst2):
    X, y = minilm_sst2
    t = y[:200].astype(np.float32)
    params = {}
    out, extra = cross_fitted(X[:200], t, head="sklearn_logistic", head_params=params, loss="xent", seed=0, folds=2,
                              X_extra=X[200:260])
    from w2slab.runner.protocol import make_student

    folds = group_folds(np.arange(200), 2, seed=0)
    models = [make_student("sklearn_logistic", {**params, "loss": "xent", "loss_params": None, "seed": k})
              .fit(X[:200][folds != k], t[folds != k]) for k in range(2)]
    want = np.mean([m.predict_proba(X[200:260])[:, 1] for m in models], axis=0)
    np.testing.assert_allclose(extra, want, rtol=1e-5)  # val / test labelled by B's own two labellers
    np.testing.assert_allclose(out[folds == 0], models[0].predict_proba(X[:200][folds == 0])[:, 1], rtol=1e-5)


def _sweep():
    from w2slab.runner.sweep import Sweep

    return Sweep.from_dict({"tasks": ["sst2"], "weak": ["tfidf"], "strong": ["minilm"], "methods": ["xent"],
                            "seeds": 2, "n_examples": 300})


def test_sweep_run_keys_hash_data_content_not_the_folder(data_dir, tmp_path):
    copies = []
    for name in ("a", "b"):
        shutil.copytree(data_dir / "sst2", tmp_path / name / "sst2")
        copies.append(tmp_path / name)
    keys = [[r.key for r in _sweep().runs(c)] for c in copies]
    assert keys[0] == keys[1]  # same files in two places: the same runs (the old key held the path)
    target = copies[1] / "sst2" / "stsa.binary.test"
    target.write_bytes(target.read_bytes().replace(b"a", b"e", 1))
    assert [r.key for r in _sweep().runs(copies[1])] != keys[0]  # one changed byte: other runs


def test_tasks_add_skip_invalid_drops_bad_rows_and_says_which(tmp_path, caplog):
    import logging

    from w2slab.tasks.user import FileTask, add_user_task

    path = tmp_path / "rows.csv"
    rows = [f"good text {i},{'pos' if i % 2 else 'neg'}" for i in range(20)]
    rows[3], rows[7] = ",pos", "fine text,maybe"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    task = dict(path=str(path), text="text", label="label", positive=("pos",), negative=("neg",))
    with pytest.raises(DataError, match="line 5"):
        add_user_task(FileTask(name="strict", **task))
    with caplog.at_level(logging.WARNING):
        n = add_user_task(FileTask(name="lenient", skip_invalid=True, **task))
    assert n == 16 and "2 invalid row(s) skipped" in caplog.text  # 18 valid rows, balanced to 8 + 8
    assert "line 5" in caplog.text and "line 9" in caplog.text


def _summary(task, weak, loss, pgr, created, defined=True):
    return {"task": task, "weak": weak, "strong": "mpnet", "loss": loss, "pgr": pgr, "defined": defined,
            "strong_to_strong": 0, "created_at": created}


def test_report_medians_count_reruns_once_and_stratify_by_supervisor_kind():
    from w2slab.report.html import median_table

    rows = [_summary("sst2", "minilm", "xent", 0.9, "t1"), _summary("sst2", "minilm", "xent", 0.9, "t2"),  # a rerun
            _summary("sst2", "minilm", "xent", 0.9, "t3"), _summary("amazon", "minilm", "xent", 0.1, "t1"),
            _summary("sst2", "tfidf+minilm+smollm2@ds", "xent", -0.5, "t1"),
            _summary("sst2", "minilm", "xent+oracle", 0.95, "t1")]
    table = {(r["supervisor_kind"], r["loss"]): r for r in median_table(rows)}
    single = table[("single model", "xent")]
    assert single["task_pairs"] == 2 and single["median_pgr"] == 0.5  # the rerun no longer pulls the median up
    assert table[("ensemble", "xent")]["median_pgr"] == -0.5            # never pooled with single models
    assert table[("single model", "xent+oracle")]["class"] == "oracle"


def test_report_medians_do_not_depend_on_the_order_runs_finished_in():
    import random

    from w2slab.report.html import median_table

    pgrs = np.random.default_rng(0).normal(0.3, 0.4, size=40).round(3)
    rows = [_summary(f"task{i:02d}", "minilm", "xent", float(pgr), "t1") for i, pgr in enumerate(pgrs)]
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert median_table(rows) == median_table(shuffled) == median_table(rows[::-1])


def test_study_command_runs_end_to_end_on_two_tasks(tmp_path, cache_dir, data_dir):
    from w2slab.cli import main

    sweep = tmp_path / "mini_study.toml"
    sweep.write_text('tasks = ["sst2", "tweeteval_sentiment"]\nweak = ["tfidf"]\nstrong = ["minilm"]\n'
                     'methods = ["xent", "logconf", "logconf+final"]\nseeds = 2\nn_examples = 300\nepochs = 10\n')
    page = tmp_path / "study.md"
    assert main(["study", str(sweep), "--out", str(page), "--executor", "serial",
                 "--results-dir", str(tmp_path / "results")]) == 0
    text = page.read_text()
    assert "## Verdict" in text and "| sst2 | tfidf → minilm | logconf+final |" in text
    assert "tweeteval_sentiment" in text and "Paired comparison with xent" in text
    assert ("beats xent" in text) or ("No method beats naive transfer" in text)


def test_study_pools_several_sweeps_and_refuses_a_task_pair_in_two(tmp_path, cache_dir, data_dir):
    from w2slab.cli import main
    from w2slab.errors import ConfigError
    from w2slab.report.study import write_study

    common = 'methods = ["xent", "logconf"]\nseeds = 2\nn_examples = 300\nepochs = 10\n'
    first = tmp_path / "first.toml"
    first.write_text('name = "first"\ntasks = ["sst2"]\npairs = [["tfidf", "minilm"]]\n' + common)
    second = tmp_path / "second.toml"
    second.write_text('name = "second"\ntasks = ["sst2", "tweeteval_sentiment"]\npairs = [["tfidf", "minilm-l3"]]\n'
                      + common + '[[models]]\nname = "minilm-l3"\nbase = "minilm"\nlayer = 3\n')
    page = tmp_path / "study.md"
    assert main(["study", str(first), str(second), "--out", str(page), "--executor", "serial",
                 "--results-dir", str(tmp_path / "results")]) == 0
    text = page.read_text()
    assert "study: first + second" in text and f"w2slab study {first} {second} --out" in text
    assert "| sst2 | tfidf → minilm | logconf |" in text and "| sst2 | tfidf → minilm-l3 | logconf |" in text
    assert "2 tasks, 3 (task, weak→strong) pairs" in text
    clash = tmp_path / "clash.toml"
    clash.write_text('name = "clash"\ntasks = ["sst2"]\npairs = [["tfidf", "minilm"]]\n' + common)
    with pytest.raises(ConfigError, match="is in sweeps 'first' and 'clash'"):
        write_study([first, clash], tmp_path / "never.md", executor="serial", results_dir=tmp_path / "results")
    assert not (tmp_path / "never.md").exists()
