"""Time of the protocol itself on cached features: 10k examples of GLUE SST-2, MiniLM → MPNet.

1. Features for both models are computed (or found in the cache) first and timed separately.
2. One full experiment (floor + ceiling + transfer, one loss, one seed), stage cache off.
3. The same with 3 losses × 3 seeds, stage cache off: (t2 - t1) / 8 is the cost of each extra (loss, seed).
Run: .venv/bin/python benchmarks/bench_experiment.py [--n 10000]
"""
from __future__ import annotations

import argparse
import tempfile

from common import peak_rss_gb, save, timed
from w2slab.runner import ExperimentConfig, run_experiment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--task", default="sst2_glue")
    args = parser.parse_args()
    base = ExperimentConfig(task=args.task, weak=("minilm",), strong=("mpnet",), losses=("xent",), seeds=1,
                            n_examples=args.n)
    with tempfile.TemporaryDirectory() as results:
        warm, warm_s = timed(run_experiment, base, results_dir=results, progress=False, reuse=False)
        one, one_s = timed(run_experiment, base, results_dir=results, progress=False, reuse=False)
        grid = ExperimentConfig(**{**base.to_dict(), "losses": ("xent", "logconf", "product"), "seeds": 3})
        many, many_s = timed(run_experiment, grid, results_dir=results, progress=False, reuse=False)
    extra = (many_s - one_s) / 8
    save("experiment", {
        "command": f"python benchmarks/bench_experiment.py --n {args.n} --task {args.task}",
        "items": sum(one.split_sizes.values()), "split_sizes": one.split_sizes,
        "first_call_s (features computed or loaded)": round(warm_s, 2),
        "features_s_first_call": {k: round(v, 2) for k, v in warm.timings.items() if k.startswith("features")},
        "one_experiment_cached_features_s": round(one_s, 2),
        "one_experiment_stage_breakdown_s": round(one.timings["stages_s"], 2),
        "grid_3_losses_x_3_seeds_s": round(many_s, 2),
        "per_extra_loss_seed_s": round(extra, 2),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "table": many.table(),
    })


if __name__ == "__main__":
    main()
