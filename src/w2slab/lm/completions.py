"""What the llama.cpp and OpenAI-compatible backends share: both speak the OpenAI completions protocol, one
in-process (xllamacpp) and one over HTTP. A subclass supplies the transport (``_complete``, ``_chat``,
``_tokenize``, ``_apply_template``); this module turns batches of requests into concurrent calls and answers.

Log-likelihoods: a server that echoes prompt log-probs (vLLM, SGLang: ``echo=True``) gives them in one call;
llama.cpp does not, so the continuation is teacher-forced: one call per continuation token asks for the top-k
next-token log-probs after context + the tokens before it (the server's prompt cache makes each call cost one
token; k = 100 in-process, 20 over HTTP, where servers cap it). A token outside the top k makes the score
inexact (``Score.exact = False``), never silently wrong.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from ..errors import ConfigError, W2SError
from .base import LM, Generation, GenerationRequest, Score, ScoreRequest, truncate_at_stop

log = logging.getLogger(__name__)



class LMServerError(W2SError, RuntimeError):
    """An inference server (or the in-process engine) failed, answered with an error or with malformed data."""


class ScoringUnavailable(LMServerError):
    """The backend cannot score: a server that returns no token log-probs, or one that cannot render chat
    messages into the prompt text that scoring needs. Callers that can do without log-probs (sampled choices)
    catch this one."""


class CompletionsLM(LM):
    """Shared batch logic over an OpenAI-style completions transport; ``concurrency`` requests in flight."""

    concurrency: int = 4
    progress: bool = False
    score_top_k: int = 20  # next-token log-probs per teacher-forced step (OpenAI-style servers cap it near 20)
    _plain: int | None = None  # see _plain_token

    # --- transport (subclasses) -------------------------------------------------------------------------
    def _complete(self, payload: dict) -> dict:
        raise NotImplementedError

    def _chat(self, payload: dict) -> dict:
        raise NotImplementedError

    def _tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def _apply_template(self, messages: tuple[dict, ...]) -> str | None:
        """The rendered chat prompt, or None where the server cannot render (then chat goes to /chat)."""
        raise NotImplementedError

    # --- the contract ------------------------------------------------------------------------------------
    def render(self, request: GenerationRequest | ScoreRequest) -> str:
        if request.messages is None:
            return request.prompt
        rendered = self._apply_template(request.messages)
        if rendered is None:
            raise ConfigError(f"{self.backend} backend cannot render chat messages for this model")
        return rendered

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._tokenize(t)) for t in texts]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        jobs = [(k, i) for k, r in enumerate(requests) for i in r.sample_indices]  # (request position, sample)
        rendered = [self._apply_template(r.messages) if r.messages is not None else r.prompt for r in requests]
        bar = tqdm(total=len(jobs), desc=f"generating ({self.backend})", unit="sample",
                   disable=not self.progress or None, leave=False)
        tokens, start = 0, time.perf_counter()

        def one(job: tuple[int, int]) -> Generation:
            k, index = job
            return self._one_sample(requests[k], rendered[k], index)

        out: list[list[Generation]] = [[] for _ in requests]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for (k, _), generation in zip(jobs, pool.map(one, jobs)):
                out[k].append(generation)
                tokens += generation.completion_tokens
                bar.update(1)
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.1f}")
        bar.close()
        return out

    def _one_sample(self, request: GenerationRequest, rendered: str | None, index: int) -> Generation:
        payload = {"max_tokens": request.max_tokens, "temperature": float(request.temperature),
                   "top_p": float(request.top_p) if not request.greedy else 1.0, "seed": request.sample_seed(index),
                   **self._sampling_extras()}
        if request.stop:
            payload["stop"] = list(request.stop)
        if rendered is not None:
            answer = self._complete({**payload, "prompt": rendered})
            text = _field(answer, "choices", 0, "text")
        else:
            answer = self._chat({**payload, "messages": list(request.messages)})
            text = _field(answer, "choices", 0, "message", "content") or ""
        text, stopped = truncate_at_stop(text, request.stop)  # some servers keep the stop string
        reason = _field(answer, "choices", 0, "finish_reason") or ("stop" if stopped else "length")
        usage = answer.get("usage") or {}
        return Generation(text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          finish_reason="stop" if stopped else ("length" if reason == "length" else "stop"))

    def _sampling_extras(self) -> dict:
        """Extra sampling fields that make temperature/top_p mean the same as on other backends."""
        return {}

    def loglikelihood(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        # requests that share a context (a judge's "Yes" and "No") are scored by one thread that shares the
        # next-token calls: one prompt evaluation per distinct prefix, not one per request. Neighbouring contexts
        # that share a long beginning (one comparison asked in both orders, or with several questions) go to the
        # same thread one after another, so the server finds the common prefix in that slot's KV cache and
        # evaluates only the rest. Scheduling only: every score is the same request's score.
        contexts = [self._context(r) for r in requests]
        by_context: dict[str, list[int]] = {}
        for i, context in enumerate(contexts):
            by_context.setdefault(context, []).append(i)
        groups: list[list[int]] = []
        previous, chained = None, 0
        for context, indices in by_context.items():
            # at most 8 contexts per thread: prompts that share only a long instruction keep their parallelism
            if previous is None or chained == 8 or not _share_a_prefix(previous, context):
                groups.append([])
                chained = 0
            groups[-1] += indices
            previous, chained = context, chained + 1

        def score_group(indices: list[int]) -> list[tuple[int, Score]]:
            memo: dict[tuple[int, ...], dict[int, float]] = {}
            return [(i, self._score_one(requests[i], contexts[i], memo)) for i in indices]

        out: list[Score | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for scored in pool.map(score_group, groups):
                for i, score in scored:
                    out[i] = score
        return out

    def _context(self, request: ScoreRequest) -> str:
        context = request.prompt if request.messages is None else self._apply_template(request.messages)
        if context is None:
            raise ScoringUnavailable(f"{self.backend}: this server cannot render chat messages for scoring; "
                                     "pass the rendered prompt text instead")
        return context

    def _score_one(self, request: ScoreRequest, context: str, memo: dict) -> Score:
        whole = self._tokenize(context + request.continuation)
        n_context = len(self._tokenize(context))
        continuation = whole[n_context:]
        if not continuation:
            raise ConfigError(f"continuation {request.continuation!r:.40} adds no token after its context")
        echoed = self._echo_logprobs(whole)
        if echoed is not None:
            values = echoed[n_context:]
            return Score(logprob=float(sum(values)), n_tokens=len(values), greedy=False, exact=True)
        total, greedy, exact = 0.0, True, True
        for i, token in enumerate(continuation):
            prefix = tuple(whole[: n_context + i])
            if prefix not in memo:
                memo[prefix] = self._next_token_logprobs(list(prefix))
            top = memo[prefix]
            if token in top:
                total += top[token]
                greedy = greedy and top[token] >= max(top.values())
            else:  # outside the top k: its log-prob is at most the k-th's
                total += min(top.values())
                greedy, exact = False, False
        return Score(logprob=total, n_tokens=len(continuation), greedy=greedy, exact=exact)

    def _plain_token(self) -> int:
        """A token that is a whole character on its own (the last token of "a")."""
        if self._plain is None:
            self._plain = self._tokenize("a")[-1]
        return self._plain

    def _echo_logprobs(self, tokens: list[int]) -> list[float] | None:
        """Per-token prompt log-probs where the server echoes them (first entry None), else None."""
        return None

    def _next_token_logprobs(self, prefix: list[int]) -> dict[int, float]:
        """{token id: log-prob} of the top-k next tokens after ``prefix`` (token ids)."""
        payload = {"prompt": prefix, "max_tokens": 1, "temperature": 0.0, "logprobs": self.score_top_k,
                   **self._sampling_extras()}
        answer = self._complete(payload)
        if not _field(answer, "choices", 0).get("logprobs"):
            # llama.cpp withholds log-probs when the one token it sampled is the start of an unfinished UTF-8
            # character (an emoji's first byte). The log-probs it reports are the model's, before sampling, so
            # asking again with a bias that forces a plain ASCII token returns the same distribution.
            answer = self._complete({**payload, "logit_bias": {str(self._plain_token()): 100}})
        content = _field(answer, "choices", 0, "logprobs", "content")
        if not content or "top_logprobs" not in content[0]:
            raise ScoringUnavailable(f"{self.backend}: the server returned no token log-probs (needed for scoring)")
        return {int(t["id"]): float(t["logprob"]) for t in content[0]["top_logprobs"]}


def _share_a_prefix(a: str, b: str, *, share: float = 0.25, at_least: int = 200) -> bool:
    """Whether two prompts begin alike for at least ``at_least`` characters and ``share`` of the shorter one."""
    n = len(os.path.commonprefix([a, b]))
    return n >= at_least and n >= share * min(len(a), len(b))


def _field(answer: dict, *path):
    """answer[path...] or a clear LMServerError naming what was missing (servers answer in many shapes)."""
    value = answer
    if isinstance(value, dict) and "error" in value and value["error"]:
        raise error_from_answer(value["error"])
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise LMServerError(f"malformed answer from the LM server: no {'.'.join(map(str, path))} "
                                f"in {str(answer)[:120]}") from None
    return value


def error_from_answer(error) -> W2SError:
    """Map a server's error object to ConfigError (the request's fault: context length) or LMServerError."""
    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    kind = error.get("type", "") if isinstance(error, dict) else ""
    if "context" in kind or "context" in message.lower():
        return ConfigError(f"prompt too long for the model's context (never truncated): {message}")
    return LMServerError(f"the LM server answered with an error: {message}")
