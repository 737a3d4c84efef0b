"""The ``w2slab`` command: a thin shell over the Python API (each subcommand builds a config and calls
the function a notebook would call). Errors print one line and exit with status 2."""
from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .errors import ConfigError, W2SError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        self.exit(2, f"w2slab: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(text: str, low: int, allowed: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _number(text: str, ok, allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a number > 0")


def _non_negative_float(text: str) -> float:
    return _number(text, lambda v: 0 <= v < float("inf"), "a finite number >= 0")


def _unit_interval(text: str) -> float:
    return _number(text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _probability(text: str) -> float:
    return _number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; defaults come from ExperimentConfig."""
    from .runner.config import ExperimentConfig

    d = ExperimentConfig()
    parser = _Parser(prog="w2slab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"w2slab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a weak-to-strong experiment and print the table")
    run.add_argument("--task", default=d.task, help="task name (`w2slab tasks list`)")
    run.add_argument("--weak", type=_names, default=d.weak, help="weak model(s), comma-separated")
    run.add_argument("--strong", type=_names, default=d.strong, help="strong model(s), comma-separated")
    run.add_argument("--loss", dest="losses", type=_names, default=d.losses, help="losses, comma-separated")
    run.add_argument("--seeds", type=_positive_int, default=d.seeds, help="number of seeds")
    run.add_argument("--n-examples", type=_positive_int, default=d.n_examples, help="task items to sample")
    run.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the subsample and the split (>= 0)")
    run.add_argument("--head", default=d.head, help="student head")
    run.add_argument("--weak-head", default=d.weak_head, help="weak model's head")
    run.add_argument("--epochs", type=_positive_int, default=d.epochs, help="epochs of the probe heads")
    run.add_argument("--layer", type=int, default=d.layer, help="hidden_states index (-1 = last layer)")
    run.add_argument("--pooling", default=d.pooling, choices=("mean", "last", "first"),
                     help="how token states become one feature vector")
    run.add_argument("--max-length", type=_positive_int, default=d.max_length, help="tokens per text")
    run.add_argument("--student-mode", default=d.student_mode, choices=("probe", "finetune", "lora"),
                     help="students: a head on frozen features, full fine-tuning, or LoRA adapters")
    run.add_argument("--ft-epochs", type=_positive_int, default=d.ft_epochs, help="fine-tuning epochs")
    run.add_argument("--ft-batch-size", type=_positive_int, default=d.ft_batch_size, help="fine-tuning batch size")
    run.add_argument("--ft-grad-accum", type=_positive_int, default=d.ft_grad_accum,
                     help="micro-batches per fine-tuning step (must divide the batch size)")
    run.add_argument("--ft-lr", type=float, default=d.ft_lr, help="fine-tuning learning rate (0: 3e-5 full, 3e-4 LoRA)")
    run.add_argument("--lora-rank", type=_positive_int, default=d.lora_rank, help="LoRA rank (--student-mode lora)")
    _add_dirs(run, data=True, results=True)
    run.add_argument("--no-reuse", action="store_true", help="recompute weak/student stages (features stay cached)")

    models = sub.add_parser("models", help="the offline model zoo")
    models_sub = models.add_subparsers(dest="action", required=True, parser_class=_Parser)
    _add_dirs(models_sub.add_parser("list", help="name, size, installed or not, licence"))
    install = models_sub.add_parser("install", help="materialise zoo models into the cache")
    install.add_argument("names", nargs="+", help="zoo model names (`w2slab models list`)")
    _add_dirs(install)

    tasks = sub.add_parser("tasks", help="the task registry")
    tasks_sub = tasks.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = tasks_sub.add_parser("list", help="every task with its size after conversion, balance, licence")
    listing.add_argument("--names-only", action="store_true", help="do not load the tasks")
    _add_dirs(listing, data=True, cache=False)
    show = tasks_sub.add_parser("show", help="a task's template and two converted examples")
    show.add_argument("name", help="task name")
    _add_dirs(show, data=True, cache=False)
    add = tasks_sub.add_parser("add", help="declare a CSV or JSONL file as a task")
    add.add_argument("name", help="the new task's name (letters, digits, '.', '_', '-')")
    add.add_argument("--file", required=True, help=".csv or .jsonl")
    for column in ("text", "text-b", "label", "question", "candidates", "answer", "id", "group"):
        add.add_argument(f"--{column}", help=f"name of the {column.replace('-', ' ')} column")
    add.add_argument("--positive", type=_names, help="label values meaning 1 (default: 1,true,yes,positive)")
    add.add_argument("--negative", type=_names, help="label values meaning 0 (default: 0,false,no,negative)")
    add.add_argument("--replace", action="store_true", help="overwrite a user task of the same name")
    add.add_argument("--skip-invalid", action="store_true",
                     help="drop rows with an empty text, an unknown label or no correct candidate (says how many "
                          "and which lines) instead of refusing the file")

    report = sub.add_parser("report", help="write the static HTML report (figures, statistics) and CSV tables")
    report.add_argument("--experiment", help="only this experiment id (default: the latest experiment)")
    report.add_argument("--task", help="only this task")
    report.add_argument("--all", action="store_true", help="every stored experiment")
    report.add_argument("--out", help="output folder (default: <results-dir>/report)")
    _add_dirs(report, cache=False, results=True)

    results = sub.add_parser("results", help="list, filter and export stored summaries, runs or failures")
    results.add_argument("--table", default="summaries", choices=("summaries", "runs", "failures", "judgements", "rounds", "attacks"),
                         help="PGR summaries, single runs, failed runs, judgements, self-improvement rounds, or "
                              "red-teaming attacks")
    results.add_argument("--experiment", help="only this experiment id or sweep name")
    results.add_argument("--task", help="only this task")
    results.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                         help="more filters (repeatable; VALUE may be a,b for any of several)")
    results.add_argument("--export", metavar="FILE", help="write the rows to FILE (.csv or .parquet) instead")
    _add_dirs(results, cache=False, results=True)

    sweep = sub.add_parser("sweep", help="grids of runs declared in a TOML file")
    sweep_sub = sweep.add_subparsers(dest="action", required=True, parser_class=_Parser)
    plan = sweep_sub.add_parser("plan", help="print the expanded runs and which are already cached")
    plan.add_argument("file", help="the sweep's TOML file")
    plan.add_argument("--runs", action="store_true", help="one line per run instead of per (task, pair, method)")
    _add_dirs(plan, data=True)
    go = sweep_sub.add_parser("run", help="compute every missing run and store all rows")
    go.add_argument("file", help="the sweep's TOML file")
    go.add_argument("--executor", default="local", help="local (process pool), ray or serial")
    go.add_argument("--processes", type=_positive_int, help="worker processes (default: cores)")
    go.add_argument("--threads", type=_positive_int, help="torch threads per worker (default: cores / processes)")
    go.add_argument("--address", help="a running Ray cluster's head (host:port); without it Ray starts locally")
    go.add_argument("--no-progress", action="store_true", help="no live progress line")
    _add_dirs(go, data=True, results=True)
    status = sweep_sub.add_parser("status", help="runs done, failed (with errors) and left")
    status.add_argument("file", help="the sweep's TOML file")
    _add_dirs(status, data=True, results=True)

    study = sub.add_parser("study", help="run a sweep and write its study page (tables, medians, paired tests)")
    study.add_argument("file", nargs="+", help="the sweep's TOML file; several make one page (task-pairs pooled)")
    study.add_argument("--out", required=True, help="the Markdown page to write, e.g. docs/study.md")
    study.add_argument("--baseline", default="xent", help="the method every other is compared with")
    study.add_argument("--executor", default="local", choices=("local", "ray", "serial"), help="how runs execute")
    study.add_argument("--processes", type=_positive_int, help="worker processes (default: cores)")
    _add_dirs(study, data=True, results=True)

    _add_lm_commands(sub)

    cache = sub.add_parser("cache", help="show or trim the cache (features, stage outputs, tasks, models, generations)")
    cache_sub = cache.add_subparsers(dest="action", required=True, parser_class=_Parser)
    _add_dirs(cache_sub.add_parser("ls", help="entries and size per area and stage"))
    gc = cache_sub.add_parser("gc", help="delete old or outdated stage outputs and leftover temp files")
    gc.add_argument("--older-than", type=float, metavar="DAYS", help="stage outputs not modified for DAYS days")
    gc.add_argument("--stage", action="append", default=[],
                    help="only this stage (repeatable), e.g. run, student; 'generations' for the LM cache")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    _add_dirs(gc)
    from .cli_feedback import add_commands

    add_commands(sub, positive_int=_positive_int, non_negative_int=_non_negative_int, unit_interval=_unit_interval,
                 probability=_probability, port=_port, add_dirs=_add_dirs)
    return parser


def _add_lm_commands(sub) -> None:
    """`generate`, `score` and `serve`: the LM layer from the shell."""
    for name, text in (("generate", "sample completions of prompts from a JSONL file (cached)"),
                       ("score", "log-probabilities of continuations given contexts, from a JSONL file (cached)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--model", help="zoo decoder, .gguf file, model folder or Hub id; for --backend openai the "
                                         "served model's name (default: the first it lists)")
        cmd.add_argument("--backend", default="llamacpp", choices=("llamacpp", "transformers", "openai"),
                         help="llamacpp (in-process, fastest on CPU), transformers (trainable, adapters), openai (a server)")
        cmd.add_argument("--base-url", help="the OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (--backend openai)")
        cmd.add_argument("--adapter", help="a LoRA adapter folder from `w2slab.training.policy` (llamacpp: exported to a LoRA GGUF; "
                                           "transformers: applied by peft)")
        cmd.add_argument("--context", type=_positive_int, default=2048, help="llamacpp: tokens per slot (prompt + output)")
        cmd.add_argument("--parallel", type=_positive_int, default=4, help="llamacpp: slots / openai: requests in flight")
        cmd.add_argument("--timeout", type=_positive_float, default=120.0, help="openai: seconds per request")
        cmd.add_argument("--retries", type=_non_negative_int, default=2, help="openai: retries of a failed request")
        cmd.add_argument("--no-cache", action="store_true", help="neither read nor write the generation cache")
        cmd.add_argument("--out", help="write JSONL here (atomically) instead of to standard output")
        if name == "generate":
            cmd.add_argument("--prompts", required=True,
                             help='JSONL: one {"prompt": text} or {"messages": [{"role", "content"}, ...]} per line, optional "id"')
            cmd.add_argument("--n", type=_positive_int, default=1, help="samples per prompt")
            cmd.add_argument("--temperature", type=_non_negative_float, default=0.0, help="0 = greedy")
            cmd.add_argument("--top-p", type=_unit_interval, default=1.0, help="nucleus sampling mass, in (0, 1]")
            cmd.add_argument("--max-tokens", type=_positive_int, default=128, help="new tokens per sample at most")
            cmd.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
            cmd.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed (sample i uses seed, i)")
        else:
            cmd.add_argument("--pairs", required=True,
                             help='JSONL: one {"prompt" or "messages", "continuation"} per line, optional "id"')
        _add_dirs(cmd)
    serve = sub.add_parser("serve", help="serve a zoo decoder or .gguf as an OpenAI-compatible HTTP server (llama.cpp)")
    serve.add_argument("--model", required=True, help="zoo decoder or .gguf file")
    serve.add_argument("--port", type=_port, default=8080, help="port on 127.0.0.1")
    serve.add_argument("--context", type=_positive_int, default=2048, help="tokens per slot")
    serve.add_argument("--parallel", type=_positive_int, default=4, help="slots (concurrent requests)")
    serve.add_argument("--threads", type=_positive_int, default=2, help="CPU threads")
    _add_dirs(serve)


def _add_dirs(parser, *, data: bool = False, cache: bool = True, results: bool = False) -> None:
    if data:
        parser.add_argument("--data-dir", help="local dataset mirror (default: $W2SLAB_DATA_DIR, else the HF Hub)")
    if cache:
        parser.add_argument("--cache-dir", help="features, models, stage outputs (default: $W2SLAB_CACHE_DIR)")
    if results:
        parser.add_argument("--results-dir", help="where results.sqlite goes (default: ./w2slab-results)")


def cmd_run(args) -> None:
    """`w2slab run`: build an ExperimentConfig from the flags, run it, print the table."""
    from .runner import ExperimentConfig, run_experiment

    config = ExperimentConfig(task=args.task, weak=args.weak, strong=args.strong, losses=args.losses, seeds=args.seeds,
                              n_examples=args.n_examples, split_seed=args.split_seed, head=args.head,
                              weak_head=args.weak_head, epochs=args.epochs, layer=args.layer, pooling=args.pooling,
                              max_length=args.max_length, student_mode=args.student_mode, ft_epochs=args.ft_epochs,
                              ft_batch_size=args.ft_batch_size, ft_grad_accum=args.ft_grad_accum, ft_lr=args.ft_lr,
                              lora_rank=args.lora_rank)
    result = run_experiment(config, data_dir=args.data_dir, cache_dir=args.cache_dir, results_dir=args.results_dir,
                            reuse=not args.no_reuse, progress=sys.stderr.isatty())
    print(result.table())
    print(f"\nexperiment {result.experiment}: {len(result.runs)} runs stored in {result.store_path} "
          f"(predictions: {result.predictions_path}); {result.timings['total_s']:.1f} s\n"
          f"figures and statistics: w2slab report{' --results-dir ' + args.results_dir if args.results_dir else ''}")


def cmd_models(args) -> None:
    """`w2slab models list|install`."""
    from .models import MODELS, describe, fetch_packages, gguf_path, install

    if args.action == "install":
        for name in args.names:
            MODELS.get(name)
        for name in args.names:
            spec = MODELS.get(name)
            if spec.install_on_demand:
                fetch_packages(name)
            path = gguf_path(name, cache=args.cache_dir) if spec.gguf is not None else install(name, cache=args.cache_dir)
            print(f"{name}: {path or 'nothing to install (built in)'}")
        return
    rows = [describe(name, cache=args.cache_dir) for name in MODELS.names()]
    _print_rows(rows, ("name", "kind", "params_m", "backends", "status", "licence"))


def cmd_tasks(args) -> None:
    """`w2slab tasks list|show|add`."""
    from .tasks import TASKS, get_spec, load_task
    from .tasks.user import FileTask, add_user_task, register_user_tasks

    register_user_tasks(TASKS)
    if getattr(args, "data_dir", None):
        from .paths import data_dir

        data_dir(args.data_dir)  # a bad mirror is one error, not one per task
    if args.action == "add":
        options = {k: getattr(args, k.replace("-", "_")) for k in ("text", "text-b", "label", "question", "candidates",
                                                                    "answer", "id", "group")}
        options = {k.replace("-", "_"): v for k, v in options.items() if v is not None}
        for key in ("positive", "negative"):
            if getattr(args, key):
                options[key] = getattr(args, key)
        options["skip_invalid"] = args.skip_invalid
        n = add_user_task(FileTask(name=args.name, path=args.file, **options), replace=args.replace)
        print(f"task {args.name!r}: {n} items from {args.file}; run it with `w2slab run --task {args.name}`")
        return
    if args.action == "list":
        rows = []
        for name in TASKS.names():
            spec = get_spec(name)
            row = {"name": name, "licence": spec.licence, "source": spec.hub[0] or spec.local_files[0],
                   "frozen features": "learnable" if spec.frozen_features_learnable else "need fine-tuning"}
            if not args.names_only:
                try:
                    task = load_task(name, data_dir=args.data_dir)
                    row.update(items=len(task), groups=len(set(task.groups.tolist())),
                               share_of_1=f"{task.positive_rate:.3f}", pairwise="yes" if task.texts_b else "")
                except W2SError as err:
                    row.update(items=f"unavailable: {err}"[:60])
            rows.append(row)
        columns = ("name",) + (() if args.names_only else ("items", "groups", "share_of_1", "pairwise")) + (
            "frozen features", "licence", "source")
        _print_rows(rows, columns)
        return
    spec = get_spec(args.name)
    task = load_task(args.name, data_dir=args.data_dir)
    print(f"{spec.name}: {spec.description}\nlicence: {spec.licence}\nhub source: {spec.hub[0] or '-'}\n"
          f"local files: {', '.join(spec.local_files)}\nconversion: {spec.conversion}\n"
          f"template: {spec.template!r}\nitems: {len(task)} (share of class 1: {task.positive_rate:.3f}), "
          f"groups: {len(set(task.groups.tolist()))}")
    for label in (1, 0):
        i = int((task.labels == label).argmax())
        print(f"\n--- example with label {label} ---\n{task.texts[i]}")
        if task.texts_b is not None:
            print(f"--- (versus) ---\n{task.texts_b[i]}")


def cmd_report(args) -> None:
    """`w2slab report`: the HTML report of the latest experiment, or of the filtered / all results."""
    from .report import write_report

    page = write_report(results_dir=args.results_dir, out=args.out, experiment=args.experiment, task=args.task,
                        everything=args.all)
    print(f"report: {page}")


def cmd_results(args) -> None:
    """`w2slab results`: stored rows, filtered; printed, or exported to CSV / Parquet."""
    from .paths import results_dir
    from .runner import ResultsStore

    where = {k: v for k, v in (("experiment", args.experiment), ("task", args.task)) if v}
    for item in args.where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise ConfigError(f"--where expects COLUMN=VALUE, got {item!r}")
        where[column.strip()] = value.split(",") if "," in value else value
    store = ResultsStore(results_dir(args.results_dir) / "results.sqlite")
    if args.experiment:
        known = store.experiments()
        if args.experiment not in known:
            raise ConfigError(f"--experiment {args.experiment!r} is not in {store.path} "
                              f"(known: {', '.join(known[-8:]) or 'none'})")
    if args.export:
        from .checks import check_new_file

        check_new_file(args.export, "--export")
        n = store.export(args.export, args.table, **where)
        print(f"{n} {args.table} rows written to {args.export}")
        return
    rows = store.query(args.table, **where)
    if args.table == "summaries":
        for r in rows:
            r["pgr [95% CI]"] = (f"{r['pgr']:+.2f} [{r['pgr_low']:+.2f}, {r['pgr_high']:+.2f}]" if r["defined"]
                                else "undefined")
            for k in ("floor", "transfer", "ceiling"):
                r[k] = f"{r[k]:.3f}"
        columns = ("experiment", "created_at", "task", "weak", "strong", "loss", "floor", "transfer", "ceiling",
                   "pgr [95% CI]")
    elif args.table == "runs":
        for r in rows:
            r["accuracy"] = f"{r['accuracy']:.3f}"
        columns = ("experiment", "task", "role", "weak", "strong", "loss", "seed", "accuracy")
    elif args.table == "attacks":
        columns = ("experiment", "red_lm", "target", "method", "seed", "n_cases", "flagged", "raw_rate",
                   "corrected_rate", "corrected_low", "corrected_high")
    elif args.table == "rounds":
        columns = ("experiment", "task", "model", "filter", "seed", "round", "n_test", "greedy_acc", "maj_acc",
                   "greedy_unextractable", "kept", "kept_wrong_share")
    elif args.table == "judgements":
        columns = ("experiment", "judge_kind", "judge", "condition", "critic", "seed", "item_id", "buggy", "decision",
                   "p_buggy", "seconds")
    else:
        columns = ("experiment", "created_at", "task", "weak", "strong", "loss", "seed", "error")
    _print_rows(rows, columns)


def cmd_sweep(args) -> int:
    """`w2slab sweep plan|run|status FILE`."""
    from .runner.driver import plan_sweep, run_sweep, sweep_status

    if args.action == "run" and args.address and args.executor != "ray":
        raise ConfigError(f"--address is for --executor ray, not {args.executor!r}")

    if args.action == "plan":
        print(plan_sweep(args.file, data_dir=args.data_dir, cache_dir=args.cache_dir).table(every_run=args.runs))
        return 0
    if args.action == "status":
        status = sweep_status(args.file, data_dir=args.data_dir, cache_dir=args.cache_dir, results_dir=args.results_dir)
        _print_rows(status["tasks"], ("task", "total", "done", "failed", "left"))
        print(f"\nsweep {status['sweep']!r}: {status['done']} of {status['total']} runs done, {status['failed']} failed, "
              f"{status['left']} left")
        for label, error in status["errors"]:
            print(f"  failed: {label}: {error}")
        return 0
    result = run_sweep(args.file, executor=args.executor, processes=args.processes, threads=args.threads,
                       address=args.address, data_dir=args.data_dir, cache_dir=args.cache_dir,
                       results_dir=args.results_dir, progress=not args.no_progress)
    print(f"sweep {result.sweep.name!r}: {result.computed} runs computed, {result.cached} cached, "
          f"{len(result.failures)} failed, in {result.timings['total_s']:.1f} s; rows in {result.store_path}\n"
          f"see: w2slab results --experiment {result.sweep.name}   or   w2slab report --experiment {result.sweep.name}")
    for label, error in result.failures:
        print(f"  failed: {label}: {error}", file=sys.stderr)
    return 1 if result.failures else 0


def cmd_study(args) -> None:
    """`w2slab study FILE --out PAGE`: the sweep (cached runs reused) and its study page."""
    from .checks import check_new_file
    from .report.study import write_study
    from .runner.sweep import Sweep

    check_new_file(args.out, "--out")
    sweeps = [Sweep.from_file(file) for file in args.file]  # every run's settings checked before any work
    page = write_study(sweeps, args.out, baseline=args.baseline,
                       command=f"w2slab study {' '.join(args.file)} --out {args.out}",
                       executor=args.executor, processes=args.processes, data_dir=args.data_dir,
                       cache_dir=args.cache_dir, results_dir=args.results_dir, progress=sys.stderr.isatty())
    print(f"study: {page}")


def cmd_cache(args) -> None:
    """`w2slab cache ls|gc`."""
    from .paths import cache_dir
    from .runner.cache import cache_usage, collect_garbage

    root = cache_dir(args.cache_dir)
    if args.action == "gc":
        from .checks import check_days
        from .runner.cache import known_stages

        check_days(args.older_than)
        known = known_stages(root)
        for stage in args.stage:
            if stage not in known:
                raise ConfigError(f"--stage {stage!r} is not a stage in {root} (known: {', '.join(sorted(known))})")
    if args.action == "ls":
        rows = cache_usage(root)
        _print_rows(rows, ("area", "entries", "mb", "newest", "temp_files"))
        print(f"\n{root}: {sum(r['mb'] for r in rows):.1f} MB")
        return
    done = collect_garbage(root, older_than_days=args.older_than, stages=tuple(args.stage), dry_run=args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {done['files']} files ({done['mb']} MB), "
          f"{done['orphans']} orphaned feature folders and {done['generations']} generation-cache entries from {root}")


def _lm_from_args(args):
    """The (cached) LM the `generate` / `score` flags describe; loads nothing heavy before the first request."""
    from .lm import load_lm

    options = {}
    if args.backend == "llamacpp":
        options = {"context": args.context, "parallel": args.parallel}
    elif args.backend == "openai":
        options = {"concurrency": args.parallel, "timeout": args.timeout, "max_retries": args.retries}
    return load_lm(args.model, backend=args.backend, base_url=args.base_url, adapter=args.adapter,
                   cache=False if args.no_cache else args.cache_dir, progress=sys.stderr.isatty(), **options)


def _check_out(path: str | None) -> None:
    from pathlib import Path

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--out {path!r} is a directory; give a file name")
    if not target.parent.resolve().is_dir():
        raise ConfigError(f"--out {path!r}: folder {str(target.parent)!r} does not exist")


def _write_jsonl(rows: list[dict], out: str | None) -> None:
    import json

    from .io import atomic_path

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if out is None:
        sys.stdout.write(text)
        return
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")


def cmd_generate(args) -> None:
    """`w2slab generate`: every prompt's samples as JSONL (validated before any model loads)."""
    import time

    from .lm import read_prompts, requests_from_rows

    _check_lm_args(args)
    rows = read_prompts(args.prompts)
    requests = requests_from_rows(rows, n=args.n, temperature=args.temperature, top_p=args.top_p,
                                  max_tokens=args.max_tokens, stop=tuple(args.stop), seed=args.seed)
    _check_out(args.out)
    start = time.perf_counter()
    with _lm_from_args(args) as lm:
        results = lm.generate(requests)
        computed = getattr(lm, "backend_calls", sum(len(r) for r in results))
    out = [{**row, "samples": [{"text": g.text, "completion_tokens": g.completion_tokens,
                                "finish_reason": g.finish_reason} for g in samples]}
           for row, samples in zip(rows, results)]
    _write_jsonl(out, args.out)
    tokens = sum(g.completion_tokens for samples in results for g in samples)
    print(f"{sum(len(r) for r in results)} samples of {len(rows)} prompts ({computed} generated, the rest from the "
          f"cache), {tokens} tokens in {time.perf_counter() - start:.1f} s"
          + (f"; written to {args.out}" if args.out else ""), file=sys.stderr)


def cmd_score(args) -> None:
    """`w2slab score`: log P(continuation | context) per line as JSONL."""
    from .lm import read_score_pairs

    _check_lm_args(args)
    rows, requests = read_score_pairs(args.pairs)
    _check_out(args.out)
    with _lm_from_args(args) as lm:
        scores = lm.loglikelihood(requests)
    _write_jsonl([{**row, "logprob": s.logprob, "n_tokens": s.n_tokens, "greedy": s.greedy, "exact": s.exact}
                  for row, s in zip(rows, scores)], args.out)


def _check_lm_args(args) -> None:
    if args.backend == "openai" and not args.base_url:
        raise ConfigError("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
    if args.backend != "openai" and args.base_url:
        raise ConfigError(f"--base-url is for --backend openai, not {args.backend}")
    if args.backend != "openai" and not args.model:
        raise ConfigError(f"--backend {args.backend} needs --model")
    if args.adapter and args.backend == "openai":
        raise ConfigError("--adapter needs --backend llamacpp or transformers (a server loads its own adapters)")


def cmd_serve(args) -> None:
    """`w2slab serve`: a llama.cpp OpenAI-compatible server on 127.0.0.1 until interrupted."""
    import signal
    import threading

    from .lm.llamacpp import serve

    engine = serve(args.model, port=args.port, context=args.context, parallel=args.parallel, threads=args.threads,
                   cache=args.cache_dir)
    print(f"serving {args.model} at {engine.listening_address}/v1 (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


def cmd_critiques(args) -> None:
    """`w2slab critiques bugs|run`."""
    from .cli_feedback import cmd_critiques as run

    run(args)


def cmd_selfimprove(args) -> None:
    """`w2slab selfimprove run`."""
    from .cli_feedback import cmd_selfimprove as run

    run(args)


def cmd_oversight(args) -> None:
    """`w2slab oversight run`."""
    from .cli_feedback import cmd_oversight as run

    run(args)


def cmd_redteam(args) -> None:
    """`w2slab redteam classifier|run`."""
    from .cli_feedback import cmd_redteam as run

    run(args)


def cmd_cai(args) -> None:
    """`w2slab cai run|constitution`."""
    from .cli_feedback import cmd_cai as run

    run(args)


def cmd_judge(args) -> None:
    """`w2slab judge serve`."""
    from .cli_feedback import cmd_judge as run

    run(args)


def _print_rows(rows: list[dict], columns: tuple[str, ...]) -> None:
    from .report.table import format_rows

    print(format_rows(rows, columns))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a W2SError or OSError, printed as one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    handler = {"run": cmd_run, "models": cmd_models, "tasks": cmd_tasks, "report": cmd_report,
               "results": cmd_results, "sweep": cmd_sweep, "cache": cmd_cache, "generate": cmd_generate,
               "score": cmd_score, "serve": cmd_serve, "study": cmd_study, "critiques": cmd_critiques,
               "judge": cmd_judge, "selfimprove": cmd_selfimprove, "oversight": cmd_oversight,
               "redteam": cmd_redteam, "cai": cmd_cai}[args.command]
    try:
        _check_places(args)
        status = handler(args) or 0
    except W2SError as err:
        print(f"w2slab: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a folder that vanished: one line, not a traceback
        where = f" {err.filename!s}" if err.filename else ""
        print(f"w2slab: error: cannot use{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("w2slab: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not a user error: say so, keep the trace, exit 1
        print(f"w2slab: internal error (a bug in w2slab, please report it): {type(err).__name__}: {err}; "
              f"full trace in {_write_trace()}", file=sys.stderr)
        return 1
    return status


def _check_places(args) -> None:
    """Folders and files the command will write, checked before any work."""
    from .checks import check_writable_dir

    for option in ("cache_dir", "results_dir"):
        if getattr(args, option, None):
            check_writable_dir(getattr(args, option), "--" + option.replace("_", "-"))
    if args.command == "report" and args.out:
        check_writable_dir(args.out, "--out")
    if args.command == "study" and args.baseline:
        from .supervisors.refine import parse_method

        parse_method(args.baseline)


def _write_trace() -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="w2slab-crash-", suffix=".txt")
    with open(fd, "w") as f:
        f.write(traceback.format_exc())
    return path


def _quiet_libraries() -> None:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", module="transformers")


if __name__ == "__main__":
    sys.exit(main())
