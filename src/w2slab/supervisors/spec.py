"""Supervisor specs: the strings that name a weak supervisor in configs and on the command line.

- ``minilm`` (any model name): a weak model trained on half A with ground truth;
- ``tfidf+minilm+smollm2@ds``: an ensemble of weak models combined by a label model (``mean``, ``vote``,
  ``ds`` = Dawid–Skene; default ``mean``) fitted without ground truth;
- ``tfidf>minilm-l3``: bootstrapping — the weak model's labels pass through intermediate models, each
  trained on the previous one's labels; paired with a strong model this is the chain weak → … → strong;
- ``prompt:smollm2``: a causal LM prompted zero-shot, scoring the task's two label words (no training);
  ``prompt4:smollm2``: the same with 4 labelled examples from half A in the prompt (few-shot, balanced,
  drawn per seed).
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SupervisorSpec:
    """kind: 'model', 'ensemble', 'chain' or 'prompt'; models: the model name(s) (a chain's in order);
    combine: the label model."""

    name: str
    kind: str
    models: tuple[str, ...]
    combine: str | None = None
    shots: int = 0


def parse_supervisor(name: str) -> SupervisorSpec:
    """Parse a supervisor string (see the module docstring); raises ConfigError on a malformed one."""
    from .label_models import LABEL_MODELS

    text = name.strip()
    prompt = re.fullmatch(r"prompt(\d*):(.*)", text)
    if prompt:
        shots, model = int(prompt.group(1) or 0), prompt.group(2).strip()
        if not model:
            raise ConfigError(f"supervisor {name!r}: give the LM after 'prompt:', e.g. prompt:smollm2")
        if shots % 2 or shots > 16:
            raise ConfigError(f"supervisor {name!r}: the number of shots must be even (balanced) and at most 16")
        return SupervisorSpec(name, "prompt", (model,), shots=shots)
    if ">" in text:
        models = tuple(m.strip() for m in text.split(">"))
        if len(models) < 2 or not all(models) or any(c in m for m in models for c in "+@:"):
            raise ConfigError(f"supervisor {name!r}: a bootstrapping chain is model names joined by '>', "
                              "e.g. tfidf>minilm")
        if len(set(models)) != len(models):
            raise ConfigError(f"supervisor {name!r}: a model appears twice in the chain")
        return SupervisorSpec(name, "chain", models)
    if "+" in text or "@" in text:
        members, _, how = text.partition("@")
        models = tuple(m.strip() for m in members.split("+") if m.strip())
        how = how or "mean"
        if len(models) < 2:
            raise ConfigError(f"supervisor {name!r}: an ensemble needs at least two models joined by '+'")
        if len(set(models)) != len(models):
            raise ConfigError(f"supervisor {name!r}: a model is named twice in the ensemble")
        if how not in LABEL_MODELS:
            raise ConfigError(f"supervisor {name!r}: " + LABEL_MODELS.unknown_message(how))
        if how == "ds" and len(models) < 3:
            # with two conditionally independent voters the error rates are not identifiable: EM drifts to
            # a degenerate solution (seen on SST-2: constant posterior)
            raise ConfigError(f"supervisor {name!r}: Dawid-Skene needs at least three supervisors")
        return SupervisorSpec(name, "ensemble", models, how)
    return SupervisorSpec(name, "model", (text,))
