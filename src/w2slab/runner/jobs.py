"""The units an executor runs: one job per stage of a sweep (features, supervisor, ceiling, run).

Jobs are small picklable descriptions; ``execute`` runs one in any process (a local worker, a Ray worker, or
the driver itself). Each process keeps a few ``StageContext`` objects (task items, split, loaded features)
so consecutive jobs on one task do not reload them. Every job's output goes to the stage cache, written
atomically; a ``run`` job also returns its result to the driver, which alone writes the results store.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections import OrderedDict

import numpy as np

from ..models.features import FeatureSpec
from ..supervisors.spec import parse_supervisor
from .stages import STAGE_VERSION, StageContext, TaskSettings, TrainSettings

RUN_STAGE = "run"
_CONTEXTS: "OrderedDict[ContextSpec, StageContext]" = OrderedDict()
_MAX_CONTEXTS = 4  # per process: enough for a few tasks interleaved, bounded memory


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild a task's StageContext. feature_specs: sorted (name, FeatureSpec) pairs."""

    task: TaskSettings
    train: TrainSettings
    feature_specs: tuple[tuple[str, FeatureSpec], ...]
    weak_models: frozenset[str]
    data_dir: str | None
    cache_dir: str | None


@dataclasses.dataclass(frozen=True)
class Job:
    """kind: 'features' | 'supervisor' | 'ceiling' | 'run'; args: the kind's arguments; deps: job ids that
    must finish first (their outputs are read from the stage cache)."""

    id: str
    kind: str
    context: ContextSpec
    args: tuple
    deps: tuple[str, ...] = ()


def context(spec: ContextSpec) -> StageContext:
    """This process's StageContext for ``spec`` (built once, least recently used dropped beyond a few)."""
    if spec in _CONTEXTS:
        _CONTEXTS.move_to_end(spec)
        return _CONTEXTS[spec]
    ctx = StageContext(spec.task, spec.train, dict(spec.feature_specs), weak_models=spec.weak_models,
                       data_dir=spec.data_dir, cache_dir=spec.cache_dir)
    _CONTEXTS[spec] = ctx
    while len(_CONTEXTS) > _MAX_CONTEXTS:
        _CONTEXTS.popitem(last=False)
    return ctx


def execute(job: Job, threads: int | None = None):
    """Run one job; returns (value, seconds). ``threads`` caps torch's intra-op threads in this process."""
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    _quiet()
    t0 = time.perf_counter()
    ctx = context(job.context)
    if job.kind == "features":
        ctx.features(job.args[0])
        value = None
    elif job.kind == "supervisor":
        ctx.supervisor(parse_supervisor(job.args[0]), job.args[1])
        value = None
    elif job.kind == "ceiling":
        ctx.ceiling(*job.args)
        value = None
    elif job.kind == "run":
        value = run_result(ctx, job.args[0])
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    return value, time.perf_counter() - t0


def run_result(ctx: StageContext, run) -> dict[str, np.ndarray]:
    """One sweep run's result, cached under the run's key: test labels and indices, floor, ceiling and
    transfer predictions on test (n_test,), learning curves (epochs, n_test) and JSON metrics."""

    def compute():
        split, y = ctx.split, ctx.task.labels
        weak_p = ctx.supervisor(run.weak, run.seed)
        ceiling = ctx.ceiling(run.strong, run.seed)
        transfer = ctx.transfer(run.weak, run.strong, run.method, run.seed)
        metrics = {"refinement": transfer["refinement"], "split_sizes": split.sizes(),
                   "epochs_trained": {"ceiling": int(len(ceiling["val_agreement"])),
                                      "transfer": int(len(transfer["val_agreement"]))},
                   "fit_s": {role: ctx.seconds.get(label) for role, label in (
                       ("floor", ("floor", run.weak.name, "", None, run.seed)),
                       ("ceiling", ("ceiling", "", run.strong, None, run.seed)),
                       ("transfer", ("transfer", run.weak.name, run.strong, run.method.name, run.seed)))}}
        return {"test_index": split.test, "y_test": y[split.test], "floor": weak_p[split.test],
                "ceiling": ceiling["p_test"], "transfer": transfer["p_test"], "curve_ceiling": ceiling["curve_p"],
                "curve_transfer": transfer["curve_p"], "metrics": np.array(json.dumps(metrics))}

    return ctx.cache.get_or_compute(RUN_STAGE, run.key, compute, meta={"run": run.label(), "version": STAGE_VERSION})


def warm_up() -> None:
    """Import what every job needs (torch, scikit-learn, transformers): a fresh worker pays this once, early."""
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401

    _quiet()


@functools.cache
def _quiet() -> None:
    """Worker processes print no library progress bars (the driver shows sweep progress)."""
    import os
    import warnings

    warnings.filterwarnings("ignore", module="transformers")  # deprecation notices, once per worker
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # transformers is a dependency; this only guards odd installs
        pass
