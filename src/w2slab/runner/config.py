"""Configuration: the task and training settings groups, and the flat ExperimentConfig (validated once, hashed
for caching) that `w2slab run` and `run_experiment` take."""
from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..registry import check_names


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """What fixes the items and the split: the task, how many items (None = all), the split seed and fractions."""

    task: str
    n_examples: int | None = 3000
    split_seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The student head and the weak model's head, with the optimiser settings every head receives."""

    head: str = "logistic"
    weak_head: str = "sklearn_logistic"
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-2
    student_mode: str = "probe"  # 'probe' (a head on frozen features), 'finetune' (whole model) or 'lora'
    ft_epochs: int = 2
    ft_batch_size: int = 16
    ft_grad_accum: int = 1
    ft_lr: float = 0.0  # 0: 3e-5 for full fine-tuning, 3e-4 for LoRA
    ft_max_length: int = 128
    lora_rank: int = 8
    lora_alpha: int = 16

    def head_params(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "weight_decay")}

    def finetune_params(self) -> dict:
        """FineTuner settings of students in 'finetune' / 'lora' mode (the backbone is added per model)."""
        return {"mode": "lora" if self.student_mode == "lora" else "full", "epochs": self.ft_epochs,
                "batch_size": self.ft_batch_size, "grad_accum": self.ft_grad_accum, "lr": self.ft_lr or None,
                "max_length": self.ft_max_length, "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha,
                "weight_decay": self.weight_decay}


_TASK, _TRAIN = TaskSettings("sst2"), TrainSettings()


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One weak-to-strong experiment: every (weak, strong) pair × loss × seed on one task.

    Fractions are of the task's (sub)sampled items, by group: ``test_fraction`` for the test set,
    ``val_fraction`` for the validation slice (labelled by the supervisor in transfer runs), the rest halved
    into weak half A and transfer half B. ``weak_head`` is the weak model's classifier on its features (an
    exact scikit-learn logistic regression by default); ``head`` is the student's (a torch head that takes
    the weak-to-strong losses). ``seeds`` is a count: seeds 0 … seeds-1 vary model initialisation
    and batch order; ``split_seed`` fixes the subsample and the split. ``student_mode`` 'finetune' or 'lora'
    trains the strong students (ceiling, transfer, bootstrapping links) end to end with the ``ft_*`` and
    ``lora_*`` settings instead of a head on frozen features (``training.finetune``).
    """

    task: str = "sst2"
    weak: tuple[str, ...] = ("tfidf", "minilm")
    strong: tuple[str, ...] = ("mpnet",)
    losses: tuple[str, ...] = ("xent", "logconf")
    seeds: int = 3
    n_examples: int | None = _TASK.n_examples
    split_seed: int = _TASK.split_seed
    test_fraction: float = _TASK.test_fraction
    val_fraction: float = _TASK.val_fraction
    head: str = _TRAIN.head
    weak_head: str = _TRAIN.weak_head
    epochs: int = _TRAIN.epochs
    batch_size: int = _TRAIN.batch_size
    lr: float = _TRAIN.lr
    weight_decay: float = _TRAIN.weight_decay
    layer: int = -1
    pooling: str = "mean"
    max_length: int = 256
    n_bootstrap: int = 2000
    student_mode: str = _TRAIN.student_mode
    ft_epochs: int = _TRAIN.ft_epochs
    ft_batch_size: int = _TRAIN.ft_batch_size
    ft_grad_accum: int = _TRAIN.ft_grad_accum
    ft_lr: float = _TRAIN.ft_lr
    ft_max_length: int = _TRAIN.ft_max_length
    lora_rank: int = _TRAIN.lora_rank
    lora_alpha: int = _TRAIN.lora_alpha

    def __post_init__(self) -> None:
        for name in ("weak", "strong", "losses"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, tuple(v.strip() for v in value.split(",") if v.strip()))
            else:
                object.__setattr__(self, name, tuple(value))

    def validate(self, *, registered_task: bool = True) -> "ExperimentConfig":
        """Check every field; raises ConfigError / UnknownNameError naming the field. Returns self.
        ``registered_task=False`` skips the task-name check (the caller passes its own TaskData)."""
        from ..tasks import get_spec
        from ..training import HEADS, LOSSES

        if registered_task:
            get_spec(self.task)  # built-in or user task; unknown names get a suggestion
        from ..supervisors.refine import parse_method

        if not self.losses:
            raise ConfigError(f"losses is empty: give at least one of {', '.join(LOSSES.names())}")
        methods = [parse_method(m) for m in self.losses]
        check_names(HEADS, [self.head], param="head")
        check_names(HEADS, [self.weak_head], param="weak_head")
        for name in ("weak", "strong"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is empty: give at least one model name")
        from ..supervisors.spec import parse_supervisor

        for weak in self.weak:
            parse_supervisor(weak)
        _positive_int("split_seed", self.split_seed, minimum=0)
        from ..models.features import check_layer
        from ..supervisors.spec import parse_supervisor as _parse

        from ..models.zoo import check_model_name

        for model in {m for w in self.weak for m in _parse(w).models} | set(self.strong):
            if model != "tfidf":
                check_model_name(model)
        for model in {m for w in self.weak if _parse(w).kind != "prompt" for m in _parse(w).models} | set(self.strong):
            check_layer(model, self.layer)
        _positive_int("seeds", self.seeds)
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("n_bootstrap", self.n_bootstrap, minimum=100)
        if self.n_examples is not None:
            _positive_int("n_examples", self.n_examples, minimum=50)
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                raise ConfigError(f"{name} must be in (0, 0.5), got {value!r}")
        if self.test_fraction + self.val_fraction >= 0.8:
            raise ConfigError("test_fraction + val_fraction must leave at least 20% for halves A and B")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        check_student_settings(self)
        check_methods(methods, self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def task_settings(self) -> TaskSettings:
        return TaskSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TaskSettings)})

    def train_settings(self) -> TrainSettings:
        return TrainSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)})

    def feature_specs(self, models) -> dict:
        """Every model's extractor setting: this config's layer, pooling and max_length."""
        from ..models.features import FeatureSpec

        return {m: FeatureSpec(model=m, layer=self.layer, pooling=self.pooling, max_length=self.max_length)
                for m in models}


def _positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


STUDENT_MODES = ("probe", "finetune", "lora")


def check_student_settings(settings) -> None:
    """Validate the student-mode fields shared by ExperimentConfig and sweeps' TrainSettings."""
    if settings.student_mode not in STUDENT_MODES:
        raise ConfigError(f"student_mode must be one of {', '.join(STUDENT_MODES)}, got {settings.student_mode!r}")
    for name in ("ft_epochs", "ft_batch_size", "ft_grad_accum", "ft_max_length", "lora_rank", "lora_alpha"):
        _positive_int(name, getattr(settings, name))
    if settings.ft_batch_size % settings.ft_grad_accum:
        raise ConfigError(f"ft_batch_size {settings.ft_batch_size} is not divisible by ft_grad_accum "
                          f"{settings.ft_grad_accum}")
    if settings.ft_lr < 0:
        raise ConfigError(f"ft_lr must be >= 0 (0 = the mode's default), got {settings.ft_lr!r}")


def check_methods(methods, settings) -> None:
    """Methods that the chosen student cannot train: one ConfigError each."""
    probe = settings.student_mode == "probe"
    if probe and settings.head == "sklearn_logistic":
        if {m.loss for m in methods} != {"xent"}:
            raise ConfigError("head 'sklearn_logistic' supports only loss 'xent'; use head 'logistic' or 'mlp'")
        if any(m.mixup or m.min_supervised_per_batch for m in methods):
            raise ConfigError("mixup and min_supervised_per_batch need a torch head, not sklearn_logistic")
    if probe and any(m.generative for m in methods):
        raise ConfigError("generative finetuning ('+gen') needs student_mode 'finetune' or 'lora'")
    if not probe and settings.ft_grad_accum > 1 and any(m.loss.startswith("logconf") for m in methods):
        raise ConfigError(f"logconf thresholds on statistics of the whole batch; ft_grad_accum "
                          f"{settings.ft_grad_accum} would split it into micro-batches: use ft_grad_accum 1")
    if not probe and any(m.mixup for m in methods):
        raise ConfigError(f"mixup applies to probes on features, not to student_mode {settings.student_mode!r}")
