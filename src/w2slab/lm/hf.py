"""transformers: local folders, Hub ids and the zoo's GGUFs (dequantised to fp32) — the backend that can be
trained, and that uses a LoRA adapter (from :mod:`w2slab.training.policy`) the moment it is written.

Sampling is a small loop over the KV cache with one ``torch.Generator`` per sample (seeded from the request
seed and the sample index), so results never depend on global random state and sample i is the same whatever n
is; greedy decoding takes the argmax. Log-likelihoods are exact: one forward pass over context + continuation.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError
from .base import LM, Generation, GenerationRequest, Score, ScoreRequest, truncate_at_stop

log = logging.getLogger(__name__)


def adapter_fingerprint(path: Path) -> str:
    """Identity of a LoRA adapter folder: sha256 of its config and weights files."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(Path(path).glob("adapter_*")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:24]


class HFLM(LM):
    """A causal LM through transformers. ``model``: zoo name, local folder or Hub id; ``adapter``: a peft LoRA
    folder applied on top (merged for speed); ``max_context``: tokens allowed for prompt + generation (default:
    the model's ``max_position_embeddings``). Loaded on first use."""

    backend = "transformers"
    deterministic = True

    def __init__(self, *, model: str, adapter: str | Path | None = None, max_context: int | None = None,
                 threads: int | None = None, cache: str | Path | None = None, progress: bool = False) -> None:
        from ..models import resolve
        from ..models.features import model_fingerprint

        self.model = model
        self.adapter = adapter
        self.max_context = max_context
        self.threads = threads
        self.cache = cache
        self.progress = progress
        self._path = resolve(model, cache=cache)
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"adapter {str(adapter)!r} is not a LoRA adapter folder (no adapter_config.json)")
        self.identity = f"hf:{model_fingerprint(self._path)}" + (f"+lora:{adapter_fingerprint(adapter)}" if adapter else "")
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if self.threads:
                torch.set_num_threads(self.threads)
            self._tokenizer = AutoTokenizer.from_pretrained(self._path)
            model = AutoModelForCausalLM.from_pretrained(self._path, dtype=torch.float32)
            if self.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.adapter)).merge_and_unload()
            self._model = model.eval()
            if self.max_context is None:
                self.max_context = int(getattr(model.config, "max_position_embeddings", 2048))
        return self._model, self._tokenizer

    @property
    def tokenizer(self):
        return self._load()[1]

    def render(self, request: GenerationRequest | ScoreRequest) -> str:
        if request.messages is None:
            return request.prompt
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"model {self.model!r} has no chat template (a base model): send a plain prompt")
        return tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        # a rendered chat prompt already holds its special tokens; plain text gets the tokenizer's own (BOS)
        return self.tokenizer(text, add_special_tokens=not self._has_bos(text))["input_ids"]

    def _has_bos(self, text: str) -> bool:
        bos = self.tokenizer.bos_token
        return bool(bos) and text.startswith(bos)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._encode(t)) for t in texts]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        model, _ = self._load()
        bar = tqdm(total=sum(r.n for r in requests), desc="generating (transformers)", unit="sample",
                   disable=not self.progress or None, leave=False)
        out, tokens, start = [], 0, time.perf_counter()
        for request in requests:
            samples = self._sample(self._encode(self.render(request)), request)
            out.append(samples)
            tokens += sum(s.completion_tokens for s in samples)
            bar.update(request.n)
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        bar.close()
        return out

    def _sample(self, prompt_ids: list[int], request: GenerationRequest) -> list[Generation]:
        """``request.n`` continuations of one prompt, decoded together (rows = samples, no padding needed)."""
        import torch

        model, tokenizer = self._load()
        self._check_length(len(prompt_ids), request.max_tokens)
        rows = 1 if request.greedy else request.n  # greedy samples are identical: decode once
        generators = [torch.Generator().manual_seed(request.sample_seed(i)) for i in request.sample_indices[:rows]]
        eos = _eos_ids(model, tokenizer)
        ids = torch.tensor([prompt_ids] * rows)  # (rows, prompt_len)
        new: list[list[int]] = [[] for _ in range(rows)]
        done = [False] * rows  # ended by EOS or a stop string
        past = None
        cache_arg = _cache_arg(model)
        with torch.inference_mode():
            for _ in range(request.max_tokens):
                output = model(input_ids=ids, **{cache_arg: past}, use_cache=True)
                past = output[cache_arg]
                logits = output.logits[:, -1, :].float()  # (rows, vocab)
                next_ids = [self._pick(logits[r], request, generators[r]) for r in range(rows)]
                for r, token in enumerate(next_ids):
                    if done[r]:
                        continue
                    if token in eos:
                        done[r] = True
                        continue
                    new[r].append(token)
                    if request.stop:
                        done[r] = truncate_at_stop(tokenizer.decode(new[r], skip_special_tokens=True), request.stop)[1]
                if all(done):
                    break
                ids = torch.tensor(next_ids).unsqueeze(1)  # (rows, 1)
        samples = []
        for r in range(rows):
            text, hit = truncate_at_stop(tokenizer.decode(new[r], skip_special_tokens=True), request.stop)
            samples.append(Generation(text=text, prompt_tokens=len(prompt_ids), completion_tokens=len(new[r]),
                                      finish_reason="stop" if hit or done[r] else "length"))
        return samples * request.n if request.greedy else samples

    @staticmethod
    def _pick(logits, request: GenerationRequest, generator) -> int:
        """Next token of one row: argmax when greedy, else temperature + nucleus sampling. ``logits``: (vocab,)."""
        import torch

        if request.greedy:
            return int(logits.argmax())
        probs = torch.softmax(logits / request.temperature, dim=-1)
        if request.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(0) - sorted_probs < request.top_p  # the smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=generator))

    def _check_length(self, prompt_tokens: int, max_tokens: int) -> None:
        self._load()
        if prompt_tokens + max_tokens > self.max_context:
            raise ConfigError(f"prompt of {prompt_tokens} tokens + max_tokens {max_tokens} exceeds the model's context "
                              f"of {self.max_context} tokens (prompts are never truncated)")

    def loglikelihood(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        import torch

        model, _ = self._load()
        scores = []
        with torch.inference_mode():
            for request in requests:
                context = self.render(request)
                whole = self._encode(context + request.continuation)
                n_context = len(self._encode(context))
                if n_context == 0:
                    raise ConfigError("the context is empty and the tokenizer adds no BOS token: nothing to condition on")
                if len(whole) <= n_context:
                    raise ConfigError(f"continuation {request.continuation!r:.40} adds no token after its context")
                self._check_length(len(whole), 0)
                logits = model(input_ids=torch.tensor([whole])).logits[0, n_context - 1: -1].float()  # (m, vocab)
                logp = torch.log_softmax(logits, dim=-1)
                target = torch.tensor(whole[n_context:])
                picked = logp.gather(1, target[:, None])[:, 0]
                scores.append(Score(logprob=float(picked.sum()), n_tokens=len(target),
                                    greedy=bool((logp.argmax(-1) == target).all()), exact=True))
        return scores


def _cache_arg(model) -> str:
    """The forward() keyword of the KV cache: `cache` in newer transformers, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
