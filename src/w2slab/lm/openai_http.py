"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama) through the official ``openai`` client.

``concurrency`` requests in flight, ``max_retries`` bounded retries with the client's back-off, ``timeout`` seconds
per request. One request per sample (llama.cpp servers ignore ``n``). Plain prompts go to ``/v1/completions``;
chat messages are rendered by the server's ``/apply-template`` where it has one (llama.cpp), else sent to
``/v1/chat/completions``. The model's identity is the served model's name unless ``identity`` is given: a server
cannot prove which weights it runs, so pass ``identity`` when one name may serve different weights.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from ..errors import ConfigError
from .completions import CompletionsLM, LMServerError, _field, error_from_answer

log = logging.getLogger(__name__)


class OpenAILM(CompletionsLM):
    """A model behind ``base_url`` (e.g. ``http://127.0.0.1:8080/v1``); ``model`` as the server names it
    (None: the first model the server lists)."""

    backend = "openai"

    def __init__(self, *, base_url: str, model: str | None = None, api_key: str = "none", concurrency: int = 4,
                 timeout: float = 120.0, max_retries: int = 2, identity: str | None = None,
                 progress: bool = False) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.progress = progress
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not timeout > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        import openai

        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        if self.model is None:
            self.model = self._first_model()
        self.identity = identity or f"served:{self.model}"
        self._no_template = False
        self._echo: bool | None = None

    def _call(self, fn, **kwargs) -> dict:
        try:
            return fn(**kwargs).model_dump()
        except self._openai.APITimeoutError:
            raise LMServerError(f"the LM server at {self.base_url} did not answer within {self.timeout:g} s "
                                f"({self.max_retries} retries)") from None
        except self._openai.APIConnectionError:
            raise LMServerError(f"cannot reach the LM server at {self.base_url} ({self.max_retries} retries)") from None
        except self._openai.APIStatusError as err:
            try:
                body = err.response.json()
            except ValueError:
                body = {"error": {"message": err.response.text[:200]}}
            raise error_from_answer((body.get("error") if isinstance(body, dict) else None) or {"message": str(err)}) from None
        except (ValueError, TypeError) as err:  # a body that is not the JSON the client expects
            raise LMServerError(f"malformed answer from the LM server at {self.base_url}: {err}") from None

    def _first_model(self) -> str:
        listing = self._call(self._client.models.list)
        models = listing.get("data") or []
        if not models:
            raise LMServerError(f"the LM server at {self.base_url} lists no model")
        return models[0]["id"]

    def _complete(self, payload: dict) -> dict:
        extra = {k: payload.pop(k) for k in ("top_k", "min_p", "repeat_penalty", "echo") if k in payload}
        return self._call(self._client.completions.create, model=self.model, extra_body=extra or None, **payload)

    def _chat(self, payload: dict) -> dict:
        extra = {k: payload.pop(k) for k in ("top_k", "min_p", "repeat_penalty") if k in payload}
        return self._call(self._client.chat.completions.create, model=self.model, extra_body=extra or None, **payload)

    def _sampling_extras(self) -> dict:
        return {"top_k": 0, "min_p": 0.0}

    def _root_post(self, route: str, body: dict) -> dict:
        """POST to the server root (``/tokenize``, ``/apply-template`` sit beside ``/v1``)."""
        root = self.base_url.rstrip("/").removesuffix("/v1")
        request = urllib.request.Request(root + route, data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json",
                                                   "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise LMServerError(f"the LM server has no usable {route} ({err.code})") from None
        except (urllib.error.URLError, TimeoutError) as err:
            raise LMServerError(f"cannot reach the LM server at {root}{route}: {err}") from None
        except ValueError:
            raise LMServerError(f"malformed answer from {root}{route}") from None

    def _tokenize(self, text: str) -> list[int]:
        try:  # llama.cpp
            answer = self._root_post("/tokenize", {"content": text, "add_special": True})
        except LMServerError:  # vLLM / SGLang
            answer = self._root_post("/tokenize", {"model": self.model, "prompt": text})
        return [int(t) for t in _field(answer, "tokens")]

    def _apply_template(self, messages: tuple[dict, ...]) -> str | None:
        if self._no_template:
            return None
        try:
            return _field(self._root_post("/apply-template", {"messages": list(messages)}), "prompt")
        except LMServerError:
            self._no_template = True  # the chat endpoint renders instead; cache keys use the messages
            return None

    def render(self, request) -> str:
        if request.messages is not None and self._apply_template(request.messages) is None:
            from .base import messages_key

            return "chat:" + messages_key(request.messages)
        return super().render(request)

    def _echo_logprobs(self, tokens: list[int]) -> list[float] | None:
        if self._echo is False:
            return None
        try:
            answer = self._complete({"prompt": tokens, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
                                     "echo": True})
            values = (answer["choices"][0].get("logprobs") or {}).get("token_logprobs")
        except (LMServerError, ConfigError, KeyError, IndexError):
            values = None
        self._echo = bool(values) and len(values) >= len(tokens)
        if not self._echo:
            return None
        return [0.0] + [float(v) for v in values[1: len(tokens)]]  # the first token has no log-prob
