"""Bad input never gets past the door: every subcommand, bad values for its options, each answered with exit 2,
one line on stderr naming the option or file, and nothing new under the cache, results and registry folders."""
import os
from pathlib import Path

import pytest

from w2slab.cli import main

GOOD_SWEEP = 'tasks = ["sst2"]\nweak = ["tfidf"]\nstrong = ["minilm"]\nmethods = ["xent"]\nseeds = 1\nn_examples = 200\n'


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder with input files of every kind, and empty cache / results / registry locations."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a_file").write_text("x")
    (work / "ok.csv").write_text("sentence,polarity\nnice,pos\nbad,neg\n")
    (work / "notes.txt").write_text("sentence,polarity\n")
    (work / "latin1.csv").write_bytes("sentence,polarity\nfine,pos\ncaf\xe9,neg\n".encode("latin-1"))
    (work / "sweep.toml").write_text(GOOD_SWEEP)
    (work / "broken.toml").write_text("tasks = [")
    (work / "unsafe.toml").write_text(GOOD_SWEEP + 'name = "../../escape"\n')
    (work / "layer.toml").write_text(GOOD_SWEEP + "layer = 99\n")
    (work / "seed.toml").write_text(GOOD_SWEEP + "split_seed = -1\n")
    (work / "alias.toml").write_text(GOOD_SWEEP.replace('["minilm"]', '["../m"]')
                                     + '[[models]]\nname = "../m"\nbase = "minilm"\nlayer = 3\n')
    (work / "crit.toml").write_text('critic = ["smollm2"]\n')
    (work / "empty.txt").write_text("\n")
    (work / "cai_bad.toml").write_text('[[settings]]\nmodel = "smollm2"\ntemperature = 0.3\n')
    (work / "cai_choice.toml").write_text('[[settings]]\nmodel = "smollm2"\nchoice = "vote"\n')
    (work / "cai_n.toml").write_text('n_pairs = 100\n[[settings]]\nmodel = "smollm2"\nn_pairs = 300\n')
    (work / "cai_clamp.toml").write_text('[[settings]]\nmodel = "smollm2"\nclamp = 0.7\n')
    (work / "cai_ens.toml").write_text('[[settings]]\nmodel = "smollm2"\nensemble = 9\n')
    (work / "cai_ft.toml").write_text('[[settings]]\nmodel = "m"\nbase_url = "http://127.0.0.1:1/v1"\nfinetune = 8\n')
    (work / "si.toml").write_text('models = ["smollm2"]\ntask = ["piqa"]\n')
    (work / "si_tokens.toml").write_text('[max_tokens_per_task]\nmath = 200\n')
    (work / "items.jsonl").write_text('{"item_id": "a", "problem_id": "p", "description": "d", "code": "x = 1", '
                                      '"buggy": false, "critiques": {}}\n')
    (work / "choice.jsonl").write_text('{"format": "choice", "item_id": "cosmos_qa/nope", "problem_id": "p", '
                                       '"question": "q?", "answers": ["a", "b"], "correct": 0, "critiques": {}}\n')
    (work / "a_dir").mkdir()
    (work / "rt").mkdir()  # a red-team run's folder with a sheet already written
    (work / "rt/cases.jsonl").write_text('{"target": "t", "method": "zero_shot", "seed": 0, "test_case": "q a b", '
                                         '"reply": "r", "flagged": true}\n')
    (work / "rt/audit.jsonl").write_text('{"id": "a", "harmful": null}\n')
    (work / "rt/labels.jsonl").write_text('{"id": "a", "harmful": "maybe"}\n')
    monkeypatch.chdir(work)
    monkeypatch.setenv("W2SLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("W2SLAB_TASKS_FILE", str(tmp_path / "registry" / "tasks.json"))
    return tmp_path


ADD = ["tasks", "add"]
CASES = [
    # run
    (["run", "--task", "nosuchtask"], "nosuchtask"),
    (["run", "--weak", "nosuchmodel"], "nosuchmodel"),
    (["run", "--loss", "nosuchloss"], "nosuchloss"),
    (["run", "--seeds", "0"], "--seeds"),
    (["run", "--seeds", "two"], "--seeds"),
    (["run", "--n-examples", "10"], "n_examples"),
    (["run", "--split-seed", "-1"], "split_seed"),
    (["run", "--layer", "99"], "layer 99"),
    (["run", "--layer", "-50"], "layer -50"),
    (["run", "--pooling", "max"], "--pooling"),
    (["run", "--student-mode", "distill"], "--student-mode"),
    (["run", "--student-mode", "lora", "--ft-grad-accum", "3"], "ft_grad_accum"),
    (["run", "--head", "nosuchhead"], "nosuchhead"),
    (["run", "--head", "sklearn_logistic", "--loss", "logconf"], "sklearn_logistic"),
    (["run", "--max-length", "0"], "--max-length"),
    (["run", "--ft-lr", "-1"], "ft_lr"),
    (["run", "--epochs", "many"], "--epochs"),
    (["run", "--strong", "someone/some-model"], "Hub is unreachable"),
    (["run", "--data-dir", "no/such/dir"], "does not exist"),
    (["run", "--data-dir", "a_file"], "is a file"),
    (["run", "--cache-dir", "a_file/sub"], "--cache-dir"),
    (["run", "--results-dir", "a_file"], "--results-dir"),
    # tasks
    (ADD + ["../../evil name", "--file", "ok.csv", "--text", "sentence", "--label", "polarity"], "not a safe name"),
    (ADD + ["mine", "--file", "missing.csv", "--text", "sentence", "--label", "polarity"], "missing.csv"),
    (ADD + ["mine", "--file", "notes.txt", "--text", "sentence", "--label", "polarity"], ".csv or .jsonl"),
    (ADD + ["mine", "--file", "latin1.csv", "--text", "sentence", "--label", "polarity", "--positive", "pos",
            "--negative", "neg"], "line 3"),
    (ADD + ["mine", "--file", "ok.csv"], "text + label"),
    (ADD + ["mine", "--file", "ok.csv", "--text", "sentence", "--label", "nosuchcolumn"], "nosuchcolumn"),
    (ADD + ["sst2", "--file", "ok.csv", "--text", "sentence", "--label", "polarity"], "built-in"),
    (["tasks", "show", "nosuchtask"], "nosuchtask"),
    # cache
    (["cache", "gc", "--older-than", "-3"], "--older-than"),
    (["cache", "gc", "--older-than", "nan"], "--older-than"),
    (["cache", "gc", "--older-than", "inf"], "--older-than"),
    (["cache", "gc", "--stage", "nosuchstage"], "--stage"),
    (["cache", "ls", "--cache-dir", "a_file"], "--cache-dir"),
    # results
    (["results", "--experiment", "nosuchexperiment"], "--experiment"),
    (["results", "--table", "nosuchtable"], "--table"),
    (["results", "--where", "no-equals-sign"], "--where"),
    (["results", "--where", "nosuchcolumn=1"], "nosuchcolumn"),
    (["results", "--export", "out.txt"], ".csv or .parquet"),
    (["results", "--export", "a_dir"], "--export"),
    (["results", "--export", "no/such/folder/out.csv"], "--export"),
    # report
    (["report", "--out", "a_file"], "--out"),
    # sweeps
    (["sweep", "plan", "a_dir"], "is a directory"),
    (["sweep", "plan", "missing.toml"], "does not exist"),
    (["sweep", "plan", "broken.toml"], "not valid TOML"),
    (["sweep", "plan", "unsafe.toml"], "not a safe name"),
    (["sweep", "plan", "alias.toml"], "not a safe name"),
    (["sweep", "plan", "layer.toml"], "layer 99"),
    (["sweep", "plan", "seed.toml"], "split_seed"),
    (["sweep", "run", "sweep.toml", "--address", "127.0.0.1:6379"], "--address"),
    (["sweep", "run", "sweep.toml", "--processes", "0"], "--processes"),
    # models and the LM layer
    (["models", "install", "nosuchmodel"], "nosuchmodel"),
    (["generate", "--model", "smollm2", "--prompts", "missing.jsonl"], "missing.jsonl"),
    (["generate", "--model", "smollm2", "--prompts", "ok.csv", "--top-p", "2"], "--top-p"),
    (["score", "--model", "smollm2", "--pairs", "a_dir"], "is a directory"),
    (["score", "--model", "smollm2", "--pairs", "latin1.csv"], "line 3: not UTF-8"),
    (["serve", "--model", "smollm2", "--port", "70000"], "--port"),
    # critiques and the judging page
    (["critiques", "run", "broken.toml"], "not valid TOML"),
    (["critiques", "run", "missing.toml"], "does not exist"),
    (["critiques", "run", "crit.toml"], "unknown key(s) critic"),
    (["critiques", "run", "--seeds", "-1"], "--seeds"),
    (["critiques", "run", "--critics", ","], "--critics"),
    (["critiques", "run", "--experiment", "../x"], "not a safe name"),
    (["critiques", "run", "--n-problems", "0"], "--n-problems"),
    (["critiques", "bugs", "--source", "missing.jsonl"], "does not exist"),
    (["critiques", "bugs", "--source", "ok.csv"], "unreadable"),
    (["critiques", "bugs", "--source", "mbpp", "--limit", "2", "--kinds", "typo"], "unknown mutation kind"),
    (["judge", "serve", "--items", "missing.jsonl", "--experiment", "e"], "does not exist"),
    # oversight protocols
    (["oversight", "run", "--task", "sst2"], "no context field"),
    (["oversight", "run", "--task", "nosuchtask"], "unknown task"),
    (["oversight", "run", "--rounds", "0"], "--rounds"),
    (["oversight", "run", "--protocols", "debate,duel"], "unknown protocol(s) duel"),
    (["oversight", "run", "--seeds", "-1"], "--seeds"),
    (["oversight", "run", "crit.toml"], "unknown key(s) critic"),
    (["oversight", "run", "--best-of", "0"], "--best-of"),
    (["oversight", "run", "--interactive", "--rounds", "1"], "rounds >= 2"),
    (["oversight", "run", "--best-of", "2", "--selector", "nosuchmodel", "--n-questions", "1"], "nosuchmodel"),
    # red teaming
    (["redteam", "run", "--threshold", "1.5"], "--threshold"),
    (["redteam", "run", "--methods", "zero_shot,jailbreak"], "unknown method(s) jailbreak"),
    (["redteam", "run", "--seed-pool", "missing.txt"], "seed pool"),
    (["redteam", "run", "--seed-pool", "empty.txt"], "holds no test cases"),
    (["redteam", "run", "broken.toml"], "not valid TOML"),
    (["redteam", "classifier", "--threshold", "-0.1"], "--threshold"),
    (["redteam", "classifier", "--kind", "vibes"], "--kind"),
    (["redteam", "audit", "missing/cases.jsonl"], "does not exist"),
    (["redteam", "audit", "items.jsonl"], "line 1: not a reply record"),
    (["redteam", "audit", "rt", "--n", "0"], "--n"),
    (["redteam", "audit", "rt", "--target", "qwen"], "--target 'qwen' has no replies"),
    (["redteam", "audit", "rt"], "already exists"),
    (["redteam", "audit", "rt", "--labels", "rt/labels.jsonl"], "true, false or null"),
    (["redteam", "audit", "rt", "--judged", "nobody"], "no audit verdicts"),
    (["redteam", "audit", "rt", "--judged", "nobody", "--labels", "rt/labels.jsonl"], "not allowed with"),
    # constitutional AI
    (["cai", "run", "--constitution", "crit.toml"], "unknown key(s) critic"),
    (["cai", "run", "--constitution", "missing.toml"], "does not exist"),
    (["cai", "run", "--n-pairs", "0"], "--n-pairs"),
    (["cai", "run", "cai_bad.toml"], "settings #1: unknown key(s) temperature"),
    (["cai", "run", "cai_choice.toml"], "settings #1: choice must be one of logprobs, sampled"),
    (["cai", "run", "cai_ft.toml"], "settings #1: finetune trains a local model"),
    (["cai", "run", "cai_n.toml"], "settings #1: n_pairs 300 exceeds the study's n_pairs 100"),
    (["cai", "run", "cai_clamp.toml"], "settings #1: clamp must be in [0, 0.5), got 0.7"),
    (["cai", "run", "cai_ens.toml"], "settings #1: ensemble 9 exceeds the constitution's 3 comparison questions"),
    (["cai", "constitution", "--check", "broken.toml"], "not valid TOML"),
    # self-improvement
    (["selfimprove", "run", "broken.toml"], "not valid TOML"),
    (["selfimprove", "run", "si.toml"], "unknown key(s) task"),
    (["selfimprove", "run", "si_tokens.toml"], "max_tokens_per_task"),
    (["selfimprove", "run", "--tau", "0"], "--tau"),
    (["selfimprove", "run", "--tau", "1.5"], "--tau"),
    (["selfimprove", "run", "--k", "0"], "--k"),
    (["selfimprove", "run", "--rounds", "0"], "--rounds"),
    (["selfimprove", "run", "--tasks", "mathqa"], "unknown reasoning task(s) mathqa"),
    (["selfimprove", "run", "--filters", "majority,vibes"], "filters must be some of"),
    (["selfimprove", "run", "--models", "nosuchmodel", "--tasks", "piqa"], "nosuchmodel"),
    (["judge", "serve", "--items", "ok.csv", "--experiment", "e"], "unreadable"),
    (["judge", "serve", "--items", "items.jsonl", "--experiment", "../e"], "not a safe name"),
    (["judge", "serve", "--items", "items.jsonl", "--experiment", "e", "--critique-share", "2"], "--critique-share"),
    (["judge", "serve", "--items", "items.jsonl", "--experiment", "e", "--assistant", "smollm2"],
     "needs 'choice' items"),
    (["judge", "serve", "--items", "choice.jsonl", "--experiment", "e", "--assistant", "smollm2"],
     "is not a question of task 'cosmos_qa'"),
    (["judge", "serve", "--items", "choice.jsonl", "--experiment", "e", "--assistant-rounds", "0"],
     "--assistant-rounds"),
    (["judge", "serve", "--items", "items.jsonl", "--experiment", "e", "--debaters", "smollm2"],
     "live debaters need 'choice' items"),
    (["judge", "serve", "--items", "choice.jsonl", "--experiment", "e", "--debaters", "smollm2"],
     "is not a question of task 'cosmos_qa'"),
    (["judge", "serve", "--items", "choice.jsonl", "--experiment", "e", "--debate-questions", "0"],
     "--debate-questions"),
]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("argv,says", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, says, place, capsys):
    watched = [place / "cache", place / "registry", place / "work" / "w2slab-results"]
    before = [_files(p) for p in watched]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse rejects types and choices itself
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert says in err, err
    assert "Traceback" not in err
    assert [_files(p) for p in watched] == before, f"{argv} wrote files"


def test_the_table_is_large_and_covers_every_subcommand():
    commands = {argv[0] for argv, _ in CASES}
    assert len(CASES) >= 40
    assert commands >= {"run", "tasks", "cache", "results", "report", "sweep", "models", "generate", "score", "serve",
                        "critiques", "judge"}


def test_an_internal_error_says_bug_writes_the_trace_and_exits_1(place, capsys, monkeypatch):
    import w2slab.cli as cli

    def broken(args):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(cli, "cmd_cache", broken)
    assert main(["cache", "ls"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error (a bug" in err
    trace = Path(err.rsplit("full trace in ", 1)[1])
    assert "ZeroDivisionError: planted" in trace.read_text()
    os.unlink(trace)


def test_too_little_data_is_refused_with_the_split_sizes(place, capsys, data_dir):
    tiny = place / "work" / "tiny.csv"
    tiny.write_text("sentence,polarity\n" + "".join(f"text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(60)))
    assert main(ADD + ["tiny", "--file", str(tiny), "--text", "sentence", "--label", "polarity", "--positive", "pos",
                       "--negative", "neg"]) == 0
    capsys.readouterr()
    assert main(["run", "--task", "tiny", "--weak", "tfidf", "--strong", "minilm", "--n-examples", "60",
                 "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "too few items" in err and "test=" in err and len(err.splitlines()) == 1


def test_n_examples_above_the_task_size_is_said(place, caplog):
    import logging

    from w2slab.tasks import load_task

    tiny = place / "work" / "small.csv"
    tiny.write_text("sentence,polarity\n" + "".join(f"t {i},{i % 2}\n" for i in range(40)))
    main(ADD + ["small", "--file", str(tiny), "--text", "sentence", "--label", "polarity"])
    with caplog.at_level(logging.WARNING):
        task = load_task("small", n_examples=500)
    assert len(task) == 40 and "asks for more" in caplog.text


def test_a_hub_id_without_network_fails_fast_in_one_line(place, capsys, monkeypatch):
    import time

    import w2slab.checks as checks

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(checks, "_HUB_REACHABLE", None)
    start = time.perf_counter()
    assert main(["run", "--strong", "someone/some-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - start < 10 and len(err.splitlines()) == 1
    assert "unreachable" in err and "local folder" in err and not (place / "cache").exists()


def test_cache_gc_collects_orphaned_feature_folders_only(place):
    from w2slab.runner.cache import collect_garbage

    features = place / "cache" / "features"
    orphan, kept, fresh = features / "aaa", features / "bbb", features / "ccc"
    for folder in (orphan, kept, fresh):
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text("{}")
    (kept / "chunk-1.npy").write_bytes(b"x")
    old = 1_000_000_000
    for folder in (orphan, kept):
        os.utime(folder, (old, old))
    done = collect_garbage(place / "cache")
    assert done["orphans"] == 1 and not orphan.exists() and kept.exists() and fresh.exists()


def test_a_data_dir_that_is_a_file_is_one_error_for_tasks_list(place, capsys):
    assert main(["tasks", "list", "--data-dir", "a_file"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err


def test_a_task_from_the_hub_without_network_fails_fast(place, capsys, monkeypatch):
    import time

    import w2slab.checks as checks

    monkeypatch.delenv("W2SLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(checks, "_HUB_REACHABLE", None)
    start = time.perf_counter()
    assert main(["tasks", "show", "sst2"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - start < 10 and len(err.splitlines()) == 1 and "--data-dir" in err
