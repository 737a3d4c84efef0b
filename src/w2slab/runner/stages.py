"""The cached stages of the protocol on one task: features → supervisor labels → ceiling and transfer students.

A ``StageContext`` holds one task's items and split and computes each stage on demand. Stage outputs are
stored in the ``StageCache`` under content hashes of their inputs (features by weights fingerprint, labels
and students by the *content* of their targets) plus the code version, so ``run_experiment`` and a sweep's
workers share every result, and a killed process loses at most the stage it was computing.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError
from ..io import stable_hash, text_digests
from ..models import make_featurizer
from ..models.features import FeatureSpec
from ..paths import cache_dir as resolve_cache_dir
from ..supervisors.label_models import combine
from ..supervisors.prompted import PromptedLM
from ..supervisors.refine import Method, confident_keep, entropy_keep, parse_method, pseudo_labels
from ..supervisors.spec import SupervisorSpec
from ..tasks import TaskData, load_task, subsample
from .cache import StageCache
from .config import TaskSettings, TrainSettings
from .protocol import Split, check_split, cross_fitted, group_split, train_student, train_weak, transfer_targets

STAGE_VERSION = 6  # bump when weak/student training changes, so cached stage outputs are not reused


class StageContext:
    """One task's items, split and lazily computed features, with every training stage as a cached method.

    feature_specs: model name (a zoo name, or an alias from a sweep file) → FeatureSpec of its extractor.
    weak_models: names trained as weak models (their features cover every item; others skip half A).
    reuse=False recomputes training stages (features are always reused).
    """

    def __init__(self, task: TaskSettings, train: TrainSettings, feature_specs: Mapping[str, FeatureSpec], *,
                 weak_models: frozenset[str] = frozenset(), data_dir=None, cache_dir=None, progress: bool = False,
                 reuse: bool = True, task_data: TaskData | None = None) -> None:
        self.settings, self.train, self.feature_specs = task, train, dict(feature_specs)
        self.weak_models, self.cache_dir, self.progress = weak_models, cache_dir, progress
        if task_data is None:
            self.task = load_task(task.task, data_dir=data_dir, n_examples=task.n_examples, seed=task.split_seed)
        else:
            self.task = subsample(task_data, task.n_examples, seed=task.split_seed)
        self.split = group_split(self.task.groups, test_fraction=task.test_fraction, val_fraction=task.val_fraction,
                                 seed=task.split_seed)
        check_split(self.split, self.task.labels, self.task.name)
        t = self.task
        self.data_key = stable_hash({"task": t.name, "texts": text_digests(t.texts).tobytes().hex(),
                                     "texts_b": None if t.texts_b is None else text_digests(t.texts_b).tobytes().hex(),
                                     "labels": t.labels.tolist(),
                                     "split": [s.tolist() for s in dataclasses.astuple(self.split)]})
        self.cache = StageCache(resolve_cache_dir(cache_dir) / "stages" if reuse else None)
        self.seconds: dict[tuple, float] = {}  # stage label → wall seconds (a cache hit counts its load time)
        self.epochs: dict[tuple, int] = {}
        self.curves: dict[tuple, np.ndarray] = {}
        self.feature_seconds: dict[str, float] = {}
        self.on_stage = None  # optional callable(label) after every supervisor / student stage
        self._features: dict[str, _Features] = {}
        self._labels: dict[tuple, np.ndarray] = {}

    # -- features ----------------------------------------------------------------------------------------
    @functools.cached_property
    def labelled_rows(self) -> np.ndarray:
        """Items a supervisor labels: B, the validation slice and the test set."""
        return np.concatenate([self.split.transfer, self.split.val, self.split.test])

    def features(self, model: str) -> "_Features":
        """Features of ``model`` for the items it needs (all items for weak models; B, val and test otherwise).

        Pairwise tasks: an item's features are features(text) - features(text_b), both from one ``transform``
        call (so TF-IDF fits one vocabulary); a linear head on them is a Bradley-Terry reward model.
        """
        if model not in self._features:
            spec = self.feature_specs.get(model) or FeatureSpec(model=model)
            featurizer = make_featurizer(spec.model, layer=spec.layer, pooling=spec.pooling,
                                         max_length=spec.max_length, cache=self.cache_dir, progress=self.progress)
            task = self.task
            items = (np.arange(len(task)) if model in self.weak_models
                     else np.sort(np.concatenate([self.split.transfer, self.split.val, self.split.test])))
            texts = [task.texts[i] for i in items]
            t0 = time.perf_counter()
            if task.texts_b is None:
                matrix = featurizer.transform(texts)
            else:
                both = featurizer.transform(texts + [task.texts_b[i] for i in items])
                matrix = both[: len(items)] - both[len(items):]
            self.feature_seconds[model] = time.perf_counter() - t0
            cache_id = "tfidf-v1" if spec.model == "tfidf" else featurizer.store().root.name
            self._features[model] = _Features(matrix, items, len(task), cache_id)
        return self._features[model]

    # -- supervisors -------------------------------------------------------------------------------------
    def supervisor(self, spec: SupervisorSpec, seed: int) -> np.ndarray:
        """Soft labels (n,) of a supervisor on B, val and test (NaN elsewhere); kept in memory once computed."""
        if (spec, seed) in self._labels:
            return self._labels[spec, seed]
        t0 = time.perf_counter()
        if spec.kind == "model":
            p = self._weak_model(spec.models[0], seed)
        elif spec.kind == "ensemble":
            rows = self.labelled_rows
            p = np.full(len(self.task), np.nan, dtype=np.float32)
            # the label model sees only the members' votes on unlabelled items: no ground truth
            p[rows] = combine({m: self._weak_model(m, seed)[rows] for m in spec.models}, how=spec.combine)
        elif spec.kind == "chain":
            p = self._weak_model(spec.models[0], seed)
            for model in spec.models[1:]:
                p = self._bootstrap_step(model, p, seed)
        else:
            p = self._prompted(spec.models[0], spec.shots, seed)
        self._done(("floor", spec.name, "", None, seed), t0)
        self._labels[spec, seed] = p
        return p

    def _weak_model(self, model: str, seed: int) -> np.ndarray:
        """A weak model trained on A with ground truth."""
        split, feats, y = self.split, self.features(model), self.task.labels
        key = self.cache.key("weak", STAGE_VERSION, {"features": feats.cache_id, "head": self.train.weak_head,
                                                      "head_params": self.train.head_params(), "seed": seed},
                             [self.data_key])

        def fit():
            p = np.full(len(y), np.nan, dtype=np.float32)
            p[self.labelled_rows] = train_weak(feats.take(split.weak), y[split.weak], self.task.groups[split.weak],
                                               feats.take(self.labelled_rows), head=self.train.weak_head,
                                               head_params=self.train.head_params(), seed=seed)
            return {"p": p}

        return self.cache.get_or_compute("weak", key, fit)["p"]

    def _bootstrap_step(self, model: str, labels: np.ndarray, seed: int) -> np.ndarray:
        """One link of a bootstrapping chain: ``model`` trained on the previous link's labels of B relabels B,
        val and test. Labels on B are cross-fitted (2 folds by group: each item labelled by a model that did not
        train on it), so the next link learns this model's generalisation, not an echo of its training targets;
        val and test get the mean of the *same* two fold models, so the chain's floor measures the labellers
        whose labels the student learns from. labels: (n,) soft labels; returns the same shape."""
        split = self.split
        inputs, head, params, identity = self.student_inputs(model)
        key = self.cache.key("bootstrap", STAGE_VERSION, {**identity, "seed": seed,
                                                           "labels": _digest(labels[self.labelled_rows])},
                             [self.data_key])

        def fit():
            X_b, t_b = inputs.take(split.transfer), labels[split.transfer]
            p = np.full(len(self.task), np.nan, dtype=np.float32)
            rest = np.concatenate([split.val, split.test])
            p[split.transfer], p[rest] = cross_fitted(X_b, t_b, head=head, head_params=params, loss="xent", seed=seed,
                                                      folds=2, groups=self.task.groups[split.transfer],
                                                      X_extra=inputs.take(rest))
            return {"p": p}

        return self.cache.get_or_compute("bootstrap", key, fit)["p"]

    def _prompted(self, model: str, shots: int, seed: int) -> np.ndarray:
        """A prompted LM's calibrated label-word probabilities; few-shot examples come from half A (ground
        truth there is the weak side's, as for a weak model) and are drawn per seed, half from each class."""
        prompt = task_prompt(self.settings.task, self.task)
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

    # -- students ----------------------------------------------------------------------------------------
    def ceiling(self, strong: str, seed: int) -> dict:
        """The strong model trained on ground truth of B, selected on ground truth of val."""
        y, split = self.task.labels, self.split
        return self.student(("ceiling", "", strong, None, seed), parse_method("xent"),
                            y[split.transfer].astype(np.float32), y[split.val].astype(np.float32))

    def transfer(self, weak: SupervisorSpec, strong: str, method: Method, seed: int) -> dict:
        """The strong student trained on the supervisor's soft labels of B, selected on its labels of val;
        adds ``refinement`` (filter and self-training statistics, computed after training)."""
        weak_p = self.supervisor(weak, seed)
        t_train, t_val = transfer_targets(weak_p, self.split)
        if method.oracle_stopping:  # an explicitly marked upper bound: epochs chosen on ground truth
            t_val = self.task.labels[self.split.val].astype(np.float32)
        out = self.student(("transfer", weak.name, strong, method.name, seed), method, t_train, t_val)
        return {**out, "refinement": refinement_metrics(out, method, self.task.labels, weak_p, self.split)}

    def student(self, label: tuple, method: Method, t_train: np.ndarray, t_val: np.ndarray) -> dict:
        """A strong student on B trained on targets ``t_train`` (weak labels, or ground truth for the ceiling).

        The cache key holds the targets' *content*, so any change in how they were produced (a label model's
        code, a supervisor's settings) can never reuse a student trained on other targets.
        """
        strong, seed = label[2], label[4]
        t0 = time.perf_counter()
        inputs, head, params, identity = self.student_inputs(strong, generative=method.generative)
        key = self.cache.key("student", STAGE_VERSION, {**identity, "method": method.key(), "seed": seed,
                                                         "targets": _digest(t_train, t_val)}, [self.data_key])
        fit = functools.partial(_fit_student, inputs, self.split, t_train, t_val, method, head=head,
                                head_params=params, seed=seed, groups=self.task.groups[self.split.transfer])
        out = self.cache.get_or_compute("student", key, fit)
        self.epochs[label] = len(out["val_agreement"])
        self.curves[label] = out["curve_p"]
        self._done(label, t0)
        return out

    def student_inputs(self, model: str, *, generative: bool = False) -> tuple:
        """What a student of ``model`` trains on: (rows of features, or of texts for fine-tuning; head name;
        head parameters; the identity of all that for cache keys — the weights' fingerprint stands for a
        backbone's path, which says where weights lie, not what they are)."""
        if self.train.student_mode == "probe":
            if generative:
                raise ConfigError("generative finetuning ('+gen') needs student_mode 'finetune' or 'lora'")
            feats = self.features(model)
            params = self.train.head_params()
            return feats, self.train.head, params, _identity(feats.cache_id, self.train.head, params)
        from ..models import resolve
        from ..models.features import model_fingerprint

        if self.task.texts_b is not None:
            raise ConfigError(f"task {self.task.name!r} is pairwise: fine-tuned students take single texts "
                              "(use student_mode 'probe')")
        spec = self.feature_specs.get(model) or FeatureSpec(model=model)
        backbone = resolve(spec.model, cache=self.cache_dir) if spec.model != "tfidf" else "tfidf"
        if generative:
            from ..training.generative import generative_finetune

            unlabelled = [self.task.texts[i] for i in np.concatenate([self.split.weak, self.split.transfer])]
            backbone = generative_finetune(backbone, unlabelled, max_length=self.train.ft_max_length,
                                           seed=self.settings.split_seed, cache=self.cache_dir)
        params = {**self.train.finetune_params(), "pooling": spec.pooling}
        identity = _identity("tfidf" if backbone == "tfidf" else model_fingerprint(backbone), "finetune", params)
        return self.texts, "finetune", {**params, "backbone": backbone}, identity

    @functools.cached_property
    def texts(self) -> "_Features":
        """Every item's text as rows (an object array), what fine-tuned students train on."""
        n = len(self.task)
        return _Features(np.array(self.task.texts, dtype=object), np.arange(n), n, "texts")

    def _done(self, label: tuple, t0: float) -> None:
        self.seconds[label] = time.perf_counter() - t0
        if self.on_stage is not None:
            self.on_stage(label)


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


def _identity(inputs: str, head: str, head_params: dict) -> dict:
    """The part of a student's cache key that names its inputs and learner."""
    return {"inputs": inputs, "head": head, "head_params": head_params}


def _digest(*arrays: np.ndarray) -> str:
    """Content hash of float arrays (targets), for cache keys."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:24]


def task_prompt(name: str, task: TaskData) -> tuple[str, tuple[str, str]]:
    """The task's LM prompt (template, label words); the generic yes/no prompt when the task has none."""
    from ..supervisors.prompted import DEFAULT_PROMPT, check_prompt
    from ..tasks import TASKS, get_spec

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


def self_training_seeds(seed: int, round_: int) -> tuple[int, int]:
    """(pseudo-label seed, student seed) of self-training round ``round_`` (0-based) of a run seeded ``seed``:
    hashed from both, so they never equal another run's own seed (seed + r + 1 did: round 0 of seed 0 trained
    exactly like seed 1's student)."""
    a, b = np.random.SeedSequence([seed, round_ + 1, 0x5E1F]).generate_state(2)
    return int(a >> 1) + 2**20, int(b >> 1) + 2**20  # above any seed a user counts to


def _fit_student(feats: _Features, split: Split, t_train: np.ndarray, t_val: np.ndarray, method: Method, *,
                 head: str, head_params: dict, seed: int, groups: np.ndarray | None = None) -> dict:
    """One student stage: optional label filter, the student, optional self-training rounds.

    Receives targets only (weak labels, or ground truth for the ceiling); returns test predictions, per-epoch
    curves, the filter's kept mask over B, and each round's predictions on test and on B.
    """
    X_train, X_val = feats.take(split.transfer), feats.take(split.val)
    X_predict = feats.take(np.concatenate([split.test, split.transfer]))  # test first, then B
    n_test = len(split.test)
    train = functools.partial(train_student, head=head, head_params=head_params, loss=method.loss,
                              loss_params=method.loss_kwargs, mixup=method.mixup, select=not method.final_epoch)
    keep = np.ones(len(t_train), dtype=bool)
    if method.label_filter == "entropy":
        keep = entropy_keep(t_train, drop_fraction=method.entropy_drop)
    elif method.label_filter == "filter":
        keep = confident_keep(cross_fitted(X_train, t_train, head=head, head_params=head_params, loss=method.loss,
                                           loss_params=method.loss_kwargs, seed=seed, groups=groups), t_train)
    p, history = train(X_train[keep], t_train[keep], X_val, t_val, X_predict, seed=seed)
    rounds = [p]
    for r in range(method.self_rounds):
        label_seed, student_seed = self_training_seeds(seed, r)
        targets, kept, supervised = pseudo_labels(rounds[-1][n_test:], t_train, seed=label_seed,
                                                  keep=method.self_keep, supervised_share=method.supervised_share,
                                                  soft=method.soft_pseudo_labels)
        p, _ = train(X_train[kept], targets[kept], X_val, t_val, X_predict, seed=student_seed,
                     anchor=supervised[kept], anchor_share=method.min_supervised_per_batch)
        rounds.append(p)
    curve = [h["monitor_p"][:n_test] for h in history if "monitor_p" in h]
    return {"p_test": rounds[-1][:n_test], "val_agreement": np.array([h.get("val_agreement", np.nan) for h in history]),
            "curve_p": np.stack(curve).astype(np.float16) if curve else np.zeros((0, n_test), np.float16),
            "kept": keep, "round_p": np.stack(rounds).astype(np.float32)}


def refinement_metrics(out: dict, method: Method, y: np.ndarray, weak_p: np.ndarray, split: Split) -> dict:
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


def learning_curve(curve_p: np.ndarray, y_test: np.ndarray, weak_test: np.ndarray | None) -> dict:
    """Per epoch: test accuracy against ground truth and, for transfer runs, agreement with the weak model's
    test predictions (the paper's overfitting-to-weak-labels curve). curve_p: (epochs, n_test)."""
    hard = curve_p >= 0.5
    out = {"test_accuracy": ((hard == (y_test == 1)).mean(1)).round(4).tolist()}
    if weak_test is not None:
        out["weak_agreement"] = ((hard == (weak_test >= 0.5)).mean(1)).round(4).tolist()
    return out
