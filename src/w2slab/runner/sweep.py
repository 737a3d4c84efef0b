"""Sweeps: a grid of weak-to-strong runs (tasks × (weak, strong) pairs × methods × seeds) in one TOML file.

    name = "ladder"                      # results are stored under this experiment name (default: file stem)
    tasks = ["sst2", "boolq"]           # or { name = "sst2", n_examples = 2000 }: that task's own data settings
    ladder = ["tfidf", "minilm-l3", "minilm", "mpnet"]   # weak → strong order
    pairs = "all"                        # every weak < strong of the ladder; "adjacent": neighbours only
    methods = ["xent", "logconf", { name = "logconf-0.75", method = "logconf", aux_coef = 0.75 }]
    seeds = 3                            # a count (0 … 2) or a list [0, 7]
    n_examples = 1000

    [[models]]                           # an alias: a zoo model with other extractor settings
    name = "minilm-l3"
    base = "minilm"
    layer = 3

Instead of ``ladder`` give ``weak`` and ``strong`` lists (every combination) or ``pairs`` as a list of
[weak, strong]; a weak entry may be any supervisor string (``a+b@ds``, ``prompt:smollm2``). Other keys:
``split_seed``, ``test_fraction``, ``val_fraction``, ``head``, ``weak_head``, ``epochs``, ``batch_size``,
``lr``, ``weight_decay``, ``layer``, ``pooling``, ``max_length`` (defaults of models without an entry),
``n_bootstrap``, and the fine-tuning path's ``student_mode`` ("probe", "finetune", "lora"), ``ft_epochs``,
``ft_batch_size``, ``ft_grad_accum``, ``ft_lr``, ``ft_max_length``, ``lora_rank``, ``lora_alpha``. A run is one (task, weak, strong, method, seed); its key hashes all of that, the
extractor settings of its models and the code version, so planning needs no data and no model.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, W2SError
from ..io import stable_hash
from ..models.features import FeatureSpec
from ..supervisors.refine import Method, make_method
from ..supervisors.spec import SupervisorSpec, parse_supervisor
from .config import ExperimentConfig
from .stages import STAGE_VERSION, TaskSettings, TrainSettings

_D = ExperimentConfig()
# key → (accepted types, default); a default of None means "required" for tasks only
SWEEP_KEYS: dict[str, tuple[tuple[type, ...], object]] = {
    "name": ((str,), None), "tasks": ((list,), None), "ladder": ((list,), None), "pairs": ((str, list), None),
    "weak": ((list,), None), "strong": ((list,), None), "methods": ((list,), ["xent"]), "seeds": ((int, list), 1),
    "models": ((list,), []), "n_examples": ((int,), _D.n_examples), "split_seed": ((int,), _D.split_seed),
    "test_fraction": ((float,), _D.test_fraction), "val_fraction": ((float,), _D.val_fraction),
    "head": ((str,), _D.head), "weak_head": ((str,), _D.weak_head), "epochs": ((int,), _D.epochs),
    "batch_size": ((int,), _D.batch_size), "lr": ((float,), _D.lr), "weight_decay": ((float,), _D.weight_decay),
    "layer": ((int,), _D.layer), "pooling": ((str,), _D.pooling), "max_length": ((int,), _D.max_length),
    "n_bootstrap": ((int,), _D.n_bootstrap), "student_mode": ((str,), _D.student_mode),
    "ft_epochs": ((int,), _D.ft_epochs), "ft_batch_size": ((int,), _D.ft_batch_size),
    "ft_grad_accum": ((int,), _D.ft_grad_accum), "ft_lr": ((float,), _D.ft_lr),
    "ft_max_length": ((int,), _D.ft_max_length), "lora_rank": ((int,), _D.lora_rank),
    "lora_alpha": ((int,), _D.lora_alpha),
}
_TRAIN_KEYS = ("head", "weak_head", "epochs", "batch_size", "lr", "weight_decay", "student_mode", "ft_epochs",
               "ft_batch_size", "ft_grad_accum", "ft_lr", "ft_max_length", "lora_rank", "lora_alpha")
MODEL_KEYS = {"name": (str,), "base": (str,), "layer": (int,), "pooling": (str,), "max_length": (int,)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: the strong student trained on one supervisor's labels of one task, for one seed."""

    task: TaskSettings
    weak: SupervisorSpec
    strong: str
    method: Method
    seed: int
    key: str

    @property
    def group(self) -> tuple[str, str, str, str]:
        """The PGR summary this run belongs to: (task, weak, strong, method name)."""
        return self.task.task, self.weak.name, self.strong, self.method.name

    def label(self) -> str:
        return f"{self.task.task}: {self.weak.name} → {self.strong}, {self.method.name}, seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed, validated sweep file. ``models`` maps every model name the sweep uses to its extractor."""

    name: str
    tasks: tuple[TaskSettings, ...]
    pairs: tuple[tuple[SupervisorSpec, str], ...]
    methods: tuple[Method, ...]
    seeds: tuple[int, ...]
    train: TrainSettings
    models: dict[str, FeatureSpec]
    n_bootstrap: int

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Sweep":
        """Read and validate a TOML sweep file; ConfigError names the offending key."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"sweep file {str(path)!r} is a directory, not a TOML file")
        if not path.is_file():
            raise ConfigError(f"sweep file {str(path)!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"sweep file {path.name}: not valid TOML ({err})") from None
        return cls.from_dict(raw, default_name=path.stem, where=path.name)

    @classmethod
    def from_dict(cls, raw: dict, *, default_name: str = "sweep", where: str = "sweep") -> "Sweep":
        """The same from an already-parsed dict (what a notebook would write); errors start with ``where``."""
        try:
            return cls._parse(raw, default_name, where)
        except W2SError as err:
            if str(err).startswith(where):
                raise
            raise type(err)(f"{where}: {err}") from None

    @classmethod
    def _parse(cls, raw: dict, default_name: str, where: str) -> "Sweep":
        _check_keys(raw, SWEEP_KEYS, where)
        get = {k: raw.get(k, default) for k, (_, default) in SWEEP_KEYS.items()}
        if not raw.get("tasks"):
            raise ConfigError(f"{where}: 'tasks' is missing or empty")
        tasks = tuple(_task_settings(t, get, where) for t in get["tasks"])
        if len({t.task for t in tasks}) != len(tasks):
            raise ConfigError(f"{where}: a task is listed twice in 'tasks'")
        aliases = _model_aliases(get["models"], get, where)
        pairs = _pairs(raw, where)
        methods = tuple(make_method(m) for m in get["methods"])
        names = [m.name for m in methods]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: two methods share the name {next(n for n in names if names.count(n) > 1)!r}")
        seeds = get["seeds"]
        seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: 'seeds' must be a count >= 1 or a list of distinct integers >= 0")
        train = TrainSettings(**{k: float(get[k]) if k in ("lr", "weight_decay", "ft_lr") else get[k]
                                 for k in _TRAIN_KEYS})
        used = {m for weak, strong in pairs if weak.kind != "prompt" for m in (*weak.models, strong)}
        used |= {strong for _, strong in pairs}
        models = {m: aliases.get(m) or FeatureSpec(model=m, layer=get["layer"], pooling=get["pooling"],
                                                   max_length=get["max_length"]) for m in sorted(used)}
        from ..checks import check_safe_name

        check_safe_name(str(get["name"] or default_name), f"{where}: sweep name")
        for alias in aliases:
            check_safe_name(alias, f"{where}: model alias")
        sweep = cls(name=str(get["name"] or default_name), tasks=tasks, pairs=pairs, methods=methods, seeds=seeds,
                    train=train, models=models, n_bootstrap=get["n_bootstrap"])
        sweep.validate(where)
        return sweep

    def validate(self, where: str = "sweep") -> None:
        """Check names against the registries (tasks, models, heads) and settings through ExperimentConfig."""
        from ..models.zoo import check_model_name

        for spec in self.models.values():
            if spec.model != "tfidf":
                try:
                    check_model_name(spec.model)
                except W2SError as err:
                    raise type(err)(f"{where}: model {spec.model!r}: {err}") from None
        if not self.pairs or not self.methods or not self.tasks:
            raise ConfigError(f"{where}: the grid is empty (no weak/strong pair, method or task)")
        from .config import check_methods

        for task in self.tasks:  # the same checks as a single experiment (task names, heads, fractions, …);
            # models and their layers were checked above through their extractors (aliases resolved)
            ExperimentConfig(task=task.task, weak=("tfidf",), strong=(self.models[self.pairs[0][1]].model,),
                             losses=("xent",), seeds=len(self.seeds), n_examples=task.n_examples,
                             split_seed=task.split_seed, test_fraction=task.test_fraction,
                             val_fraction=task.val_fraction, n_bootstrap=self.n_bootstrap,
                             **dataclasses.asdict(self.train)).validate()
        check_methods(self.methods, self.train)

    @property
    def weak_models(self) -> frozenset[str]:
        """Models trained as weak models somewhere in the sweep (their features cover every item)."""
        return frozenset(m for weak, _ in self.pairs if weak.kind != "prompt" for m in weak.models)

    def runs(self, data_dir: str | os.PathLike | None = None) -> list[RunSpec]:
        """Every run of the grid, in task, pair, method, seed order, each with its content key.

        The key holds the task's source *content* (files' sizes and head/tail digests, the conversion version —
        not the data folder's path: the same files elsewhere are the same runs) and each model's weights
        identity (package versions, folder fingerprint), never a model's location."""
        from ..models.zoo import model_identity
        from ..tasks import source_identity

        head = json.dumps({"version": [__version__, STAGE_VERSION], "train": dataclasses.asdict(self.train)},
                          sort_keys=True)
        identity = {m: model_identity(s.model) for m, s in self.models.items()}
        weak_json = {w.name: json.dumps(self._supervisor_identity(w, identity), sort_keys=True) for w, _ in self.pairs}
        model_json = {m: json.dumps({**dataclasses.asdict(s), "model": identity[m]}, sort_keys=True)
                      for m, s in self.models.items()}
        method_json = {m.name: json.dumps(m.key(), sort_keys=True) for m in self.methods}
        out = []
        for task in self.tasks:
            task_json = json.dumps({**dataclasses.asdict(task), "source": source_identity(task.task, data_dir)},
                                   sort_keys=True)
            for weak, strong in self.pairs:
                for method in self.methods:
                    prefix = "|".join((head, task_json, weak_json[weak.name], model_json[strong],
                                       method_json[method.name]))
                    out.extend(RunSpec(task, weak, strong, method, seed, stable_hash(f"{prefix}|{seed}"))
                               for seed in self.seeds)
        return out

    def _supervisor_identity(self, weak: SupervisorSpec, identity: dict[str, str]) -> dict:
        """What determines a supervisor's labels: its kind and its members' extractors and weights (not names)."""
        if weak.kind == "prompt":
            from ..models.zoo import model_identity

            return {"kind": "prompt", "model": model_identity(weak.models[0]), "shots": weak.shots}
        return {"kind": weak.kind, "combine": weak.combine,
                "members": [{**dataclasses.asdict(self.models[m]), "model": identity[m]} for m in weak.models]}


def load_sweep(sweep: "Sweep | str | os.PathLike | dict") -> Sweep:
    """A Sweep from a Sweep, a TOML path or a dict."""
    if isinstance(sweep, Sweep):
        return sweep
    if isinstance(sweep, dict):
        return Sweep.from_dict(sweep)
    return Sweep.from_file(sweep)


def _check_keys(raw: dict, schema: dict, where: str) -> None:
    for key, value in raw.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(schema)})"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        types = schema[key][0]
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            continue  # an integer where a float is expected is fine (lr = 1)
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join({list: "a list", str: "a string", int: "an integer", float: "a number"}[t]
                                   for t in types)
            raise ConfigError(f"{where}: {key!r} must be {expected}, got {value!r}")


def _strings(values: list, key: str, where: str) -> list[str]:
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{where}: {key!r} must be a list of names (strings)")
    return [v.strip() for v in values]


TASK_KEYS = {"name": (str,), "n_examples": (int,), "split_seed": (int,), "test_fraction": (float,),
             "val_fraction": (float,)}


def _task_settings(entry: str | dict, get: dict, where: str) -> TaskSettings:
    """A ``tasks`` entry: a name, or an inline table ``{ name = "sst2", n_examples = 2000 }`` whose data settings
    replace the sweep's for that task (spend items where a gap can be resolved, not on tasks at chance)."""
    if isinstance(entry, dict):
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ConfigError(f"{where}: a table in 'tasks' needs a 'name'")
        _check_keys(entry, {k: (t, None) for k, t in TASK_KEYS.items()}, f"{where} task {entry['name']!r}")
        name, get = entry["name"].strip(), {**get, **{k: v for k, v in entry.items() if k != "name"}}
    else:
        name = _strings([entry], "tasks", where)[0]
    return TaskSettings(task=name, n_examples=get["n_examples"], split_seed=get["split_seed"],
                        test_fraction=float(get["test_fraction"]), val_fraction=float(get["val_fraction"]))


def _model_aliases(entries: list, get: dict, where: str) -> dict[str, FeatureSpec]:
    """``[[models]]`` entries → {name: FeatureSpec}; one name defined twice must agree on every setting."""
    aliases: dict[str, FeatureSpec] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}: each [[models]] entry needs a 'name'")
        _check_keys(entry, {k: (t, None) for k, t in MODEL_KEYS.items()}, f"{where} [[models]] {entry['name']!r}")
        spec = FeatureSpec(model=entry.get("base", entry["name"]), layer=entry.get("layer", get["layer"]),
                           pooling=entry.get("pooling", get["pooling"]),
                           max_length=entry.get("max_length", get["max_length"]))
        previous = aliases.setdefault(entry["name"], spec)
        if previous != spec:
            diff = ", ".join(f"{f.name} {getattr(previous, f.name)!r} vs {getattr(spec, f.name)!r}"
                             for f in dataclasses.fields(spec) if getattr(previous, f.name) != getattr(spec, f.name))
            raise ConfigError(f"{where}: model {entry['name']!r} is defined twice with different settings ({diff})")
    return aliases


def _pairs(raw: dict, where: str) -> tuple[tuple[SupervisorSpec, str], ...]:
    """The (weak, strong) pairs from exactly one of: ladder (+ pairs mode), weak × strong, explicit pairs."""
    ladder, mode, weak, strong = raw.get("ladder"), raw.get("pairs"), raw.get("weak"), raw.get("strong")
    forms = [ladder is not None, isinstance(mode, list), weak is not None or strong is not None]
    if sum(forms) != 1:
        raise ConfigError(f"{where}: give exactly one of 'ladder' (with pairs = \"all\" or \"adjacent\"), "
                          "'weak' and 'strong', or 'pairs' as a list of [weak, strong]")
    if ladder is not None:
        ladder = _strings(ladder, "ladder", where)
        if len(set(ladder)) != len(ladder):
            raise ConfigError(f"{where}: a model is listed twice in 'ladder'")
        mode = mode or "all"
        if mode not in ("all", "adjacent"):
            raise ConfigError(f"{where}: 'pairs' with a ladder must be \"all\" or \"adjacent\", got {mode!r}")
        names = [(ladder[i], ladder[j]) for i in range(len(ladder)) for j in range(i + 1, len(ladder))
                 if mode == "all" or j == i + 1]
    elif isinstance(mode, list):
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in mode):
            raise ConfigError(f"{where}: 'pairs' must be a list of [weak, strong] name pairs")
        names = [(w.strip(), s.strip()) for w, s in mode]
    else:
        if weak is None or strong is None:
            raise ConfigError(f"{where}: give both 'weak' and 'strong'")
        names = [(w, s) for w in _strings(weak, "weak", where) for s in _strings(strong, "strong", where)]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a (weak, strong) pair is listed twice")
    if not names:
        raise ConfigError(f"{where}: the grid is empty: no (weak, strong) pair (a ladder needs two models)")
    pairs = []
    for w, s in names:
        spec = parse_supervisor(w)
        if "+" in s or "@" in s or ":" in s:
            raise ConfigError(f"{where}: strong model {s!r} must be a single model, not a supervisor")
        pairs.append((spec, s))
    return tuple(pairs)
