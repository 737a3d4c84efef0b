"""Plan, run and inspect sweeps: the functions behind ``w2slab sweep plan | run | status``.

    >>> from w2slab import plan_sweep, run_sweep
    >>> print(plan_sweep("sweeps/ladder.toml").table())
    >>> result = run_sweep("sweeps/ladder.toml", executor="local")

A sweep run builds one job per missing stage (features per (task, model), supervisor labels per (task,
weak, seed), ceiling per (task, strong, seed), one job per run), hands the DAG to an executor and, as
runs finish, writes their rows (floor, ceiling, transfer) and — once all seeds of a (task, weak, strong,
method) are in — its PGR summary. Finished runs are read back from the stage cache, so rerunning a sweep,
or one with an extra seed or method, computes only what is new, and a killed sweep resumes where it was.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..evaluation import classification_metrics
from ..io import stable_hash
from ..paths import cache_dir as resolve_cache_dir
from ..paths import data_dir as resolve_data_dir
from ..paths import results_dir as resolve_results_dir
from ..supervisors.spec import parse_supervisor
from .cache import StageCache
from .executors import EXECUTORS
from .experiment import summary_fields
from .jobs import RUN_STAGE, ContextSpec, Job
from .progress import SweepProgress
from .provenance import provenance
from .stages import learning_curve
from .store import ResultsStore, check_writable
from .sweep import RunSpec, Sweep, load_sweep

log = logging.getLogger(__name__)
MIN_FREE_MB = 100  # refuse to start a sweep on a cache disk with less room than this


@dataclasses.dataclass
class SweepPlan:
    """The expanded grid and which runs already have a stored result (by run key)."""

    sweep: Sweep
    runs: list[RunSpec]
    cached: set[str]
    seconds: float

    def groups(self) -> list[dict]:
        """One row per (task, weak, strong, method): seeds planned and cached."""
        rows: dict[tuple, dict] = {}
        for run in self.runs:
            row = rows.setdefault(run.group, dict(zip(("task", "weak", "strong", "method"), run.group),
                                                  seeds=0, cached=0))
            row["seeds"] += 1
            row["cached"] += run.key in self.cached
        return list(rows.values())

    def table(self, *, every_run: bool = False) -> str:
        from ..report.table import format_rows

        if every_run:
            rows = [{"run": r.label(), "key": r.key, "cached": "yes" if r.key in self.cached else ""} for r in self.runs]
            body = format_rows(rows, ("run", "key", "cached"))
        else:
            body = format_rows(self.groups(), ("task", "weak", "strong", "method", "seeds", "cached"))
        return (f"{body}\n\nsweep {self.sweep.name!r}: {len(self.runs)} runs, {len(self.cached)} cached, "
                f"{len(self.runs) - len(self.cached)} to compute (planned in {self.seconds:.2f} s)")


@dataclasses.dataclass
class SweepResult:
    """What ``run_sweep`` returns: counts of runs, the failures (label, error), timings in seconds."""

    sweep: Sweep
    total: int
    computed: int
    cached: int
    failures: list[tuple[str, str]]
    store_path: Path
    timings: dict[str, float]
    summaries: list[dict]


def plan_sweep(sweep, *, data_dir=None, cache_dir=None) -> SweepPlan:
    """Expand ``sweep`` (a TOML path, dict or Sweep) into runs and look each up in the stage cache."""
    t0 = time.perf_counter()
    sweep = load_sweep(sweep)
    runs = sweep.runs(resolve_data_dir(data_dir))
    stored = StageCache(resolve_cache_dir(cache_dir) / "stages").keys(RUN_STAGE)
    cached = {r.key for r in runs if r.key in stored}
    return SweepPlan(sweep, runs, cached, time.perf_counter() - t0)


def run_sweep(sweep, *, executor: str = "local", processes: int | None = None, threads: int | None = None,
              address: str | None = None, data_dir=None, cache_dir=None, results_dir=None,
              progress: bool = True) -> SweepResult:
    """Run every missing run of ``sweep`` on ``executor`` ('local', 'ray' or 'serial') and store all rows.

    processes / threads: worker processes and torch threads each (default: cores, 1). address: a running Ray
    cluster (``host:port``); without it executor 'ray' starts a local Ray. Returns counts and failures; a
    failed run is recorded in the store's failures table and the sweep carries on.
    """
    started = time.perf_counter()
    cache_root = resolve_cache_dir(cache_dir)
    check_writable(cache_root, what="cache directory", min_free_mb=MIN_FREE_MB)
    results = check_writable(resolve_results_dir(results_dir))
    data = resolve_data_dir(data_dir)
    plan = plan_sweep(sweep, data_dir=data, cache_dir=cache_root)
    runner = EXECUTORS.get(executor)(processes=processes, threads=threads, address=address)
    _check_models(plan.sweep, cache_root)
    jobs = _jobs(plan, data, cache_root)
    writer = _RowWriter(ResultsStore(results / "results.sqlite"), plan, cache_root)
    bar = SweepProgress(len(plan.runs), len(plan.cached), enabled=progress)
    for run in plan.runs:
        if run.key in plan.cached:
            writer.add(run, writer.stage_cache.load(RUN_STAGE, run.key))
    failures, job_seconds = [], 0.0
    try:
        for outcome in runner.run(jobs):
            job_seconds += outcome.seconds
            if outcome.job.kind != "run":
                if outcome.error:
                    log.warning("%s job %s failed: %s", outcome.job.kind, outcome.job.id, outcome.error)
                continue
            run = outcome.job.args[0]
            if outcome.error:
                failures.append((run.label(), outcome.error))
                writer.fail(run, outcome.error)
            else:
                writer.add(run, outcome.value)
            bar.update(done=outcome.error is None, failed=outcome.error is not None)
    finally:
        writer.flush()
        bar.close()
    return SweepResult(sweep=plan.sweep, total=len(plan.runs), computed=len(plan.runs) - len(plan.cached) - len(failures),
                       cached=len(plan.cached), failures=failures, store_path=writer.store.path,
                       timings={"total_s": time.perf_counter() - started, "jobs_s": job_seconds,
                                "plan_s": plan.seconds}, summaries=writer.summaries)


def sweep_status(sweep, *, data_dir=None, cache_dir=None, results_dir=None) -> dict:
    """Counts of a sweep's runs: total, done (stored in the cache), failed (recorded, not since redone), left;
    per task; and the recorded errors."""
    plan = plan_sweep(sweep, data_dir=data_dir, cache_dir=cache_dir)
    store = ResultsStore(resolve_results_dir(results_dir) / "results.sqlite")
    keys = {r.key for r in plan.runs}
    failed = {f["run_key"]: f for f in store.query("failures", experiment=plan.sweep.name)
              if f["run_key"] in keys and f["run_key"] not in plan.cached}
    per_task = {}
    for run in plan.runs:
        row = per_task.setdefault(run.task.task, {"task": run.task.task, "total": 0, "done": 0, "failed": 0, "left": 0})
        row["total"] += 1
        state = "done" if run.key in plan.cached else "failed" if run.key in failed else "left"
        row[state] += 1
    return {"sweep": plan.sweep.name, "total": len(plan.runs), "done": len(plan.cached), "failed": len(failed),
            "left": len(plan.runs) - len(plan.cached) - len(failed), "tasks": list(per_task.values()),
            "errors": [(f"{f['task']}: {f['weak']} → {f['strong']}, {f['loss']}, seed {f['seed']}", f["error"])
                       for f in failed.values()]}


def _check_models(sweep: Sweep, cache_root: Path) -> None:
    """Fail before any work on a model that is not installed or cannot be installed (zoo models install here)."""
    from ..models import make_featurizer, resolve

    for spec in sweep.models.values():
        make_featurizer(spec.model, layer=spec.layer, pooling=spec.pooling, max_length=spec.max_length,
                        cache=cache_root)
    for weak, _ in sweep.pairs:
        if weak.kind == "prompt":
            resolve(weak.models[0], cache=cache_root)


def _jobs(plan: SweepPlan, data: Path | None, cache_root: Path) -> list[Job]:
    """The DAG of stages the missing runs need, in dependency order (features, supervisors, ceilings, runs)."""
    sweep = plan.sweep
    jobs: dict[str, Job] = {}
    contexts = {task: ContextSpec(task, sweep.train, tuple(sorted(sweep.models.items())), sweep.weak_models,
                                  None if data is None else str(data), str(cache_root)) for task in sweep.tasks}

    def add(job_id: str, kind: str, ctx: ContextSpec, args: tuple, deps: tuple = ()) -> str:
        jobs.setdefault(job_id, Job(job_id, kind, ctx, args, deps))
        return job_id

    def features(ctx, model):
        return add(f"{ctx.task.task}|features|{model}", "features", ctx, (model,))

    def supervisor(ctx, weak, seed):
        if weak.kind == "prompt":
            deps = ()
        elif weak.kind in ("model", "chain"):  # a chain's links are trained inside its one job
            deps = tuple(features(ctx, m) for m in weak.models)
        else:  # an ensemble waits for its members' weak models
            deps = tuple(supervisor(ctx, parse_supervisor(m), seed) for m in weak.models)
        return add(f"{ctx.task.task}|supervisor|{weak.name}|{seed}", "supervisor", ctx, (weak.name, seed), deps)

    probe = sweep.train.student_mode == "probe"  # fine-tuned students read texts, not features
    missing = [r for r in plan.runs if r.key not in plan.cached]
    for run in missing:  # features first, so they are computed before anything that reads them
        ctx = contexts[run.task]
        for model in ([] if run.weak.kind == "prompt" else list(run.weak.models)) + ([run.strong] if probe else []):
            features(ctx, model)
    for run in missing:
        ctx = contexts[run.task]
        sup = supervisor(ctx, run.weak, run.seed)
        ceiling = add(f"{run.task.task}|ceiling|{run.strong}|{run.seed}", "ceiling", ctx, (run.strong, run.seed),
                      (features(ctx, run.strong),) if probe else ())
        add(f"run|{run.key}", "run", ctx, (run,), (sup, ceiling))
    return list(jobs.values())


class _RowWriter:
    """Buffers the store rows of finished runs and flushes them in one transaction every few seconds; writes
    a group's PGR summary once all its seeds are in."""

    FLUSH_EVERY_S = 2.0

    def __init__(self, store: ResultsStore, plan: SweepPlan, cache_root: Path) -> None:
        self.store, self.plan, self.sweep = store, plan, plan.sweep
        self.stage_cache = StageCache(cache_root / "stages")
        self.seeds_of = {}
        for run in plan.runs:
            self.seeds_of.setdefault(run.group, set()).add(run.seed)
        self.results: dict[tuple, dict[int, dict]] = {}
        self.rows, self.summary_rows, self.failures, self.resolved = [], [], [], []
        self.summaries: list[dict] = []
        self.written: set[str] = set()  # row keys produced by this writer (floors and ceilings recur across runs)
        self.provenance = provenance()
        self.last_flush = time.perf_counter()

    def common(self, run: RunSpec) -> dict:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        return {"experiment": self.sweep.name, "created_at": now, "task": run.task.task}

    def add(self, run: RunSpec, result: dict) -> None:
        y = result["y_test"]
        metrics = json.loads(str(result["metrics"]))
        config = {"sweep": self.sweep.name, "task": dataclasses.asdict(run.task), "train": dataclasses.asdict(self.sweep.train),
                  "weak": run.weak.name, "strong": run.strong, "strong_features": dataclasses.asdict(self.sweep.models[run.strong]),
                  "method": {"name": run.method.name, **run.method.key()}, "seed": run.seed, "run_key": run.key}
        where = self.stage_cache.path(RUN_STAGE, run.key)
        base = {**self.common(run), "config": config, "provenance": self.provenance, "seed": run.seed}
        task_key = json.dumps(dataclasses.asdict(run.task), sort_keys=True)
        for role, weak, strong, loss, key in (
                ("floor", run.weak.name, "", None, [task_key, "floor", run.weak.name, run.seed]),
                ("ceiling", "", run.strong, None, [task_key, "ceiling", run.strong, run.seed]),
                ("transfer", run.weak.name, run.strong, run.method.name, [run.key])):
            row_key = stable_hash([self.sweep.name, *key])
            if row_key in self.written:  # a floor or ceiling shared with a run already written
                continue
            self.written.add(row_key)
            m = classification_metrics(y, result[role])
            extra = {"split_sizes": metrics["split_sizes"]}
            if role == "transfer":
                extra.update(metrics["refinement"], epochs_trained=metrics["epochs_trained"]["transfer"],
                             curve=learning_curve(result["curve_transfer"], y, result["floor"]))
            elif role == "ceiling":
                extra.update(epochs_trained=metrics["epochs_trained"]["ceiling"],
                             curve=learning_curve(result["curve_ceiling"], y, None))
            self.rows.append({**base, "run_key": row_key, "weak": weak, "strong": strong,
                              "loss": loss, "role": role, "accuracy": m["accuracy"], "auc": m["auc"],
                              "metrics": {**m, **extra}, "predictions": f"{where}#{role}",
                              "timings": {"fit_s": metrics["fit_s"][role]}})
        self.resolved.append(run.key)
        seeds = self.results.setdefault(run.group, {})
        seeds[run.seed] = {k: result[k] for k in ("y_test", "floor", "ceiling", "transfer")}
        if set(seeds) == self.seeds_of[run.group]:
            self._summarize(run)
        self._maybe_flush()

    def fail(self, run: RunSpec, error: str) -> None:
        self.failures.append({**self.common(run), "run_key": run.key, "weak": run.weak.name, "strong": run.strong,
                              "loss": run.method.name, "seed": run.seed, "stage": "run", "error": error})
        self._maybe_flush()

    def _summarize(self, run: RunSpec) -> None:
        seeds = self.results.pop(run.group)
        order = sorted(seeds)
        stack = {k: np.stack([seeds[s][k] for s in order]) for k in ("floor", "transfer", "ceiling")}
        row = {**self.common(run), "summary_key": stable_hash([self.sweep.name, *run.group]),
               "weak": run.weak.name, "strong": run.strong, "loss": run.method.name,
               "strong_to_strong": int(run.weak.name == run.strong),
               **summary_fields(seeds[order[0]]["y_test"], stack["floor"], stack["transfer"], stack["ceiling"],
                                n_bootstrap=self.sweep.n_bootstrap, seed=run.task.split_seed)}
        row["result"]["epoch_rule"] = run.method.epoch_rule
        self.summary_rows.append(row)
        self.summaries.append(row)

    def _maybe_flush(self) -> None:
        if time.perf_counter() - self.last_flush >= self.FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.summary_rows or self.failures or self.resolved:
            self.store.write(self.rows, self.summary_rows, failures=self.failures, resolved=self.resolved)
        self.rows, self.summary_rows, self.failures, self.resolved = [], [], [], []
        self.last_flush = time.perf_counter()
