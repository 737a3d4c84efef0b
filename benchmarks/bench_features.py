"""Feature extraction throughput vs. the raw forward pass of the same model on the same texts.

raw: tokenize a batch of 32 texts in dataset order, pad to the batch's longest, forward, mean-pool;
raw (length-sorted): the same loop over the texts pre-sorted by token count (the fairest baseline).
w2slab: ``TransformerFeatures.compute`` (length-sorted batches, same batch size), and ``transform`` with a
cold cache (compute + write float16 chunks) and a warm cache (memory-mapped reads only).
Run: .venv/bin/python benchmarks/bench_features.py [--minilm N] [--mpnet N]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from common import save, timed
from w2slab.models.features import FeatureSpec, TransformerFeatures, load_backbone
from w2slab.tasks import load_task


def raw_forward(model, tokenizer, texts, batch_size=32, max_length=256) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i: i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(((states * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def bench(name: str, texts: list[str]) -> dict:
    model, tokenizer = load_backbone(name)
    raw_forward(model, tokenizer, texts[:64])  # warm-up
    raw, raw_s = timed(raw_forward, model, tokenizer, texts)
    by_length = sorted(texts, key=lambda t: -len(tokenizer(t)["input_ids"]))
    _, raw_sorted_s = timed(raw_forward, model, tokenizer, by_length)
    with tempfile.TemporaryDirectory() as cache:
        extractor = TransformerFeatures(spec=FeatureSpec(model=name), cache=cache, progress=False)
        extractor._loaded = (model, tokenizer)  # same loaded weights: time the extraction, not the load
        ours, ours_s = timed(extractor.compute, texts)
        cold, cold_s = timed(extractor.transform, texts)
        warm, warm_s = timed(TransformerFeatures(spec=FeatureSpec(model=name), cache=cache, progress=False).transform,
                             texts)
    assert np.allclose(raw, ours, atol=1e-4), "sorted batching changed the features"
    n = len(texts)
    return {"model": name, "texts": n, "mean_tokens": float(np.mean([len(tokenizer(t)["input_ids"]) for t in texts])),
            "raw_texts_per_s": n / raw_s, "raw_length_sorted_texts_per_s": n / raw_sorted_s,
            "w2slab_compute_texts_per_s": n / ours_s,
            "w2slab_cold_transform_texts_per_s": n / cold_s, "w2slab_warm_cache_texts_per_s": n / warm_s,
            "ratio_compute_vs_raw": raw_s / ours_s, "ratio_cold_transform_vs_raw": raw_s / cold_s,
            "ratio_cold_transform_vs_raw_length_sorted": raw_sorted_s / cold_s,
            "max_abs_diff_cached_vs_fp32": float(np.abs(warm - ours).max())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minilm", type=int, default=2000)
    parser.add_argument("--mpnet", type=int, default=500)
    args = parser.parse_args()
    task = load_task("sst2", n_examples=max(args.minilm, args.mpnet), seed=1)
    results = [bench("minilm", task.texts[: args.minilm]), bench("mpnet", task.texts[: args.mpnet])]
    save("features", {"command": "python benchmarks/bench_features.py", "results": results})


if __name__ == "__main__":
    main()
