"""The fine-tuning path on this CPU: training throughput, one W2S experiment per student mode, peak memory.

1. Throughput (training examples/s) of full fine-tuning and LoRA for MiniLM and MPNet on real SST-2
   sentences (and MiniLM on longer Amazon reviews), with w2slab's loop (length-bucketed batches, dynamic
   padding) and with the naive loop (random batches padded to max_length = 128). One epoch's time is
   t(2 epochs) - t(1 epoch), so model loading and tokenising are not counted.
2. SST-2, 2,000 items, weak MiniLM (probe) → strong MPNet: student_mode probe vs lora (2 epochs), 1 seed:
   floor, transfer, ceiling, PGR and wall time.
3. Peak RSS of a fresh process fine-tuning MPNet fully at batch 16 (64 texts, max_length 128).
Run: .venv/bin/python benchmarks/bench_finetune.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import numpy as np

from common import save
from w2slab.runner import run_experiment
from w2slab.tasks import load_task
from w2slab.training.finetune import FineTuner


def epoch_seconds(model: str, texts, labels, **settings) -> float:
    times = []
    for epochs in (1, 2):
        t0 = time.perf_counter()
        FineTuner(model, epochs=epochs, batch_size=16, seed=0, **settings).fit(texts, labels)
        times.append(time.perf_counter() - t0)
    return times[1] - times[0]


def throughput() -> list[dict]:
    rows = []
    sst2 = load_task("sst2", n_examples=600, seed=1)
    amazon = load_task("amazon_polarity", n_examples=400, seed=1)
    for task, model, n in ((sst2, "minilm", 256), (amazon, "minilm", 128), (sst2, "mpnet", 128)):
        texts, labels = np.array(task.texts[:n], dtype=object), task.labels[:n].astype(np.float32)
        for mode in ("full", "lora"):
            fast = epoch_seconds(model, texts, labels, mode=mode)
            naive = epoch_seconds(model, texts, labels, mode=mode, bucket=False, padding="max_length")
            rows.append({"task": task.name, "model": model, "mode": mode, "examples": n,
                         "dynamic_ex_per_s": round(n / fast, 1), "naive_padded_ex_per_s": round(n / naive, 1),
                         "speedup": round(naive / fast, 2)})
            print(rows[-1], flush=True)
    return rows


def experiments() -> list[dict]:
    rows = []
    for mode in ("probe", "lora"):
        with tempfile.TemporaryDirectory() as results:
            t0 = time.perf_counter()
            r = run_experiment(task="sst2", weak=("minilm",), strong=("mpnet",), losses=("xent",), seeds=1,
                               n_examples=2000, student_mode=mode, ft_epochs=2, results_dir=results, progress=False)
            wall = time.perf_counter() - t0
        s = r.summaries[0]
        rows.append({"student_mode": mode, "wall_s": round(wall, 1), "split_sizes": r.split_sizes,
                     "floor": round(s["floor"], 3), "transfer": round(s["transfer"], 3),
                     "ceiling": round(s["ceiling"], 3), "pgr": None if s["pgr"] is None else round(s["pgr"], 2),
                     "pgr_ci": [s["pgr_low"], s["pgr_high"]], "defined": bool(s["defined"]), "reason": s["reason"]})
        print(rows[-1], flush=True)
    return rows


PEAK = """
import resource, numpy as np
from w2slab.tasks import load_task
from w2slab.training.finetune import FineTuner
t = load_task("sst2", n_examples=200, seed=2)
FineTuner("mpnet", epochs=1, batch_size=16, seed=0).fit(np.array(t.texts[:64], dtype=object),
                                                        t.labels[:64].astype(np.float32))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""


def main() -> None:
    peak = float(subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True,
                                check=True).stdout.strip().splitlines()[-1])
    print("peak", peak, flush=True)
    result = {"command": "python benchmarks/bench_finetune.py", "mpnet_full_finetune_batch16_peak_rss_gb":
              round(peak, 2), "throughput": throughput(), "sst2_2k_minilm_to_mpnet": experiments()}
    save("finetune", result)


if __name__ == "__main__":
    main()
