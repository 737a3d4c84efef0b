"""Training causal LMs from feedback on this CPU: supervised fine-tuning, a Bradley–Terry reward model, and DPO,
each with LoRA adapters, built on TRL (SFTTrainer, RewardTrainer, DPOTrainer) and peft rather than new loops.

Each function is a cached stage: its adapter lands in ``<cache>/stages/policy-<kind>/<key>/`` where the key hashes
the base model's weights fingerprint, the training data's content and every setting, so the same call twice
trains once. The folder is written under a temp name and renamed when complete. The result is usable at once:
``load_lm(base, backend="transformers", adapter=result.adapter)`` generates and scores with it; a reward model
scores texts with :func:`reward_scores`.

Data (lists of dicts, the TRL formats):
- SFT: ``{"prompt": str, "completion": str}`` (loss on the completion only) or ``{"messages": [...]}``;
- reward model and DPO: ``{"prompt": str, "chosen": str, "rejected": str}``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import stable_hash, write_json
from ..paths import cache_dir

log = logging.getLogger(__name__)

POLICY_STAGE_VERSION = 2  # 2: float32 on CPU (TRL's configs default to bf16 autocast)


@dataclasses.dataclass(frozen=True)
class PolicyTraining:
    """Settings shared by the three trainers. ``lr`` is AdamW's peak learning rate; ``batch_size`` examples per
    optimiser step (``grad_accum`` micro-batches); ``max_length`` tokens per example (longer are truncated by
    TRL, reported in the metrics); ``beta`` is DPO's KL strength."""

    epochs: float = 1.0
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 256
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    beta: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs!r}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr!r}")
        for name in ("batch_size", "grad_accum", "max_length", "lora_rank", "lora_alpha"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"grad_accum {self.grad_accum} must divide batch_size {self.batch_size}")
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0, got {self.beta!r}")


@dataclasses.dataclass(frozen=True)
class TrainedAdapter:
    """A trained LoRA adapter: ``adapter`` folder, the ``base`` model it applies to, ``kind`` (sft, reward, dpo),
    and ``metrics`` (examples/s, peak RSS in MB, final loss, seconds; read back from the cache on a hit)."""

    adapter: Path
    base: str
    kind: str
    metrics: dict
    cached: bool


def train_sft(model: str, examples: list[dict], *, config: PolicyTraining = PolicyTraining(),
              cache: str | Path | None = None) -> TrainedAdapter:
    """LoRA SFT of causal LM ``model`` (zoo name, folder or Hub id) on prompt/completion or messages examples."""
    _check_rows(examples, ({"prompt", "completion"}, {"messages"}), "SFT")
    return _train("sft", model, examples, config, cache)


def train_reward_model(model: str, pairs: list[dict], *, config: PolicyTraining = PolicyTraining(),
                       cache: str | Path | None = None) -> TrainedAdapter:
    """A Bradley–Terry reward model: ``model`` with a scalar head and LoRA, trained so chosen scores above rejected."""
    _check_rows(pairs, ({"prompt", "chosen", "rejected"},), "reward-model")
    return _train("reward", model, pairs, config, cache)


def train_dpo(model: str, pairs: list[dict], *, config: PolicyTraining = PolicyTraining(),
              cache: str | Path | None = None) -> TrainedAdapter:
    """DPO of ``model`` on preference pairs, LoRA; the frozen base is the reference policy."""
    _check_rows(pairs, ({"prompt", "chosen", "rejected"},), "DPO")
    return _train("dpo", model, pairs, config, cache)


def _check_rows(rows: list[dict], shapes: tuple[set, ...], what: str) -> None:
    if not rows:
        raise DataError(f"{what} data is empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not any(set(row) >= shape for shape in shapes):
            wanted = " or ".join("{" + ", ".join(sorted(s)) + "}" for s in shapes)
            raise DataError(f"{what} example {i} must have the keys {wanted}, got {sorted(row) if isinstance(row, dict) else row!r}")
        if "chosen" in row and row["chosen"] == row["rejected"]:
            raise DataError(f"{what} pair {i}: chosen and rejected are identical")


def _train(kind: str, model: str, rows: list[dict], config: PolicyTraining, cache) -> TrainedAdapter:
    from ..models import resolve
    from ..models.features import model_fingerprint

    path = resolve(model, cache=cache)
    data = [{k: row[k] for k in sorted(row) if k in ("prompt", "completion", "messages", "chosen", "rejected")}
            for row in rows]
    key = stable_hash({"stage": f"policy-{kind}", "version": POLICY_STAGE_VERSION, "weights": model_fingerprint(path),
                       "data": stable_hash(data, length=64), "config": dataclasses.asdict(config),
                       "trl": _version("trl"), "peft": _version("peft")})
    target = cache_dir(cache) / "stages" / f"policy-{kind}" / key
    if (target / "metrics.json").is_file():
        return TrainedAdapter(target, model, kind, json.loads((target / "metrics.json").read_text()), cached=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{key}-"))
    try:
        metrics = _fit(kind, path, data, config, staging)
        write_json(staging / "metrics.json", {**metrics, "base": model, "kind": kind, "examples": len(data)})
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TrainedAdapter(target, model, kind, json.loads((target / "metrics.json").read_text()), cached=False)


def _version(package: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(package)


def _fit(kind: str, path: str, data: list[dict], config: PolicyTraining, out: Path) -> dict:
    """Train with TRL into ``out`` (adapter files + tokenizer); returns throughput and memory metrics."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # bf16=False: TRL's configs default to bf16, which on the CPU is autocast; on a CPU without native bf16 (AVX2
    # only) that measured ~30x slower than float32, and its numbers would differ between machines.
    common = dict(output_dir=str(out / "trainer"), num_train_epochs=config.epochs, learning_rate=config.lr,
                  per_device_train_batch_size=config.batch_size // config.grad_accum,
                  gradient_accumulation_steps=config.grad_accum, max_length=config.max_length, seed=config.seed,
                  data_seed=config.seed, use_cpu=True, bf16=False, report_to=[], save_strategy="no", logging_steps=1,
                  disable_tqdm=True, lr_scheduler_type="linear", warmup_steps=0, dataloader_num_workers=0)
    lora = dict(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules="all-linear")
    dataset = Dataset.from_list(data)
    if kind == "sft":
        from trl import SFTConfig, SFTTrainer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tokenizer,
                             peft_config=LoraConfig(task_type="CAUSAL_LM", **lora))
    elif kind == "dpo":
        from trl import DPOConfig, DPOTrainer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        trainer = DPOTrainer(model=model, args=DPOConfig(beta=config.beta, **common), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=LoraConfig(task_type="CAUSAL_LM", **lora))
    else:
        from trl import RewardConfig, RewardTrainer

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        trainer = RewardTrainer(model=model, args=RewardConfig(**common), train_dataset=dataset,
                                processing_class=tokenizer,
                                peft_config=LoraConfig(task_type="SEQ_CLS", modules_to_save=["score"], **lora))
    start = time.perf_counter()
    try:
        result = trainer.train()
    finally:
        # the Trainer leaves accelerate's process-wide AcceleratorState set up for its own settings; a later
        # Accelerator in this process (training.finetune) with other settings would then refuse to start
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    examples_seen = len(data) * config.epochs
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {"seconds": round(seconds, 2), "examples_per_s": round(examples_seen / seconds, 3),
            "peak_rss_mb": _peak_rss_mb(),
            "train_loss": float(result.training_loss), "first_loss": history[0]["loss"] if history else None,
            "last_loss": history[-1]["loss"] if history else None, "steps": int(trainer.state.global_step)}


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM (reset at exec, unlike ru_maxrss, which Linux carries
    over from the parent of a fresh process), else ru_maxrss."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reward_scores(trained: TrainedAdapter, texts: list[str], *, cache: str | Path | None = None,
                  batch_size: int = 8) -> list[float]:
    """The reward model's scalar score of each full text (prompt + answer); higher = preferred."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models import resolve

    if trained.kind != "reward":
        raise ConfigError(f"reward_scores needs a reward-model adapter, got a {trained.kind} adapter")
    path = resolve(trained.base, cache=cache)
    tokenizer = AutoTokenizer.from_pretrained(trained.adapter)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    base.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(base, str(trained.adapter)).eval()
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start: start + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=1024)
            out += model(**enc).logits[:, 0].tolist()
    return out
