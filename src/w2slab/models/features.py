"""Frozen features: pooled hidden states of a pretrained transformer, cached on disk per text.

Pooling (over non-padding tokens of the chosen layer):
- ``mean``: average of token states (default; for decoders too, since their last token alone carries
  little sentence information without a task prompt),
- ``last``: the last non-padding token (the usual choice for decoders fine-tuned as classifiers),
- ``first``: the first token (BERT's [CLS]).
``layer`` indexes ``hidden_states``: 0 is the embedding output, -1 the last layer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..io import stable_hash, text_digests
from ..paths import cache_dir
from . import zoo
from .feature_store import FeatureStore

log = logging.getLogger(__name__)

POOLINGS = ("mean", "last", "first")
EXTRACTOR_VERSION = 1  # bump when the computation changes, so old cached vectors are not reused


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What determines a feature vector. ``max_length`` in tokens (longer texts are truncated)."""

    model: str
    layer: int = -1
    pooling: str = "mean"
    max_length: int = 256

    def __post_init__(self) -> None:
        check_layer(self.model, self.layer)
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ConfigError(f"max_length must be an integer >= 2, got {self.max_length!r}")


def check_layer(model: str, layer: int) -> None:
    """ConfigError when ``layer`` is outside ``hidden_states`` of ``model`` (layers + 1 entries, negative from the
    end). Known without loading for zoo models and local folders; other models are checked when they load."""
    if model == "tfidf" or model.startswith("prompt"):
        return
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise ConfigError(f"layer must be an integer, got {layer!r}")
    layers = None
    if model in zoo.MODELS:
        layers = zoo.MODELS.get(model).layers
    elif (Path(model).expanduser() / "config.json").is_file():
        config = json.loads((Path(model).expanduser() / "config.json").read_text())
        layers = config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers")
    if layers is not None and not -(layers + 1) <= layer <= layers:
        raise ConfigError(f"layer {layer} is outside {model}'s hidden states (0 = embeddings … {layers} = last, "
                          f"or -1 … -{layers + 1} from the end)")


def model_fingerprint(path: str) -> str:
    """Identity of a model's weights: config bytes plus size and head/tail bytes of every weights file.

    Cheaper than hashing hundreds of MB, and changes whenever the weights file is replaced. A Hub id
    without a local folder is identified by the id itself (the Hub revision is resolved by transformers).
    """
    folder = Path(path)
    if not folder.is_dir():
        return f"hub:{path}"
    digest = hashlib.sha256((folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b"")
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            digest.update(f.read(1 << 20))
    return digest.hexdigest()[:24]


class TransformerFeatures:
    """Pooled hidden states of a Hugging Face model, computed once per text and cached.

    Parameters are stored as given; the model is loaded on the first ``transform`` that needs it.
    batch_size and device do not change results and stay out of the cache key.
    """

    def __init__(self, *, spec: FeatureSpec, batch_size: int = 32, device: str = "cpu",
                 cache: str | Path | None = None, progress: bool = True) -> None:
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.progress = progress
        self.model_calls_ = 0  # batches run through the model; tests count these to prove cache hits
        self._loaded = None

    def store(self) -> FeatureStore:
        path = zoo.resolve(self.spec.model, cache=self.cache)
        key = stable_hash({"weights": model_fingerprint(path), "layer": self.spec.layer,
                           "pooling": self.spec.pooling, "max_length": self.spec.max_length,
                           "version": EXTRACTOR_VERSION})
        # Named by content only: the same weights reached by zoo name or by folder path share vectors.
        root = cache_dir(self.cache) / "features" / key
        meta = root / "spec.json"
        if not meta.is_file():
            root.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps({**dataclasses.asdict(self.spec), "path": path}, indent=2))
        return FeatureStore(root)

    def transform(self, texts: list[str]) -> np.ndarray:
        """Features for ``texts``: float32 array of shape (n, hidden_size)."""
        store = self.store()
        digests = text_digests(texts)
        todo = store.missing(digests)
        if len(todo):
            unique = dict.fromkeys(todo.tolist())  # duplicate texts are computed once
            first = {}
            for i in unique:
                first.setdefault(digests[i], i)
            idx = list(first.values())
            vectors = self.compute([texts[i] for i in idx])
            store.put(digests[idx], vectors)
        return store.get(digests)

    def compute(self, texts: list[str]) -> np.ndarray:
        """Run the model on ``texts`` (no cache): float32 (n, hidden), batches sorted by token length."""
        import torch

        model, tokenizer = self._model()
        encoded = tokenizer(texts, truncation=True, max_length=self.spec.max_length)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up at once
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        batches = [order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc=f"features {self.spec.model}", disable=not self.progress or None,
                              leave=False):
                features = tokenizer.pad({k: [encoded[k][i] for i in batch] for k in encoded}, return_tensors="pt")
                features = {k: v.to(self.device) for k, v in features.items()}
                out[batch] = self._pool(model(**features, output_hidden_states=self.spec.layer != -1),
                                        features["attention_mask"]).float().cpu().numpy()
                self.model_calls_ += 1
        return out

    def _pool(self, output, mask):
        import torch

        states = output.last_hidden_state if self.spec.layer == -1 else output.hidden_states[self.spec.layer]
        if self.spec.pooling == "mean":
            weights = mask.unsqueeze(-1).to(states.dtype)  # (batch, tokens, 1)
            return (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        if self.spec.pooling == "first":
            return states[:, 0]
        last = mask.sum(1) - 1  # right padding: index of the last real token
        return states[torch.arange(states.shape[0]), last]

    def _model(self):
        if self._loaded is None:
            self._loaded = load_backbone(self.spec.model, cache=self.cache, device=self.device)
        return self._loaded


def load_backbone(name: str, *, cache: str | Path | None = None, device: str = "cpu"):
    """(model, tokenizer) for a zoo name, local folder or Hub id; eval mode, fp32, right padding."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = zoo.resolve(name, cache=cache)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
    n_layers = getattr(model.config, "num_hidden_layers", None)
    log.info("loaded %s (%s layers) from %s", name, n_layers, path)
    return model, tokenizer

