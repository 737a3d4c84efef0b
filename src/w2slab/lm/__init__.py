"""Language models that write and score: one contract (:mod:`.base`), three backends, one generation cache.

    from w2slab.lm import load_lm, GenerationRequest, ScoreRequest
    lm = load_lm("qwen-coder-0.5b", backend="llamacpp")           # cached unless cache=False
    lm.generate([GenerationRequest(messages=({"role": "user", "content": "2+2?"},), n=8, temperature=0.7)])
    lm.loglikelihood([ScoreRequest(prompt="Answer A or B: ", continuation="A")])

Backends: ``llamacpp`` (in-process llama.cpp, zoo decoders and .gguf files), ``transformers`` (folders, Hub ids,
zoo decoders; trainable, LoRA adapters), ``openai`` (any OpenAI-compatible server at ``base_url``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import ConfigError, DataError, UnknownNameError
from .base import LM, Generation, GenerationRequest, Score, ScoreRequest
from ..io import read_jsonl_objects
from .cache import CachedLM, GenerationCache

BACKENDS = ("llamacpp", "transformers", "openai")


def load_lm(model: str | None, *, backend: str = "llamacpp", base_url: str | None = None, adapter: str | None = None,
            cache: str | Path | None | bool = None, progress: bool = False, **options) -> LM:
    """An LM for ``model`` on ``backend``, wrapped in the generation cache (``cache=False``: no cache; a path:
    that cache root). ``options`` go to the backend's constructor (context, parallel, threads, concurrency,
    timeout, max_retries, identity, max_context)."""
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    root = None if cache is None or isinstance(cache, bool) else cache
    if backend == "openai":
        if not base_url:
            raise ConfigError("the openai backend needs base_url (e.g. http://127.0.0.1:8080/v1)")
        from .openai_http import OpenAILM

        lm: LM = OpenAILM(base_url=base_url, model=model, progress=progress, **options)
    else:
        if base_url:
            raise ConfigError(f"base_url is for the openai backend, not {backend}")
        if not model:
            raise ConfigError(f"the {backend} backend needs a model name")
        if backend == "llamacpp":
            from .llamacpp import LlamaCppLM

            lm = LlamaCppLM(model=model, cache=root, progress=progress, adapter=adapter, **options)
        else:
            from .hf import HFLM

            lm = HFLM(model=model, adapter=adapter, cache=root, progress=progress, **options)
    return lm if cache is False else CachedLM(lm, cache=root)


def read_prompts(path: str | Path) -> list[dict]:
    """Prompts from a JSONL file: one object per line with "prompt" (text) or "messages" (chat), optional "id".

    Returns the objects; raises DataError naming the line for anything else (an empty file included)."""
    rows = []
    for number, row in read_jsonl_objects(path, "prompts"):
        if ("prompt" in row) == ("messages" in row):
            raise DataError(f"prompts file {path}, line {number}: needs exactly one of \"prompt\" or \"messages\"")
        rows.append(row)
    return rows


def read_score_pairs(path: str | Path) -> tuple[list[dict], list[ScoreRequest]]:
    """(rows, ScoreRequests) from a JSONL file: one {"prompt" or "messages", "continuation"} per line, other
    fields kept in the rows; DataError naming the line for anything else."""
    rows, requests = [], []
    for number, row in read_jsonl_objects(path, "pairs"):
        try:
            context = {"messages": tuple(row["messages"])} if "messages" in row else {"prompt": row["prompt"]}
            requests.append(ScoreRequest(continuation=row["continuation"], **context))
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"pairs file {path}, line {number}: needs \"prompt\" or \"messages\" and "
                            f"\"continuation\" ({err})") from None
        rows.append(row)
    return rows, requests


def in_chunks(call, requests: list, *, chunk: int = 64) -> list:
    """``call(requests[i : i + chunk])`` for each chunk, the answers concatenated (``call``: an LM's ``generate`` or
    ``loglikelihood``). With a cached LM each finished chunk is stored at once, so a run killed part-way recomputes
    at most one chunk, not the whole batch."""
    out = []
    for start in range(0, len(requests), chunk):
        out += call(requests[start: start + chunk])
    return out


def generate_in_chunks(lm: LM, requests: list[GenerationRequest], *, chunk: int = 64) -> list[list[Generation]]:
    """``lm.generate(requests)`` as calls of about ``chunk`` samples each. A sampled request with more samples is
    split into runs of consecutive sample indices, which keep their seeds and cache keys, so the result is the
    one call's. With a cached LM each finished call is stored at once: a run killed part-way recomputes at most
    one chunk. Returns one list of Generations per request, as ``generate`` does."""
    pieces: list[tuple[int, GenerationRequest]] = []
    for i, request in enumerate(requests):
        if request.greedy or request.n <= chunk:
            pieces.append((i, request))
        else:
            pieces += [(i, dataclasses.replace(request, first_sample=request.first_sample + start,
                                               n=min(chunk, request.n - start)))
                       for start in range(0, request.n, chunk)]
    batches: list[list[tuple[int, GenerationRequest]]] = [[]]
    size = 0  # samples in the last batch
    for piece in pieces:
        if batches[-1] and size + piece[1].n > chunk:
            batches.append([])
            size = 0
        batches[-1].append(piece)
        size += piece[1].n
    out: list[list[Generation]] = [[] for _ in requests]
    for batch in batches:
        if batch:
            for (i, _), samples in zip(batch, lm.generate([r for _, r in batch])):
                out[i] += samples
    return out


def requests_from_rows(rows: list[dict], **sampling) -> list[GenerationRequest]:
    """GenerationRequests from prompt rows (see :func:`read_prompts`) with the same ``sampling`` settings."""
    out = []
    for i, row in enumerate(rows):
        try:
            if "messages" in row:
                out.append(GenerationRequest(messages=tuple(row["messages"]), **sampling))
            else:
                out.append(GenerationRequest(prompt=row["prompt"], **sampling))
        except ConfigError as err:
            raise ConfigError(f"prompt {i + 1}: {err}") from None
    return out


def generate(model: str | None, prompts: list[str | dict], *, backend: str = "llamacpp", n: int = 1,
             temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 128, stop: tuple[str, ...] = (),
             seed: int = 0, **load_options) -> list[list[Generation]]:
    """Sample ``n`` completions of each prompt (a string, or a row with "prompt" / "messages"); cached."""
    rows = [{"prompt": p} if isinstance(p, str) else p for p in prompts]
    requests = requests_from_rows(rows, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                  stop=tuple(stop), seed=seed)
    with load_lm(model, backend=backend, **load_options) as lm:
        return lm.generate(requests)


def score(model: str | None, pairs: list[tuple[str, str]], *, backend: str = "llamacpp", **load_options) -> list[Score]:
    """log P(continuation | context) for each (context, continuation) pair; cached."""
    requests = [ScoreRequest(prompt=context, continuation=continuation) for context, continuation in pairs]
    with load_lm(model, backend=backend, **load_options) as lm:
        return lm.loglikelihood(requests)


__all__ = ["BACKENDS", "CachedLM", "Generation", "GenerationCache", "GenerationRequest", "LM", "Score",
           "ScoreRequest", "generate", "in_chunks", "load_lm", "read_prompts", "read_score_pairs", "requests_from_rows",
           "score"]
