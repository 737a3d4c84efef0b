"""Generative finetuning: a language-modelling pass of a model over a task's unlabelled texts.

Encoders learn by masked language modelling (15% of tokens), decoders by next-token prediction. The adapted
backbone (without its language-modelling head) is saved in the cache under a hash of the weights, the texts
and the settings, and classification fine-tuning then starts from it.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..io import stable_hash, text_digests
from ..paths import cache_dir as resolve_cache_dir


def generative_finetune(backbone: str, texts: list[str], *, epochs: int = 1, batch_size: int = 16, lr: float = 5e-5,
                        max_length: int = 128, mlm_probability: float = 0.15, seed: int = 0,
                        cache: str | Path | None = None) -> str:
    """Path of ``backbone`` (a local model folder) after LM training on ``texts``; computed once per content."""
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer,
                              DataCollatorForLanguageModeling, get_linear_schedule_with_warmup)

    from ..models.features import model_fingerprint

    key = stable_hash({"weights": model_fingerprint(backbone), "texts": text_digests(texts).tobytes().hex(),
                       "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length,
                       "mlm_probability": mlm_probability, "seed": seed})
    out = resolve_cache_dir(cache) / "generative" / key
    if (out / "config.json").is_file():
        return str(out)
    config = AutoConfig.from_pretrained(backbone)
    causal = bool(getattr(config, "is_decoder", False)) or config.model_type in ("llama", "gemma3", "gemma3_text",
                                                                                 "qwen2", "mistral", "gpt2")
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = (AutoModelForCausalLM if causal else AutoModelForMaskedLM).from_pretrained(backbone,
                                                                                         dtype=torch.float32)
        collate = DataCollatorForLanguageModeling(tokenizer, mlm=not causal, mlm_probability=mlm_probability)
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        rng = np.random.default_rng(seed)
        steps = epochs * math.ceil(len(encoded) / batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
        model.train()
        for _ in range(epochs):
            order = rng.permutation(len(encoded))
            for start in range(0, len(order), batch_size):
                batch = collate([{"input_ids": encoded[i]} for i in order[start: start + batch_size]])
                loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             labels=batch["labels"]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{key}-"))
    model.base_model.save_pretrained(tmp)  # the backbone alone: AutoModel loads it for classification
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished the same pass first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
