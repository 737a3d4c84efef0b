"""Models: the offline zoo, frozen feature extractors with a persistent cache, and the TF-IDF weak learner."""
from __future__ import annotations

from pathlib import Path

from .zoo import MODELS, ZooModel, describe, fetch_packages, gguf_path, install, resolve


def make_featurizer(model: str, *, layer: int = -1, pooling: str = "mean", max_length: int = 256,
                    cache: str | Path | None = None, progress: bool = True):
    """The feature extractor for ``model``: TF-IDF for ``tfidf``, cached transformer states otherwise.

    Both expose ``transform(texts) -> (n, d)`` (dense float32, or sparse for TF-IDF) and ``model_calls_``.
    """
    if model == "tfidf":
        from .tfidf import TfidfFeatures

        return TfidfFeatures()
    from .features import FeatureSpec, TransformerFeatures

    resolve(model, cache=cache)  # fail fast on unknown or uninstalled models
    spec = FeatureSpec(model=model, layer=layer, pooling=pooling, max_length=max_length)
    return TransformerFeatures(spec=spec, cache=cache, progress=progress)


__all__ = ["MODELS", "ZooModel", "describe", "fetch_packages", "gguf_path", "install", "make_featurizer", "resolve"]
