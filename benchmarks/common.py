"""Helpers shared by the benchmarks: the data mirror, timing, and writing results as JSON."""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
os.environ.setdefault("W2SLAB_DATA_DIR", str((ROOT.parent / "shared" / "datasets").resolve()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def save(name: str, result: dict) -> Path:
    from w2slab.io import write_json

    path = OUT / f"{name}.json"
    write_json(path, {**result, "machine": machine(), "peak_rss_gb": round(peak_rss_gb(), 2)})
    print(json.dumps(result, indent=2))
    return path
