"""The LM contract: generation and log-likelihood scoring over *batches* of requests (after lm-evaluation-harness's
``LM``), so a backend can schedule a whole batch at once (llama.cpp slots, an HTTP server's concurrency).

A backend implements four methods on batches and states its ``identity`` (a fingerprint of the weights, never a
path); :class:`w2slab.lm.cache.CachedLM` wraps any backend with the generation cache.

- ``render(request)``: the exact prompt text a chat request becomes under the model's chat template.
- ``generate(requests)``: for each request, ``request.n`` samples, as ``list[list[Generation]]``.
- ``loglikelihood(requests)``: for each (context, continuation), the continuation's summed log-probability.
- ``count_tokens(texts)``: prompt sizes, for context checks and accounting.

Every sample has its own seed derived from (request seed, sample index), so sample i of a k-sample request is
the same whatever k is, and the cache can store samples one by one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

from ..errors import ConfigError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample from: plain text ``prompt`` or chat ``messages`` (rendered with the model's template).

    ``n`` samples at ``temperature`` (0 = greedy) and nucleus ``top_p`` in (0, 1]; at most ``max_tokens`` new
    tokens; generation stops before the first of ``stop``. ``seed`` makes sampling reproducible where the backend
    can promise it (see docs/lm.md)."""

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    first_sample: int = 0  # the samples are indices first_sample .. first_sample + n - 1 (the cache asks for gaps)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ConfigError("a generation request needs exactly one of prompt or messages")
        if self.messages is not None:
            object.__setattr__(self, "messages", check_messages(self.messages))
        elif not isinstance(self.prompt, str) or not self.prompt:
            raise ConfigError(f"prompt must be a non-empty string, got {self.prompt!r:.60}")
        object.__setattr__(self, "stop", tuple(self.stop))
        check_sampling(n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def settings(self) -> dict:
        """What besides the prompt determines a sample (the cache key's part)."""
        if self.greedy:  # top_p and seed cannot change a greedy decode
            return {"temperature": 0.0, "max_tokens": self.max_tokens, "stop": list(self.stop)}
        return {"temperature": float(self.temperature), "top_p": float(self.top_p), "max_tokens": self.max_tokens,
                "stop": list(self.stop)}

    @property
    def sample_indices(self) -> range:
        """The indices of this request's samples."""
        return range(self.first_sample, self.first_sample + self.n)

    def sample_seed(self, index: int) -> int:
        """The seed of sample ``index``: independent of n, so raising n keeps samples 0..n-1 unchanged."""
        return derive_seed(self.seed, index)


@dataclasses.dataclass(frozen=True)
class Generation:
    """One sample: its ``text`` (stop sequence excluded), token counts and why it ended ('stop' or 'length')."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """log P(continuation | context). The context is plain ``prompt`` text or chat ``messages`` (rendered with
    the generation prompt, so the continuation is the assistant's reply)."""

    continuation: str
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ConfigError("a score request needs exactly one of prompt or messages")
        if self.messages is not None:
            object.__setattr__(self, "messages", check_messages(self.messages))
        elif not isinstance(self.prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(self.prompt).__name__}")
        if not isinstance(self.continuation, str) or not self.continuation:
            raise ConfigError("continuation must be a non-empty string")


@dataclasses.dataclass(frozen=True)
class Score:
    """Summed natural-log probability of a continuation (higher = more likely), over ``n_tokens`` tokens.

    ``greedy``: every continuation token was the argmax. ``exact`` is False where a backend only sees top-k
    log-probs and a token fell outside them; ``logprob`` is then an upper bound taken from the k-th entry."""

    logprob: float
    n_tokens: int
    greedy: bool
    exact: bool = True


def check_sampling(*, n: int, temperature: float, top_p: float, max_tokens: int) -> None:
    """Raise ConfigError naming the first sampling setting out of range."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n (samples per prompt) must be an integer >= 1, got {n!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0 or temperature == float("inf"):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")


def check_messages(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Validate chat messages: a non-empty list of {role, content} with known roles; returns them as a tuple."""
    if isinstance(messages, (str, bytes)) or not messages:
        raise ConfigError("messages must be a non-empty list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ConfigError(f"message {i} must have exactly the keys role and content, got {message!r:.80}")
        if message["role"] not in ("system", "user", "assistant"):
            raise ConfigError(f"message {i}: role must be system, user or assistant, got {message['role']!r}")
        if not isinstance(message["content"], str):
            raise ConfigError(f"message {i}: content must be a string")
        out.append({"role": message["role"], "content": message["content"]})
    return tuple(out)


def derive_seed(seed: int, index: int) -> int:
    """A 31-bit seed for sample ``index`` of a request seeded ``seed`` (hash-mixed, so neighbours never collide)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def messages_key(messages: tuple[Message, ...]) -> str:
    """A canonical text of chat messages, for cache keys where the backend cannot render the template."""
    return json.dumps(list(messages), sort_keys=True, ensure_ascii=False)


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` before the first occurrence of any stop string; returns (text, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class LM:
    """Base of the backends. Subclasses set ``identity`` and ``backend`` and implement the batch methods."""

    backend: str = ""
    identity: str = ""  # weights fingerprint plus anything else that changes outputs (an adapter)
    deterministic: bool = False  # same seed → same text, promised by this backend

    def render(self, request: GenerationRequest | ScoreRequest) -> str:
        """The prompt text the model sees: ``prompt`` as is, or ``messages`` under the chat template."""
        raise NotImplementedError

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        """``request.n`` samples per request, in order."""
        raise NotImplementedError

    def loglikelihood(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        """One Score per request, in order."""
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model tokenises a prompt (special tokens included)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or connection (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
