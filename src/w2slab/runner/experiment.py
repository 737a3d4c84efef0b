"""Run one weak-to-strong experiment end to end: the function behind ``w2slab run``.

    >>> from w2slab import run_experiment
    >>> result = run_experiment(task="sst2", weak="minilm", strong="mpnet", losses="xent,logconf", seeds=3)
    >>> print(result.table())

Stages: load task → group split → features per model (cached per text) → weak model per (weak, seed) →
ceiling per (strong, seed) → transfer per (weak, strong, loss, seed) → metrics and PGR → results store.
Weak, ceiling and transfer outputs are cached under content hashes, so a rerun recomputes nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation import classification_metrics, imitation_metrics, pgr_with_ci
from ..evaluation.pgr import pgr_per_seed
from ..io import stable_hash, write_npz
from ..models import make_featurizer
from ..models import resolve as resolve_model
from ..paths import data_dir as resolve_data_dir
from ..paths import results_dir as resolve_results_dir
from ..supervisors.refine import parse_method
from ..supervisors.spec import parse_supervisor
from ..tasks import TaskData
from .config import ExperimentConfig
from .provenance import provenance
from .stages import StageContext, learning_curve
from .store import ResultsStore, check_writable

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ExperimentResult:
    """What ``run_experiment`` returns: summaries (one per weak, strong, loss), runs (one per trained model
    and seed), the split sizes, where rows and predictions were stored, and wall-clock timings in seconds."""

    config: ExperimentConfig
    experiment: str
    summaries: list[dict]
    runs: list[dict]
    split_sizes: dict[str, int]
    store_path: Path
    predictions_path: Path
    timings: dict[str, float]
    cache_hits: int = 0

    def table(self) -> str:
        from ..report.table import format_table

        return format_table(self)


def run_experiment(config: ExperimentConfig | None = None, *, data_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, results_dir: str | Path | None = None,
                   progress: bool = True, reuse: bool = True, task_data: TaskData | None = None,
                   **overrides) -> ExperimentResult:
    """Run every (weak, strong) pair × loss × seed of ``config`` (fields may also be given as keywords).

    data_dir: local dataset mirror (default ``W2SLAB_DATA_DIR``, else the Hugging Face Hub).
    cache_dir: features, installed models and stage outputs (default ``W2SLAB_CACHE_DIR`` or ~/.cache/w2slab).
    results_dir: where ``results.sqlite`` and predictions go (default ``./w2slab-results``).
    reuse: False recomputes weak, ceiling and transfer stages (features are always reused).
    task_data: your own converted task (``TaskData``) instead of loading ``config.task`` from the registry;
    ``config.n_examples`` still subsamples it.
    """
    config = dataclasses.replace(config or ExperimentConfig(), **overrides)
    config.validate(registered_task=task_data is None)
    data_dir = resolve_data_dir(data_dir)  # fail on a bad data directory before any model work
    results = check_writable(resolve_results_dir(results_dir))
    started = time.perf_counter()
    supervisors = [parse_supervisor(w) for w in config.weak]
    trained = [m for spec in supervisors if spec.kind != "prompt" for m in spec.models]
    models = list(dict.fromkeys(trained + list(config.strong)))
    for model in models:
        make_featurizer(model, cache=cache_dir)  # fail fast on unknown or uninstalled models
    for spec in supervisors:
        if spec.kind == "prompt":
            resolve_model(spec.models[0], cache=cache_dir)  # fail fast on an unknown or uninstalled LM
    stages = StageContext(config.task_settings(), config.train_settings(), config.feature_specs(models),
                          weak_models=frozenset(trained), data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                          reuse=reuse, task_data=task_data)
    task, split = stages.task, stages.split
    for model in models if config.student_mode == "probe" else trained:  # fine-tuned students read texts
        stages.features(model)
    timings: dict[str, float] = {f"features_{m}_s": s for m, s in stages.feature_seconds.items()}
    experiment = stable_hash({"config": config.to_dict(), "data": stages.data_key})[:16]
    n_fits = config.seeds * (len(config.weak) + len(config.strong) + len(config.weak) * len(config.strong)
                             * len(config.losses))
    bar = tqdm(total=n_fits, desc="weak, ceiling and transfer runs", disable=not progress or None, leave=False)
    stages.on_stage = lambda label: bar.update()
    y = task.labels
    weak_p = {(spec.name, seed): stages.supervisor(spec, seed) for spec in supervisors for seed in range(config.seeds)}
    ceiling_p, transfer_p, refinements = {}, {}, {}
    for strong in config.strong:
        for seed in range(config.seeds):
            ceiling_p[strong, seed] = stages.ceiling(strong, seed)["p_test"]
    by_name = {spec.name: spec for spec in supervisors}
    for weak, strong, loss, seed in itertools.product(config.weak, config.strong, config.losses, range(config.seeds)):
        out = stages.transfer(by_name[weak], strong, parse_method(loss), seed)
        transfer_p[weak, strong, loss, seed] = out["p_test"]
        refinements[weak, strong, loss, seed] = out["refinement"]
    bar.close()
    stage_seconds, epochs_run, curves = stages.seconds, stages.epochs, stages.curves
    predictions_path = results / "predictions" / f"{experiment}.npz"
    arrays = {"test_index": split.test, "y_test": y[split.test]}
    arrays.update({f"floor__{w}__s{s}": p[split.test] for (w, s), p in weak_p.items()})
    arrays.update({f"weak_labels_transfer__{w}__s{s}": p[split.transfer] for (w, s), p in weak_p.items()})
    arrays.update({f"ceiling__{m}__s{s}": p for (m, s), p in ceiling_p.items()})
    arrays.update({f"transfer__{w}__{m}__{loss}__s{s}": p for (w, m, loss, s), p in transfer_p.items()})
    write_npz(predictions_path, **arrays)

    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    y_test = y[split.test]
    row_common = {"experiment": experiment, "created_at": now, "task": config.task, "config": config.to_dict(),
                  "provenance": provenance()}
    runs = []
    for key, p in ([(("floor", w, "", None, s), weak_p[w, s][split.test]) for (w, s) in weak_p]
                   + [(("ceiling", "", m, None, s), ceiling_p[m, s]) for (m, s) in ceiling_p]
                   + [(("transfer", *k), p) for k, p in transfer_p.items()]):
        role, weak, strong, loss, seed = key
        metrics = classification_metrics(y_test, p)
        if role == "transfer":
            metrics.update(refinements[key[1:]])
        if key in curves and len(curves[key]):
            metrics["curve"] = learning_curve(curves[key], y_test, weak_p[weak, seed][split.test] if weak else None)
        array = {"floor": f"floor__{weak}__s{seed}", "ceiling": f"ceiling__{strong}__s{seed}",
                 "transfer": f"transfer__{weak}__{strong}__{loss}__s{seed}"}[role]
        runs.append({**row_common, "run_key": stable_hash([experiment, *key]), "weak": weak, "strong": strong,
                     "loss": loss, "seed": seed, "role": role, "accuracy": metrics["accuracy"], "auc": metrics["auc"],
                     "metrics": {**metrics, "split_sizes": split.sizes(), "epochs_trained": epochs_run.get(key)},
                     "predictions": f"{predictions_path}#{array}",
                     "timings": {"fit_s": stage_seconds[key]}})
    summaries = [_summary(config, row_common, y_test, weak_p, ceiling_p, transfer_p, split, w, m, loss)
                 for w in config.weak for m in config.strong for loss in config.losses]
    store_path = results / "results.sqlite"
    ResultsStore(store_path).write(runs, summaries)
    timings["total_s"] = time.perf_counter() - started
    timings["stages_s"] = float(sum(stage_seconds.values()))
    return ExperimentResult(config=config, experiment=experiment, summaries=summaries, runs=runs,
                            split_sizes=split.sizes(), store_path=store_path, predictions_path=predictions_path,
                            timings=timings, cache_hits=stages.cache.hits)


def _summary(config, row_common, y_test, weak_p, ceiling_p, transfer_p, split, weak, strong, loss) -> dict:
    seeds = range(config.seeds)
    floor = np.stack([weak_p[weak, s][split.test] for s in seeds])
    ceiling = np.stack([ceiling_p[strong, s] for s in seeds])
    transfer = np.stack([transfer_p[weak, strong, loss, s] for s in seeds])
    row = {**row_common, "summary_key": stable_hash([row_common["experiment"], weak, strong, loss]),
           "weak": weak, "strong": strong, "loss": loss, "strong_to_strong": int(weak == strong),
           **summary_fields(y_test, floor, transfer, ceiling, n_bootstrap=config.n_bootstrap, seed=config.split_seed)}
    row["result"]["epoch_rule"] = parse_method(loss).epoch_rule
    return row


def summary_fields(y_test: np.ndarray, floor: np.ndarray, transfer: np.ndarray, ceiling: np.ndarray, *,
                   n_bootstrap: int, seed: int) -> dict:
    """The PGR summary of one (weak, strong, method) over seeds: floor, transfer, ceiling accuracies, PGR with
    its bootstrap CI (or the reason it is undefined), per-seed spread and imitation metrics.
    y_test: (n,) labels; floor, transfer, ceiling: (seeds, n) predicted P(class 1) on the test set."""
    result = pgr_with_ci(y_test, floor, transfer, ceiling, n_boot=n_bootstrap, seed=seed)
    per_seed = {name: [classification_metrics(y_test, p) for p in preds]
                for name, preds in (("floor", floor), ("transfer", transfer), ("ceiling", ceiling))}
    spread = {f"{name}_{metric}_{stat}": float(fn([m[metric] for m in values]))
              for name, values in per_seed.items() for metric in ("accuracy", "auc")
              for stat, fn in (("mean", np.mean), ("sd", np.std))}
    spread["imitation"] = imitation_metrics(y_test, floor, transfer)
    # PGR of each seed's own floor, transfer and ceiling; the headline PGR is that of the seed-averaged
    # accuracies, which is stabler when a single seed's gap is small
    spread["pgr_per_seed"] = pgr_per_seed(y_test, floor, transfer, ceiling, n_boot=min(n_bootstrap, 500), seed=seed)
    return {"floor": result.floor, "transfer": result.transfer, "ceiling": result.ceiling, "pgr": result.pgr,
            "pgr_low": result.pgr_ci[0] if result.pgr_ci else None,
            "pgr_high": result.pgr_ci[1] if result.pgr_ci else None, "defined": int(result.defined),
            "reason": result.reason, "result": {**result.as_dict(), **spread}}
