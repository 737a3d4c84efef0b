"""Transfer-time refinements of weak labels: filtering and self-training (the confirmation-bias loop).

A method string is ``loss[+modifier]`` (e.g. ``xent+filter``, ``logconf+self3``):
- ``filter``: drop weak labels that the strong model's own cross-fitted predictions (trained on the other
  folds' weak labels, never on ground truth) contradict confidently (confident learning's per-class
  thresholds);
- ``entropy``: drop the 20% of weak labels the supervisor is least sure of;
- ``selfN``: N rounds of self-training after the first student: the student labels half B, its most
  confident half per class become hard pseudo-labels, a quarter of B keeps the supervisor's labels (so the
  supervisor is never forgotten entirely), and a fresh student is trained on that mix; ``softselfN`` keeps
  the student's probabilities as soft pseudo-labels instead;
- ``mixup``: students train on mixup batches (convex combinations of two examples and of their targets,
  weight ~ Beta(0.4, 0.4)), a standard guard against memorising noisy pseudo-labels;
- ``gen``: generative finetuning — a language-modelling pass of the student on the task's unlabelled texts
  (halves A and B) before transfer (fine-tuned students only; the ceiling stays the plain model);
- ``oracle``: select the student's epoch on *ground-truth* validation labels. An upper bound that a real
  weak-to-strong setting cannot have; reports mark it.
- ``final``: train every epoch and keep the last (the reference implementation's rule) instead of the epoch
  that best agrees with the supervisor's validation labels — which can stop a ``logconf`` student inside its
  warm-up and pull it towards ``xent``. Rows name the rule in ``epoch_rule``.

In sweep files a method may also be a table with parameters (``make_method``): the loss's own parameters
(``aux_coef``, ``warmup_frac``, ``alpha``, ``beta``), ``mixup`` (the Beta parameter; 0 = off), ``self_keep``,
``supervised_share``, ``min_supervised_per_batch`` (each self-training batch holds at least this share of
supervisor-labelled examples, oversampling them if needed) and ``entropy_drop``.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from ..errors import ConfigError

MODIFIERS = ("filter", "entropy", "self<N>", "softself<N>", "mixup", "gen", "oracle", "final")
ENTROPY_DROP = 0.2
SELF_KEEP = 0.5
SELF_SUPERVISED_SHARE = 0.25
MIXUP_ALPHA = 0.4


@dataclasses.dataclass(frozen=True)
class Method:
    """A parsed method: the loss (with its parameters), an optional label filter, self-training rounds and
    their options. ``name`` is what tables and the results store show."""

    name: str
    loss: str
    label_filter: str | None = None
    self_rounds: int = 0
    soft_pseudo_labels: bool = False
    loss_params: tuple[tuple[str, float], ...] = ()  # sorted (name, value) pairs passed to the loss
    mixup: float = 0.0
    self_keep: float = SELF_KEEP
    supervised_share: float = SELF_SUPERVISED_SHARE
    min_supervised_per_batch: float = 0.0
    entropy_drop: float = ENTROPY_DROP
    generative: bool = False
    oracle_stopping: bool = False
    final_epoch: bool = False

    @property
    def epoch_rule(self) -> str:
        """How the student's epoch is chosen: 'final', 'oracle' (ground truth) or 'weak-val' (weak labels)."""
        return "final" if self.final_epoch else "oracle" if self.oracle_stopping else "weak-val"

    def key(self) -> dict:
        """Everything that changes results (the display name does not)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}

    @property
    def loss_kwargs(self) -> dict | None:
        return dict(self.loss_params) or None


_REFINEMENT_PARAMS = ("mixup", "self_keep", "supervised_share", "min_supervised_per_batch", "entropy_drop")


def make_method(spec: str | dict) -> Method:
    """A method from a string (``parse_method``) or from a table ``{"name": ..., "method": "logconf+self3",
    <parameters>}`` as written in sweep files; raises ConfigError on unknown or out-of-range parameters."""
    from ..training.losses import make_loss

    if isinstance(spec, str):
        return parse_method(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
        raise ConfigError(f"a method table needs 'method' (a method string such as 'logconf+self3'), got {spec!r}")
    params = {k: v for k, v in spec.items() if k not in ("name", "method")}
    base = parse_method(spec["method"])
    refinements = {k: params.pop(k) for k in _REFINEMENT_PARAMS if k in params}
    for key, value in refinements.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"method {spec['method']!r}: {key} must be a number, got {value!r}")
    try:
        make_loss(base.loss, params)  # validates the loss's parameter names and values
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"method {spec['method']!r}: {err}") from None
    name = spec.get("name") or base.name + "".join(f",{k}={v}" for k, v in sorted({**params, **refinements}.items()))
    if base.oracle_stopping and "oracle" not in str(name):
        name = f"{name} (oracle)"  # tables and the report recognise the upper bound by its name
    method = dataclasses.replace(base, name=str(name), loss_params=tuple(sorted(params.items())),
                                 **{k: float(v) for k, v in refinements.items()})
    _check_ranges(method)
    return method


def _check_ranges(m: Method) -> None:
    checks = {"mixup": m.mixup >= 0, "self_keep": 0 < m.self_keep <= 1, "supervised_share": 0 <= m.supervised_share < 1,
              "min_supervised_per_batch": 0 <= m.min_supervised_per_batch < 1, "entropy_drop": 0 <= m.entropy_drop < 1}
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"method {m.name!r}: {key} = {getattr(m, key)!r} is out of range")


def parse_method(name: str) -> Method:
    """'logconf+self3' → Method(loss='logconf', self_rounds=3); raises ConfigError on unknown parts."""
    from ..training import LOSSES

    loss, *mods = [part.strip() for part in name.split("+")]
    if loss not in LOSSES:
        raise ConfigError(f"method {name!r}: " + LOSSES.unknown_message(loss))
    label_filter, rounds, soft, mixup = None, 0, False, 0.0
    flags = {"gen": False, "oracle": False, "final": False}
    for mod in mods:
        match = re.fullmatch(r"(soft)?self(\d+)", mod)
        if mod in ("filter", "entropy") and label_filter is None:
            label_filter = mod
        elif match and rounds == 0 and 1 <= int(match.group(2)) <= 10:
            rounds, soft = int(match.group(2)), bool(match.group(1))
        elif mod == "mixup" and not mixup:
            mixup = MIXUP_ALPHA
        elif mod in flags and not flags[mod]:
            flags[mod] = True
        else:
            raise ConfigError(f"method {name!r}: unknown or repeated modifier {mod!r} (allowed once each: filter or "
                              "entropy, self1 … self10 or softself1 … softself10, mixup, gen, oracle, final)")
    if flags["final"] and flags["oracle"]:
        raise ConfigError(f"method {name!r}: 'final' (keep the last epoch) and 'oracle' (choose an epoch) exclude "
                          "each other")
    return Method(name, loss, label_filter, rounds, soft, mixup=mixup, generative=flags["gen"],
                  oracle_stopping=flags["oracle"], final_epoch=flags["final"])


def entropy_keep(weak: np.ndarray, *, drop_fraction: float = ENTROPY_DROP) -> np.ndarray:
    """Boolean mask (n,) keeping all but the ``drop_fraction`` least confident weak labels (|p - 0.5| smallest)."""
    if not 0 <= drop_fraction < 1:
        raise ConfigError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    n_drop = int(round(drop_fraction * len(weak)))
    keep = np.ones(len(weak), dtype=bool)
    keep[np.argsort(np.abs(weak - 0.5), kind="stable")[:n_drop]] = False
    return keep


def confident_keep(cross_fitted: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Mask keeping every weak label that the cross-fitted strong prediction does not confidently contradict.

    Confident learning's per-class thresholds: t_c is the strong model's mean probability of class c over the
    items whose weak label is c. An item labelled 0 is contradicted when its P(1) >= t_1, one labelled 1 when
    its P(0) >= t_0; thresholds adapt to how confident the (weakly trained) strong model is at all.
    """
    labelled_1 = weak >= 0.5
    if labelled_1.all() or not labelled_1.any():
        return np.ones(len(weak), dtype=bool)
    t1 = cross_fitted[labelled_1].mean()
    t0 = (1 - cross_fitted[~labelled_1]).mean()
    contradicted = (~labelled_1 & (cross_fitted >= t1)) | (labelled_1 & (1 - cross_fitted >= t0))
    keep = ~contradicted
    if not keep.any():
        raise ConfigError("the confident filter removed every weak label")
    return keep


def pseudo_labels(student_p: np.ndarray, weak: np.ndarray, *, seed: int, keep: float = SELF_KEEP,
                  supervised_share: float = SELF_SUPERVISED_SHARE,
                  soft: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One self-training relabelling of B: (targets (n,), mask of the items trained on (n,), mask of the items
    whose target is the supervisor's (n,)).

    The student's most confident ``keep`` share *per predicted class* gets its hard prediction as target (its
    probability with ``soft``); a random ``supervised_share`` of B (seeded) keeps the supervisor's soft label.
    """
    if not 0 < keep <= 1 or not 0 <= supervised_share < 1:
        raise ConfigError(f"keep must be in (0, 1] and supervised_share in [0, 1), got {keep}, {supervised_share}")
    hard = (student_p >= 0.5).astype(np.float32)
    targets = np.asarray(student_p, dtype=np.float32).copy() if soft else hard.copy()
    train = np.zeros(len(hard), dtype=bool)
    for cls in (0, 1):
        members = np.flatnonzero(hard == cls)
        confident = members[np.argsort(-np.abs(student_p[members] - 0.5), kind="stable")]
        train[confident[: int(np.ceil(keep * len(members)))]] = True
    supervised = np.random.default_rng(seed).random(len(hard)) < supervised_share
    targets[supervised] = weak[supervised]
    train |= supervised
    if not train.any():
        raise ConfigError("self-training kept no example")
    return targets, train, supervised
