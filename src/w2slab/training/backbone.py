"""A pretrained transformer with a pooled linear classification layer: the model ``FineTuner`` trains."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import ConfigError

POOLINGS = ("mean", "last", "first")


class Classifier(nn.Module):
    """backbone (any HF ``AutoModel``) → pooled last-layer states (batch, hidden) → linear → logits (batch,).

    The linear layer starts at zero, so training starts from p = 0.5 everywhere (as the probes do).
    """

    def __init__(self, backbone, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        hidden = getattr(backbone.config, "hidden_size", None)
        if not isinstance(hidden, int):
            raise ConfigError(f"model {backbone.config.model_type!r} has no hidden_size: no usable hidden state to "
                              "classify from")
        self.backbone, self.pooling = backbone, pooling
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def load(cls, name: str, *, pooling: str = "mean", cache: str | Path | None = None):
        """(Classifier, tokenizer) for a zoo name, local folder or Hub id; fp32, right padding."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..models import MODELS, resolve

        if name in MODELS and MODELS.get(name).kind == "tfidf":
            raise ConfigError(f"model {name!r} has no hidden states: fine-tuning needs a transformer")
        path = resolve(name, cache=cache)
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
        return cls(backbone, pooling), tokenizer

    def add_lora(self, *, rank: int, alpha: int, targets: tuple[str, ...] | None) -> None:
        """Freeze the backbone and wrap its attention projections with LoRA adapters (peft); the head trains."""
        from peft import LoraConfig, get_peft_model

        from .finetune import LORA_TARGETS

        model_type = self.backbone.config.model_type
        targets = tuple(targets or LORA_TARGETS.get(model_type, ()))
        if not targets:
            raise ConfigError(f"no default LoRA target modules for model type {model_type!r}: give lora_targets")
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in self.backbone.named_modules()
                         if type(m).__name__ == "Linear"})
        missing = [t for t in targets if t not in linear]
        if missing:
            raise ConfigError(f"LoRA target module(s) {', '.join(missing)} not found in {model_type!r} "
                              f"(its linear layers: {', '.join(linear)})")
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none")
        self.backbone = get_peft_model(self.backbone, config)

    def forward(self, input_ids, attention_mask):
        import torch

        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            w = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * w).sum(1) / w.sum(1).clamp(min=1)
        elif self.pooling == "first":
            pooled = states[:, 0]
        else:
            pooled = states[torch.arange(states.shape[0], device=states.device), attention_mask.sum(1) - 1]
        return self.head(pooled).squeeze(-1)
