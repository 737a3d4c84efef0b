"""A prompted causal LM as a supervisor: zero-shot, no training, soft labels from label-word log-probs.

P(class 1) comes from the LM's next-token log-probabilities of the task's two label words after the prompt
(first token of each word, with a leading space). Zero-shot LMs are biased towards one word, so the log-odds
are centred at their median over the items being labelled (label-free calibration: half the items end up
on each side, matching the tasks' balanced classes).
"""
from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PROMPT = ("{text}\nIs the statement or answer above correct? Answer yes or no.\nAnswer:", ("no", "yes"))


def check_prompt(template: str, label_words: tuple[str, str]) -> None:
    """The template must contain '{text}' and name both label words, so the LM knows its options."""
    if "{text}" not in template:
        raise ConfigError("prompt template has no '{text}' placeholder")
    if len(label_words) != 2 or len(set(label_words)) != 2:
        raise ConfigError(f"prompt needs two different label words (class 0, class 1), got {label_words!r}")
    missing = [w for w in label_words if w.lower() not in template.lower()]
    if missing:
        raise ConfigError(f"prompt template does not contain the label word(s) {', '.join(map(repr, missing))}")


class PromptedLM:
    """Scores texts with ``model`` (zoo name, folder or Hub id) under ``template`` / ``label_words``.

    ``max_text_tokens`` truncates each text (keeping its start) before it is put into the template.
    ``examples``: labelled (text, label) pairs shown before each query, each as the filled template followed
    by its label word (few-shot); empty for zero-shot.
    """

    def __init__(self, *, model: str, template: str, label_words: tuple[str, str], max_text_tokens: int = 192,
                 examples: tuple[tuple[str, int], ...] = (), batch_size: int = 8, cache=None,
                 progress: bool = True) -> None:
        self.model = model
        self.template = template
        self.label_words = tuple(label_words)
        self.examples = tuple(examples)
        self.max_text_tokens = max_text_tokens
        self.batch_size = batch_size
        self.cache = cache
        self.progress = progress

    def raw_log_odds(self, texts: list[str]) -> np.ndarray:
        """log P(word 1) - log P(word 0) at the next token, shape (n,), uncalibrated."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models import resolve

        check_prompt(self.template, self.label_words)
        path = resolve(self.model, cache=self.cache)
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"  # the next-token position is the last column for every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        word_ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in self.label_words]
        if word_ids[0] == word_ids[1]:
            raise ConfigError(f"label words {self.label_words!r} start with the same token for {self.model}")
        shots = "".join(self.template.format(text=self._truncate(tokenizer, t, 64)) + f" {self.label_words[y]}\n\n"
                        for t, y in self.examples)
        prompts = [shots + self.template.format(text=self._truncate(tokenizer, t)) for t in texts]
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        out = np.empty(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), self.batch_size), desc=f"prompting {self.model}",
                              disable=not self.progress or None, leave=False):
                idx = order[start: start + self.batch_size]
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
                logits = model(**enc).logits[:, -1, :]  # (batch, vocab)
                logp = torch.log_softmax(logits.float(), dim=-1)
                out[idx] = (logp[:, word_ids[1]] - logp[:, word_ids[0]]).numpy()
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, 2) calibrated class probabilities; column 1 is P(class = 1)."""
        log_odds = self.raw_log_odds(texts)
        p1 = 1 / (1 + np.exp(-(log_odds - np.median(log_odds))))
        return np.stack([1 - p1, p1], axis=1)

    def _truncate(self, tokenizer, text: str, max_tokens: int | None = None) -> str:
        limit = max_tokens or self.max_text_tokens
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= limit else tokenizer.decode(ids[:limit])
