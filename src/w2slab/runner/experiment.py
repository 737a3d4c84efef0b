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
import functools
import hashlib
import itertools
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation import classification_metrics, imitation_metrics, pgr, pgr_with_ci
from ..io import stable_hash, text_digests, write_npz
from ..models import make_featurizer
from ..models import resolve as resolve_model
from ..paths import cache_dir as resolve_cache_dir
from ..paths import data_dir as resolve_data_dir
from ..paths import results_dir as resolve_results_dir
from ..tasks import TaskData, load_task, subsample
from ..supervisors.label_models import combine
from ..supervisors.prompted import PromptedLM
from ..supervisors.refine import Method, confident_keep, entropy_keep, parse_method, pseudo_labels
from ..supervisors.spec import SupervisorSpec, parse_supervisor
from .cache import StageCache
from .config import ExperimentConfig
from .protocol import Split, cross_fitted, group_split, train_student, train_weak, transfer_targets
from .provenance import provenance
from .store import ResultsStore, check_writable

log = logging.getLogger(__name__)

STAGE_VERSION = 4  # bump when weak/student training changes, so cached stage outputs are not reused


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


class _Features:
    """Features of one model for a subset of the task's items; ``take(idx)`` maps item indices to rows."""

    def __init__(self, matrix, items: np.ndarray, n_items: int, cache_id: str) -> None:
        self.matrix = matrix
        self.rows = np.full(n_items, -1, dtype=np.int64)
        self.rows[items] = np.arange(len(items))
        self.cache_id = cache_id

    def take(self, idx: np.ndarray):
        rows = self.rows[idx]
        if (rows < 0).any():
            raise RuntimeError("internal error: features requested for items that were not featurised")
        return self.matrix[rows]


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
    featurizers = {m: make_featurizer(m, layer=config.layer, pooling=config.pooling, max_length=config.max_length,
                                      cache=cache_dir, progress=progress) for m in models}
    for spec in supervisors:
        if spec.kind == "prompt":
            resolve_model(spec.models[0], cache=cache_dir)  # fail fast on an unknown or uninstalled LM
    if task_data is None:
        task = load_task(config.task, data_dir=data_dir, n_examples=config.n_examples, seed=config.split_seed)
    else:
        task = subsample(task_data, config.n_examples, seed=config.split_seed)
    split = group_split(task.groups, test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                        seed=config.split_seed)
    data_key = stable_hash({"task": task.name, "texts": text_digests(task.texts).tobytes().hex(),
                            "texts_b": None if task.texts_b is None else text_digests(task.texts_b).tobytes().hex(),
                            "labels": task.labels.tolist(), "split": [s.tolist() for s in dataclasses.astuple(split)]})
    timings: dict[str, float] = {}
    features = _featurize(task, split, set(trained), featurizers, timings)
    cache = StageCache(resolve_cache_dir(cache_dir) / "stages" if reuse else None)
    experiment = stable_hash({"config": config.to_dict(), "data": data_key})[:16]
    n_fits = config.seeds * (len(config.weak) + len(config.strong) + len(config.weak) * len(config.strong)
                             * len(config.losses))
    stages = _Stages(config=config, task=task, split=split, features=features, cache=cache, data_key=data_key,
                     cache_dir=cache_dir, progress=progress,
                     bar=tqdm(total=n_fits, desc="weak, ceiling and transfer runs", disable=not progress or None,
                              leave=False))
    y = task.labels
    weak_p = {(spec.name, seed): stages.supervisor(spec, seed) for spec in supervisors for seed in range(config.seeds)}
    ceiling_p, transfer_p, refinements = {}, {}, {}
    for strong in config.strong:
        for seed in range(config.seeds):
            # The ceiling: the strong model trained on ground truth of B, selected on ground truth of val.
            truth = y[split.transfer].astype(np.float32), y[split.val].astype(np.float32)
            out = stages.student(("ceiling", "", strong, None, seed), parse_method("xent"), *truth)
            ceiling_p[strong, seed] = out["p_test"]
    for weak, strong, loss, seed in itertools.product(config.weak, config.strong, config.losses, range(config.seeds)):
        method = parse_method(loss)
        t_train, t_val = transfer_targets(weak_p[weak, seed], split)
        out = stages.student(("transfer", weak, strong, loss, seed), method, t_train, t_val)
        transfer_p[weak, strong, loss, seed] = out["p_test"]
        refinements[weak, strong, loss, seed] = _refinement_metrics(out, method, y, weak_p[weak, seed], split)
    stages.bar.close()
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
            metrics["curve"] = _learning_curve(curves[key], y_test, weak_p[weak, seed][split.test] if weak else None)
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
                            timings=timings, cache_hits=cache.hits)


@dataclasses.dataclass
class _Stages:
    """The cached stages of one experiment: supervisors' labels and students' predictions, with timings."""

    config: ExperimentConfig
    task: TaskData
    split: Split
    features: dict
    cache: StageCache
    data_key: str
    cache_dir: str | Path | None
    progress: bool
    bar: object
    seconds: dict = dataclasses.field(default_factory=dict)
    epochs: dict = dataclasses.field(default_factory=dict)
    curves: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def head_params(self) -> dict:
        return {k: getattr(self.config, k) for k in ("epochs", "batch_size", "lr", "weight_decay")}

    @functools.cached_property
    def labelled_rows(self) -> np.ndarray:
        """Items a supervisor labels: B, the validation slice and the test set."""
        return np.concatenate([self.split.transfer, self.split.val, self.split.test])

    def supervisor(self, spec: SupervisorSpec, seed: int) -> np.ndarray:
        """Soft labels (n,) of a supervisor on B, val and test (NaN elsewhere)."""
        t0 = time.perf_counter()
        if spec.kind == "model":
            p = self._weak_model(spec.models[0], seed)
        elif spec.kind == "ensemble":
            rows = self.labelled_rows
            p = np.full(len(self.task), np.nan, dtype=np.float32)
            # the label model sees only the members' votes on unlabelled items: no ground truth
            p[rows] = combine({m: self._weak_model(m, seed)[rows] for m in spec.models}, how=spec.combine)
        else:
            p = self._prompted(spec.models[0], spec.shots, seed)
        self.seconds["floor", spec.name, "", None, seed] = time.perf_counter() - t0
        self.bar.update()
        return p

    def _weak_model(self, model: str, seed: int) -> np.ndarray:
        """A weak model trained on A with ground truth."""
        cfg, split, feats, y = self.config, self.split, self.features[model], self.task.labels
        key = self.cache.key("weak", STAGE_VERSION, {"features": feats.cache_id, "head": cfg.weak_head,
                                                      "head_params": self.head_params, "seed": seed}, [self.data_key])

        def fit():
            p = np.full(len(y), np.nan, dtype=np.float32)
            p[self.labelled_rows] = train_weak(feats.take(split.weak), y[split.weak], self.task.groups[split.weak],
                                               feats.take(self.labelled_rows), head=cfg.weak_head,
                                               head_params=self.head_params, seed=seed)
            return {"p": p}

        return self.cache.get_or_compute("weak", key, fit)["p"]

    def _prompted(self, model: str, shots: int, seed: int) -> np.ndarray:
        """A prompted LM's calibrated label-word probabilities; few-shot examples come from half A (ground
        truth there is the weak side's, as for a weak model) and are drawn per seed, half from each class."""
        prompt = task_prompt(self.config.task, self.task)
        examples = ()
        if shots:
            rng = np.random.default_rng(seed)
            a = self.split.weak
            picks = [rng.choice(a[self.task.labels[a] == c], size=shots // 2, replace=False) for c in (0, 1)]
            order = rng.permutation(np.concatenate(picks))
            examples = tuple((self.task.texts[i], int(self.task.labels[i])) for i in order)
        key = self.cache.key("prompt", STAGE_VERSION, {"model": model, "prompt": prompt, "examples": examples,
                                                        "weights": prompt_fingerprint(model, self.cache_dir)},
                             [self.data_key])

        def score():
            lm = PromptedLM(model=model, template=prompt[0], label_words=prompt[1], examples=examples,
                            cache=self.cache_dir, progress=self.progress)
            p = np.full(len(self.task), np.nan, dtype=np.float32)
            p[self.labelled_rows] = lm.predict_proba([self.task.texts[i] for i in self.labelled_rows])[:, 1]
            return {"p": p}

        return self.cache.get_or_compute("prompt", key, score)["p"]

    def student(self, label: tuple, method: Method, t_train: np.ndarray, t_val: np.ndarray) -> dict:
        """A strong student on B trained on targets ``t_train`` (weak labels, or ground truth for the ceiling).

        The cache key holds the targets' *content*, so any change in how they were produced (a label model's
        code, a supervisor's settings) can never reuse a student trained on other targets.
        """
        strong, seed = label[2], label[4]
        targets = hashlib.sha256(np.ascontiguousarray(t_train, np.float32).tobytes()
                                 + np.ascontiguousarray(t_val, np.float32).tobytes()).hexdigest()[:24]
        key = self.cache.key("student", STAGE_VERSION, {"features": self.features[strong].cache_id,
                                                         "head": self.config.head, "head_params": self.head_params,
                                                         "method": method.name, "seed": seed, "targets": targets},
                             [self.data_key])
        fit = functools.partial(_fit_student, self.features[strong], self.split, t_train, t_val, method,
                                head=self.config.head, head_params=self.head_params, seed=seed)
        out = _timed(self.cache, "student", key, fit, self.seconds, label, self.bar)
        self.epochs[label] = len(out["val_agreement"])
        self.curves[label] = out["curve_p"]
        return out


def _featurize(task: TaskData, split: Split, weak_models: set[str], featurizers: dict, timings: dict) -> dict:
    """Weak models need every item (they train on A); strong-only models need B, the validation slice and test.

    Pairwise tasks: an item's features are features(text) - features(text_b), both from one ``transform`` call
    (so TF-IDF fits one vocabulary); a linear head on them is a Bradley-Terry reward model.
    """
    everything = np.arange(len(task))
    student_items = np.sort(np.concatenate([split.transfer, split.val, split.test]))
    out = {}
    for model, featurizer in featurizers.items():
        items = everything if model in weak_models else student_items
        texts = [task.texts[i] for i in items]
        t0 = time.perf_counter()
        if task.texts_b is None:
            matrix = featurizer.transform(texts)
        else:
            both = featurizer.transform(texts + [task.texts_b[i] for i in items])
            matrix = both[: len(items)] - both[len(items):]
        timings[f"features_{model}_s"] = time.perf_counter() - t0
        cache_id = "tfidf-v1" if model == "tfidf" else featurizer.store().root.name
        out[model] = _Features(matrix, items, len(task), cache_id)
    return out


def task_prompt(name: str, task: TaskData) -> tuple[str, tuple[str, str]]:
    """The task's LM prompt (template, label words); the generic yes/no prompt when the task has none."""
    from ..supervisors.prompted import DEFAULT_PROMPT, check_prompt
    from ..tasks import TASKS, get_spec
    from ..errors import ConfigError

    if task.texts_b is not None:
        raise ConfigError(f"task {name!r} is pairwise: a prompted supervisor scores single texts only")
    spec = get_spec(name) if name in TASKS else None
    prompt = (spec.prompt if spec is not None and spec.prompt else DEFAULT_PROMPT)
    check_prompt(*prompt)
    return prompt


def prompt_fingerprint(model: str, cache_dir) -> str:
    """Weights identity of a prompted LM, so its cached scores change when the weights do."""
    from ..models import resolve
    from ..models.features import model_fingerprint

    return model_fingerprint(resolve(model, cache=cache_dir))


def _fit_student(feats: _Features, split: Split, t_train: np.ndarray, t_val: np.ndarray, method: Method, *,
                 head: str, head_params: dict, seed: int) -> dict:
    """One student stage: optional label filter, the student, optional self-training rounds.

    Receives targets only (weak labels, or ground truth for the ceiling); returns test predictions, per-epoch
    curves, the filter's kept mask over B, and each round's predictions on test and on B.
    """
    X_train, X_val = feats.take(split.transfer), feats.take(split.val)
    X_predict = feats.take(np.concatenate([split.test, split.transfer]))  # test first, then B
    n_test = len(split.test)
    keep = np.ones(len(t_train), dtype=bool)
    if method.label_filter == "entropy":
        keep = entropy_keep(t_train)
    elif method.label_filter == "filter":
        keep = confident_keep(cross_fitted(X_train, t_train, head=head, head_params=head_params, loss=method.loss,
                                           seed=seed), t_train)
    p, history = train_student(X_train[keep], t_train[keep], X_val, t_val, X_predict, head=head,
                               head_params=head_params, loss=method.loss, loss_params=None, seed=seed)
    rounds = [p]
    for r in range(method.self_rounds):
        targets, train = pseudo_labels(rounds[-1][n_test:], t_train, seed=seed + 1000 * (r + 1),
                                       soft=method.soft_pseudo_labels)
        p, _ = train_student(X_train[train], targets[train], X_val, t_val, X_predict, head=head,
                             head_params=head_params, loss=method.loss, loss_params=None, seed=seed + r + 1)
        rounds.append(p)
    curve = [h["monitor_p"][:n_test] for h in history if "monitor_p" in h]
    return {"p_test": rounds[-1][:n_test], "val_agreement": np.array([h.get("val_agreement", np.nan) for h in history]),
            "curve_p": np.stack(curve).astype(np.float16) if curve else np.zeros((0, n_test), np.float16),
            "kept": keep, "round_p": np.stack(rounds).astype(np.float32)}


def _refinement_metrics(out: dict, method: Method, y: np.ndarray, weak_p: np.ndarray, split: Split) -> dict:
    """Reporting only (ground truth is used here, after training): how many weak labels a filter removed and
    how many of those were wrong; per self-training round, test accuracy, pseudo-label accuracy on B,
    agreement with the original supervisor and the share of class 1 (the error-amplification curve)."""
    y_b, weak_b = y[split.transfer], weak_p[split.transfer] >= 0.5
    metrics = {}
    removed = ~out["kept"]
    if method.label_filter:
        metrics["filter"] = {"removed": int(removed.sum()), "removed_share": float(removed.mean()),
                             "removed_actually_wrong": float((weak_b[removed] != (y_b[removed] == 1)).mean())
                             if removed.any() else None,
                             "weak_error_rate": float((weak_b != (y_b == 1)).mean())}
    n_test = len(split.test)
    if len(out["round_p"]) > 1:
        metrics["self_training"] = []
        for r, p in enumerate(out["round_p"]):
            test_hard, b_hard = p[:n_test] >= 0.5, p[n_test:] >= 0.5
            metrics["self_training"].append({
                "round": r, "test_accuracy": float((test_hard == (y[split.test] == 1)).mean()),
                "pseudo_label_accuracy": float((b_hard == (y_b == 1)).mean()),
                "agreement_with_supervisor": float((b_hard == weak_b).mean()), "share_of_1": float(b_hard.mean())})
    return metrics


def _learning_curve(curve_p: np.ndarray, y_test: np.ndarray, weak_test: np.ndarray | None) -> dict:
    """Per epoch: test accuracy against ground truth and, for transfer runs, agreement with the weak model's
    test predictions (the paper's overfitting-to-weak-labels curve). curve_p: (epochs, n_test)."""
    hard = curve_p >= 0.5
    out = {"test_accuracy": ((hard == (y_test == 1)).mean(1)).round(4).tolist()}
    if weak_test is not None:
        out["weak_agreement"] = ((hard == (weak_test >= 0.5)).mean(1)).round(4).tolist()
    return out


def _timed(cache: StageCache, stage: str, key: str, compute, seconds: dict, label: tuple, bar) -> dict:
    t0 = time.perf_counter()
    out = cache.get_or_compute(stage, key, compute)
    seconds[label] = time.perf_counter() - t0
    bar.update()
    return out


def _summary(config, row_common, y_test, weak_p, ceiling_p, transfer_p, split, weak, strong, loss) -> dict:
    seeds = range(config.seeds)
    floor = np.stack([weak_p[weak, s][split.test] for s in seeds])
    ceiling = np.stack([ceiling_p[strong, s] for s in seeds])
    transfer = np.stack([transfer_p[weak, strong, loss, s] for s in seeds])
    result = pgr_with_ci(y_test, floor, transfer, ceiling, n_boot=config.n_bootstrap, seed=config.split_seed)
    per_seed = {name: [classification_metrics(y_test, p) for p in preds]
                for name, preds in (("floor", floor), ("transfer", transfer), ("ceiling", ceiling))}
    spread = {f"{name}_{metric}_{stat}": float(fn([m[metric] for m in values]))
              for name, values in per_seed.items() for metric in ("accuracy", "auc")
              for stat, fn in (("mean", np.mean), ("sd", np.std))}
    spread["imitation"] = imitation_metrics(y_test, floor, transfer)
    # PGR of each seed's own floor, transfer and ceiling; the headline PGR is that of the seed-averaged
    # accuracies, which is stabler when a single seed's gap is small
    spread["pgr_per_seed"] = [pgr(*(per_seed[n][s]["accuracy"] for n in ("floor", "transfer", "ceiling")))
                              for s in range(config.seeds)]
    return {**row_common, "summary_key": stable_hash([row_common["experiment"], weak, strong, loss]),
            "weak": weak, "strong": strong, "loss": loss, "strong_to_strong": int(weak == strong),
            "floor": result.floor, "transfer": result.transfer, "ceiling": result.ceiling, "pgr": result.pgr,
            "pgr_low": result.pgr_ci[0] if result.pgr_ci else None,
            "pgr_high": result.pgr_ci[1] if result.pgr_ci else None, "defined": int(result.defined),
            "reason": result.reason, "result": {**result.as_dict(), **spread}}
