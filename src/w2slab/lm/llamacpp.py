"""llama.cpp in-process through ``xllamacpp`` (a prebuilt CPU wheel): the fast path on CPU.

The engine runs ``parallel`` slots with continuous batching; a batch of requests is sent from as many threads,
and llama.cpp interleaves them. Chat messages are rendered with the GGUF's own template (llama.cpp's
``/apply-template``), so the cache keys on the exact prompt text. The same engine can listen as an
OpenAI-compatible HTTP server (:func:`serve`), which is what the ``openai`` backend's tests talk to.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ConfigError, UnknownNameError
from ..io import file_fingerprint
from .completions import CompletionsLM, LMServerError, _field

log = logging.getLogger(__name__)


def gguf_for(model: str, *, cache: str | Path | None = None) -> Path:
    """A zoo decoder's GGUF file, or a ``.gguf`` path given directly."""
    from ..models import MODELS, gguf_path

    if model in MODELS:
        return gguf_path(model, cache=cache)
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path.resolve()
    raise UnknownNameError(f"llamacpp backend needs a zoo decoder ({', '.join(n for n in MODELS.names() if MODELS.get(n).gguf)}) "
                           f"or a .gguf file, got {model!r}")


def start_engine(gguf: Path, *, context: int, parallel: int, threads: int, host: str = "127.0.0.1", port: int = 0,
                 lora: Path | None = None):
    """An ``xllamacpp.Server`` for ``gguf`` with ``parallel`` slots of ``context`` tokens each, listening on
    ``host:port`` (0 = any free port; the in-process backend uses the socket only for tokenising); ``lora``: a
    LoRA GGUF (:mod:`.lora_gguf`) applied at scale 1."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = context * parallel  # llama.cpp splits n_ctx across the slots
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    params.verbosity = -1
    params.hostnames = [host]
    params.port = port
    if lora is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
    try:
        return xllamacpp.Server(params)
    except Exception as err:  # the engine reports a bad file as a plain exception
        raise LMServerError(f"llama.cpp could not load {gguf}: {err}") from None


class LlamaCppLM(CompletionsLM):
    """A GGUF decoder (zoo name or .gguf path) in-process. ``context``: tokens per slot (prompt + generation);
    ``parallel``: slots (= concurrent requests); ``threads``: CPU threads. Loaded on first use."""

    backend = "llamacpp"
    deterministic = True  # per-request seeds; see docs/lm.md for the batching caveat
    score_top_k = 100  # in-process there is no server cap on returned log-probs

    def __init__(self, *, model: str, context: int = 2048, parallel: int = 4, threads: int = 2,
                 cache: str | Path | None = None, progress: bool = False, adapter: str | Path | None = None) -> None:
        self.model = model
        self.adapter = adapter
        self.context = context
        self.parallel = parallel
        self.threads = threads
        self.cache = cache
        self.progress = progress
        if not isinstance(context, int) or context < 16:
            raise ConfigError(f"context must be an integer >= 16 tokens, got {context!r}")
        if not isinstance(parallel, int) or parallel < 1:
            raise ConfigError(f"parallel must be an integer >= 1, got {parallel!r}")
        self.concurrency = parallel
        self._gguf = gguf_for(model, cache=cache)
        self.identity = f"gguf:{file_fingerprint(self._gguf)}"
        self._lora = None
        if adapter is not None:
            from .lora_gguf import export_lora_gguf

            self._lora = export_lora_gguf(adapter, self._gguf)
            self.identity += f"+lora:{file_fingerprint(self._lora)}"
        self._server = None
        self._lock = threading.Lock()  # batch threads must not start two engines
        self._templates: dict[str, str] = {}
        self._prompt_sizes: dict[str, int] = {}

    @property
    def server(self):
        with self._lock:
            if self._server is None:
                self._server = start_engine(self._gguf, context=self.context, parallel=self.parallel,
                                            threads=self.threads, lora=self._lora)
        return self._server

    def _complete(self, payload: dict) -> dict:
        self._check_length(payload)
        return self.server.handle_completions(payload)

    def _chat(self, payload: dict) -> dict:
        return self.server.handle_chat_completions(payload)

    def _check_length(self, payload: dict) -> None:
        prompt = payload["prompt"]
        if isinstance(prompt, list):
            n = len(prompt)
        else:  # n samples of one prompt tokenise it once
            n = self._prompt_sizes.get(prompt) or self._prompt_sizes.setdefault(prompt, len(self._tokenize(prompt)))
            if len(self._prompt_sizes) > 4096:
                self._prompt_sizes.clear()
        if n + payload.get("max_tokens", 0) > self.context:
            raise ConfigError(f"prompt of {n} tokens + max_tokens {payload.get('max_tokens', 0)} exceeds the context "
                              f"of {self.context} tokens (raise context=; prompts are never truncated)")

    def _sampling_extras(self) -> dict:
        # llama.cpp samples with top_k 40 and min_p 0.05 by default; off, so temperature/top_p mean what they
        # mean on the other backends
        return {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}

    def _post(self, route: str, body: dict) -> dict:
        request = urllib.request.Request(self.server.listening_address + route, data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ValueError) as err:
            raise LMServerError(f"llama.cpp engine did not answer {route}: {err}") from None

    def _tokenize(self, text: str) -> list[int]:
        return [int(t) for t in _field(self._post("/tokenize", {"content": text, "add_special": True}), "tokens")]

    def _apply_template(self, messages: tuple[dict, ...]) -> str | None:
        key = json.dumps(messages)
        if key not in self._templates:
            self._templates[key] = _field(self._post("/apply-template", {"messages": list(messages)}), "prompt")
        return self._templates[key]

    def close(self) -> None:
        self._server = None  # the engine shuts down when collected


def serve(model: str, *, port: int = 0, context: int = 2048, parallel: int = 4, threads: int = 2,
          cache: str | Path | None = None):
    """Start an OpenAI-compatible llama.cpp server for ``model`` on 127.0.0.1:``port``; returns the engine
    (keep a reference: the server stops when it is collected). Its base URL is ``engine.listening_address + '/v1'``."""
    return start_engine(gguf_for(model, cache=cache), context=context, parallel=parallel, threads=threads, port=port)
