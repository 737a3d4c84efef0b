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
# numbers only (no generated text), tracked in git: what a study measured survives the machine it ran on, so a
# study longer than one session lands part by part and its page can be rebuilt on a fresh clone
MEASURED = ROOT / "benchmarks" / "measured"
os.environ.setdefault("W2SLAB_DATA_DIR", str((ROOT.parent / "shared" / "datasets").resolve()))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; "" elsewhere): greedy decoding can differ between CPUs."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it (for the "Regenerate:" lines of pages)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def save(name: str, result: dict, keep: dict | None = None) -> Path:
    """Write ``result`` (plus machine facts) to benchmarks/out/<name>.json, and ``keep`` (the part of it that holds
    numbers only, no generated text) to benchmarks/measured/<name>.json, which git tracks."""
    from w2slab.io import write_json

    path = OUT / f"{name}.json"
    result = {**result, "machine": machine(), "peak_rss_gb": round(peak_rss_gb(), 2)}
    write_json(path, result)
    if keep is not None:
        write_json(MEASURED / f"{name}.json", {**keep, "machine": result["machine"], "peak_rss_gb": result["peak_rss_gb"]})
    print(json.dumps(result, indent=2))
    return path


def part_key(**cells) -> str:
    """The name of one part of a study run in parts: 'targets=a,b;seeds=0' for part_key(targets=[a, b], seeds=[0])."""
    return ";".join(f"{name}={','.join(map(str, values))}" for name, values in cells.items())


def parts_overlap(a: str, b: str) -> bool:
    """Whether two parts (:func:`part_key` names) computed a cell in common: the later part replaces the earlier
    one. Names over different fields (a part that ran only some protocols beside a whole one) never overlap."""
    fields = [dict((f.split("=")[0], set(f.split("=")[1].split(","))) for f in key.split(";")) for key in (a, b)]
    return fields[0].keys() == fields[1].keys() and all(fields[0][name] & fields[1][name] for name in fields[0])
