"""Fine-tuning a whole pretrained transformer, or LoRA adapters on it, as a binary classifier.

``FineTuner`` has the heads' estimator contract (``fit(texts, targets, eval_set=, monitor=)`` and
``predict_proba(texts)``), so the protocol, label filters and self-training drive it exactly as they drive a
probe, with the same losses (``losses.LOSSES``). The loop below is the whole trainer:

- dynamic padding: texts are tokenised once; each batch is padded to its own longest text, and batches are
  cut from length-sorted chunks of 50 batches (shuffled chunk by chunk, then batch order shuffled), so
  little compute goes to padding while every epoch still mixes the data;
- gradient accumulation (``batch_size`` is the effective batch; ``grad_accum`` micro-batches make it),
  AdamW, cosine or linear schedule with warm-up, gradient clipping, bf16 autocast on GPUs that have it;
- model selection on the validation targets the caller gives (weak labels in transfer runs), per epoch;
- checkpoint and resume: the trainable weights, optimiser, schedule, RNG state, best-so-far and history go
  to ``checkpoint_dir`` (atomically) every ``checkpoint_every`` optimiser steps and at each epoch end; a
  later ``fit`` with the same configuration continues from there and ends with the same numbers.

Multi-GPU: the model, optimiser and schedule go through ``accelerate``; under ``accelerate launch`` (DDP)
each process trains on its shard of every batch. On a CPU it runs as one process.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, NotFittedError
from ..io import atomic_path, stable_hash
from .heads import epoch_batches, validation_score
from .losses import make_loss

# Attention projections LoRA adapts by default, per Hugging Face ``model_type``.
LORA_TARGETS = {"bert": ("query", "value"), "mpnet": ("q", "v"), "roberta": ("query", "value"),
                "llama": ("q_proj", "v_proj"), "gemma3_text": ("q_proj", "v_proj"), "gemma3": ("q_proj", "v_proj"),
                "qwen2": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "gpt2": ("c_attn",)}
MODES = ("full", "lora")
SCHEDULES = ("cosine", "linear")
CHUNK_BATCHES = 50


class FineTuner:
    """A transformer classifier trained end to end (``mode='full'``) or through LoRA adapters (``'lora'``).

    backbone: a zoo name, local folder or Hub id. Pooling over the last layer's token states (``mean``,
    ``last``, ``first``) feeds a zero-initialised linear layer. ``lr`` defaults to 3e-5 (full) / 3e-4 (LoRA).
    ``max_steps`` stops early (a later fit resumes from the checkpoint); it is not part of the configuration.
    ``bucket=False, padding='max_length'`` is the naive loop (random batches padded to ``max_length``) that
    the benchmark compares against.
    """

    def __init__(self, backbone: str, *, mode: str = "full", loss: str = "xent", loss_params: dict | None = None,
                 epochs: int = 2, batch_size: int = 16, grad_accum: int = 1, lr: float | None = None,
                 weight_decay: float = 0.01, schedule: str = "cosine", warmup_frac: float = 0.1,
                 max_grad_norm: float = 1.0, max_length: int = 128, pooling: str = "mean", lora_rank: int = 8,
                 lora_alpha: int = 16, lora_targets: tuple[str, ...] | None = None, patience: int | None = None,
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
                 bucket: bool = True, padding: str = "longest", max_steps: int | None = None,
                 cache: str | Path | None = None, seed: int = 0) -> None:
        self.backbone, self.mode, self.loss, self.loss_params = backbone, mode, loss, loss_params
        self.epochs, self.batch_size, self.grad_accum, self.lr = epochs, batch_size, grad_accum, lr
        self.weight_decay, self.schedule, self.warmup_frac = weight_decay, schedule, warmup_frac
        self.max_grad_norm, self.max_length, self.pooling = max_grad_norm, max_length, pooling
        self.lora_rank, self.lora_alpha, self.lora_targets, self.patience = lora_rank, lora_alpha, lora_targets, patience
        self.checkpoint_dir, self.checkpoint_every, self.bucket = checkpoint_dir, checkpoint_every, bucket
        self.padding = padding
        self.max_steps, self.cache, self.seed = max_steps, cache, seed

    def config_key(self) -> str:
        """Hash of every setting that changes the trained model (not paths, not ``max_steps``)."""
        skip = {"checkpoint_dir", "checkpoint_every", "max_steps", "cache"}
        return stable_hash({k: v for k, v in vars(self).items() if k not in skip and not k.endswith("_")})

    def _check(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be a positive multiple of grad_accum {self.grad_accum}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.padding not in ("longest", "max_length"):
            raise ConfigError(f"padding must be 'longest' or 'max_length', got {self.padding!r}")

    # -- fitting ---------------------------------------------------------------------------------------------
    def fit(self, X, y, *, sample_weight=None, eval_set=None, monitor=None, anchor=None,
            anchor_share: float = 0.0) -> "FineTuner":
        """Train on texts ``X`` (n,) and targets ``y`` (n,) = P(class 1); ``eval_set=(texts, targets)`` picks
        the epoch; ``monitor`` texts get per-epoch predictions in ``history_`` (never used for training)."""
        import torch

        self._check()
        y = np.asarray(y, dtype=np.float32)
        if len(X) != len(y) or not np.all((y >= 0) & (y <= 1)):
            raise ConfigError("fit: targets must be probabilities P(class = 1), one per text")
        loss_fn = make_loss(self.loss, self.loss_params)
        weights = torch.ones(len(y)) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build()
            return self._train(list(X), torch.from_numpy(y), weights, loss_fn, eval_set, monitor, anchor, anchor_share)

    def _train(self, texts, targets, weights, loss_fn, eval_set, monitor, anchor, anchor_share) -> "FineTuner":
        import torch
        from accelerate import Accelerator

        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        acc = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available())
        encoded = self.tokenizer_(texts, truncation=True, max_length=self.max_length)["input_ids"]
        params = [p for p in self.model_.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr or (3e-4 if self.mode == "lora" else 3e-5),
                                weight_decay=self.weight_decay)
        total = self.epochs * len(self._epoch_batches(encoded, 0, anchor, anchor_share))
        sched = _schedule(self.schedule, opt, int(self.warmup_frac * total), total)
        model, opt = acc.prepare(self.model_, opt)  # DDP under `accelerate launch`; unchanged on one CPU
        inner = acc.unwrap_model(model)  # parameter names without DDP's "module." prefix, for state dicts
        prior = float(np.clip((targets.numpy() >= 0.5).mean(), 0.01, 0.99))
        if getattr(loss_fn, "batch_statistics", False) and (self.grad_accum > 1 or acc.num_processes > 1):
            raise ConfigError(f"loss {self.loss!r} thresholds on statistics of the whole batch: it cannot be split "
                              f"into micro-batches (grad_accum {self.grad_accum}) or processes "
                              f"({acc.num_processes}); use grad_accum 1 on one process")
        state = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_state": None, "history": [], "stale": 0}
        state = self._resume(inner, opt, sched, state)
        micro = self.batch_size // self.grad_accum
        while state["epoch"] < self.epochs:
            batches = self._epoch_batches(encoded, state["epoch"], anchor, anchor_share)
            model.train()
            for b in range(state["batch"], len(batches)):
                if len(batches[b]) < acc.num_processes:  # a tail batch too small to shard: every rank skips it
                    continue
                idx = batches[b][acc.process_index::acc.num_processes]  # this process's shard of the batch
                parts = np.array_split(idx, math.ceil(len(idx) / micro))  # micro-batches of one optimiser step
                for j, part in enumerate(parts):
                    sync = contextlib.nullcontext() if j == len(parts) - 1 else acc.no_sync(model)
                    with sync, acc.autocast():
                        logits = model(**self._pad([encoded[i] for i in part], acc.device))  # (micro,)
                        per_example = loss_fn(logits.float(), targets[part].to(acc.device),
                                              progress=state["step"] / total, prior=prior)
                        # each part's share of the batch's weighted mean: the step sees the whole batch's loss
                        loss = (per_example * weights[part].to(acc.device)).sum() / weights[idx].sum().clamp(min=1e-12)
                    acc.backward(loss)
                if self.max_grad_norm:
                    acc.clip_grad_norm_(params, self.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                state["step"], state["batch"] = state["step"] + 1, b + 1
                if self.checkpoint_every and state["step"] % self.checkpoint_every == 0:
                    self._save(inner, opt, sched, state, acc)
                if self.max_steps is not None and state["step"] >= self.max_steps:
                    self._save(inner, opt, sched, state, acc)
                    self.model_, self.history_ = inner.eval(), state["history"]
                    return self
            if self._end_epoch(inner, state, eval_set, monitor):
                break
            self._save(inner, opt, sched, state, acc)
        if state["best_state"] is not None:
            _load_trainable(inner, state["best_state"])
        self.model_ = inner.eval()
        self.history_ = state["history"]
        self.best_epoch_ = state.get("best_epoch", len(state["history"]))
        return self

    def _end_epoch(self, model, state: dict, eval_set, monitor) -> bool:
        """Record the epoch (monitor predictions, validation score), keep the best weights; True = stop early."""
        record = {"epoch": state["epoch"] + 1}
        self.model_ = model
        if monitor is not None:
            record["monitor_p"] = self._predict_p1(list(monitor))
        if eval_set is not None:
            score = validation_score(self._predict_p1(list(eval_set[0])), np.asarray(eval_set[1]))
            record.update(val_agreement=score[0], val_xent=-score[1])
            if state["best"] is None or tuple(score) > tuple(state["best"]):
                state["best"], state["stale"], state["best_epoch"] = list(score), 0, state["epoch"] + 1
                state["best_state"] = {k: v.detach().cpu().clone() for k, v in _trainable_state(model).items()}
            else:
                state["stale"] += 1
        state["history"].append(record)
        state["epoch"] += 1
        state["batch"] = 0
        return self.patience is not None and eval_set is not None and state["stale"] >= self.patience

    def _epoch_batches(self, encoded: list, epoch: int, anchor, anchor_share: float) -> list[np.ndarray]:
        """Shuffled batches of one epoch (a function of seed and epoch only, so a resumed run replays them)."""
        rng = np.random.default_rng([self.seed, epoch])
        if anchor is not None and anchor_share > 0 or not self.bucket:
            return epoch_batches(rng, len(encoded), self.batch_size, anchor, anchor_share)
        lengths = np.array([len(e) for e in encoded])
        order = rng.permutation(len(encoded))
        batches = []
        for start in range(0, len(order), self.batch_size * CHUNK_BATCHES):
            chunk = order[start: start + self.batch_size * CHUNK_BATCHES]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    # -- model -----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        from .backbone import Classifier

        self.model_, self.tokenizer_ = Classifier.load(self.backbone, pooling=self.pooling, cache=self.cache)
        if self.mode == "lora":
            self.model_.add_lora(rank=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets)

    def _pad(self, ids: list[list[int]], device):
        features = self.tokenizer_.pad({"input_ids": ids}, padding=self.padding, max_length=self.max_length,
                                       return_tensors="pt")
        return {k: v.to(device) for k, v in features.items() if k in ("input_ids", "attention_mask")}

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, 2) for texts ``X``; column 1 is P(class = 1)."""
        if not hasattr(self, "model_"):
            raise NotFittedError("FineTuner is not fitted yet: call fit first")
        p1 = self._predict_p1(list(X))
        return np.stack([1 - p1, p1], axis=1)

    def _predict_p1(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        model = self.model_
        was_training = model.training
        model.eval()
        encoded = self.tokenizer_(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = np.argsort([len(e) for e in encoded], kind="stable")
        out = np.empty(len(texts), dtype=np.float32)
        device = next(model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start: start + batch_size]
                out[idx] = torch.sigmoid(model(**self._pad([encoded[i] for i in idx], device)).float()).cpu().numpy()
        model.train(was_training)
        return out

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _checkpoint(self) -> Path | None:
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "checkpoint.pt"

    def _save(self, model, opt, sched, state: dict, acc) -> None:
        import torch

        path = self._checkpoint()
        if path is None or not acc.is_main_process:
            return
        blob = {"config": self.config_key(), "model": {k: v.detach().cpu() for k, v in _trainable_state(model).items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "state": state}
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(blob, tmp)

    def _resume(self, model, opt, sched, state: dict) -> dict:
        import torch

        path = self._checkpoint()
        if path is None or not path.is_file():
            return state
        blob = torch.load(path, weights_only=False)
        if blob["config"] != self.config_key():
            raise ConfigError(f"checkpoint {str(path)!r} was written by another configuration; use another "
                              "checkpoint_dir or delete it")
        _load_trainable(model, blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        torch.set_rng_state(blob["torch_rng"])
        return blob["state"]


def _trainable_state(model) -> dict:
    """The parameters that training changes (all of them, or the LoRA adapters and the head)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


def _load_trainable(model, state: dict) -> None:
    """Load a trainable-parameters-only state dict; every key must name a parameter of ``model``."""
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ConfigError(f"checkpoint holds weights this model does not have: {', '.join(unexpected[:3])} …")


def _schedule(name: str, opt, warmup: int, total: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    make = get_cosine_schedule_with_warmup if name == "cosine" else get_linear_schedule_with_warmup
    return make(opt, num_warmup_steps=warmup, num_training_steps=max(total, 1))
