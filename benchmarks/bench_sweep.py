"""Sweep machinery: planning a 10,000-run grid, executor overhead per run (local vs Ray), kill -9 resume.

1. Plan + cache lookup of a 10,000-run grid (5 tasks × 10 pairs × 10 methods × 20 seeds) against a run
   folder already holding 5,000 results; also the `w2slab sweep plan` command end to end.
2. Executor overhead on cached features: sweeps of N = 8 … 128 runs (SST-2, TF-IDF → MiniLM, 400 items,
   5 epochs), stage outputs fresh each time. Per executor: wall time, Σ job seconds, and the overhead
   per run = (wall − Σ job seconds / processes) / N; a least-squares line wall = a + b·N shows linearity.
3. Kill -9 in the middle of a 48-run sweep, three times, then resume to the end: finished stages
   recomputed (by inode + mtime), rows lost or duplicated, artifacts that fail to load.
Run: .venv/bin/python benchmarks/bench_sweep.py [--sizes 8,16,32,64,128]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import OUT, ROOT, save
from w2slab.paths import cache_dir as default_cache
from w2slab.runner.driver import plan_sweep, run_sweep
from w2slab.runner.store import ResultsStore
from w2slab.runner.sweep import Sweep

SMALL = ('name = "{name}"\ntasks = ["sst2"]\npairs = [["tfidf", "minilm"]]\nmethods = ["xent"]\nseeds = {seeds}\n'
         'n_examples = 400\nepochs = 5\nn_bootstrap = 200\n')


def linked_cache(folder: Path) -> Path:
    """A cache with the user's features, models and tasks but no stage outputs."""
    folder.mkdir(parents=True)
    for area in ("features", "models", "tasks"):
        (default_cache() / area).mkdir(parents=True, exist_ok=True)
        (folder / area).symlink_to(default_cache() / area)
    return folder


def bench_plan(tmp: Path) -> dict:
    grid = {"tasks": ["sst2", "boolq", "sciq", "anli", "piqa"], "ladder": ["tfidf", "minilm-l3", "minilm", "mpnet",
            "smollm2"], "methods": ["xent", "logconf", "product", "xent+filter", "xent+entropy", "xent+self2",
            "logconf+filter", "product+filter", "xent+softself2", "xent+mixup"], "seeds": 20,
            "models": [{"name": "minilm-l3", "base": "minilm", "layer": 3}]}
    cache = tmp / "plan-cache"
    runs = Sweep.from_dict(grid).runs(os.environ["W2SLAB_DATA_DIR"])
    folder = cache / "stages" / "run"
    folder.mkdir(parents=True)
    for run in runs[::2]:
        (folder / f"{run.key}.npz").touch()
    t0 = time.perf_counter()
    plan = plan_sweep(grid, cache_dir=cache)
    python_s = time.perf_counter() - t0
    toml = tmp / "grid.toml"
    toml.write_text("\n".join(f"{k} = {_toml(v)}" for k, v in grid.items() if k != "models")
                    + '\n[[models]]\nname = "minilm-l3"\nbase = "minilm"\nlayer = 3\n')
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "w2slab.cli", "sweep", "plan", str(toml), "--cache-dir", str(cache)],
                         capture_output=True, text=True, check=True)
    cli_s = time.perf_counter() - t0
    return {"runs": len(plan.runs), "cached": len(plan.cached), "plan_and_lookup_s": round(python_s, 3),
            "cli_sweep_plan_s (incl. python start)": round(cli_s, 2), "cli_last_line": out.stdout.strip().splitlines()[-1]}


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def bench_executors(tmp: Path, sizes: list[int]) -> dict:
    # features of the 400 items once, so every measured sweep runs on cached features
    warm = tmp / "warm.toml"
    warm.write_text(SMALL.format(name="warm", seeds=1))
    run_sweep(warm, executor="serial", results_dir=tmp / "warm-results", progress=False)
    out = {}
    for executor, processes in (("serial", 1), ("local", 2), ("ray", 2)):
        rows = []
        for n in sizes:
            path = tmp / f"{executor}-{n}.toml"
            path.write_text(SMALL.format(name=f"{executor}-{n}", seeds=n))
            cache = linked_cache(tmp / f"cache-{executor}-{n}")
            result = run_sweep(path, executor=executor, processes=processes, cache_dir=cache,
                               results_dir=tmp / "results", progress=False)
            assert not result.failures and result.computed == n, result.failures[:1]
            wall, jobs = result.timings["total_s"], result.timings["jobs_s"]
            rows.append({"runs": n, "wall_s": round(wall, 2), "job_s": round(jobs, 2),
                         "overhead_per_run_s": round((wall - jobs / processes) / n, 3)})
            print(executor, rows[-1], flush=True)
        n, wall = np.array([r["runs"] for r in rows]), np.array([r["wall_s"] for r in rows])
        slope, intercept = np.polyfit(n, wall, 1)
        fit = intercept + slope * n
        out[executor] = {"processes": processes, "rows": rows, "seconds_per_run (slope)": round(float(slope), 3),
                         "fixed_s (intercept)": round(float(intercept), 2),
                         "r2": round(float(1 - ((wall - fit) ** 2).sum() / ((wall - wall.mean()) ** 2).sum()), 4)}
    out["ray_vs_local_seconds_per_run"] = round(out["ray"]["seconds_per_run (slope)"]
                                                / out["local"]["seconds_per_run (slope)"], 2)
    out["ray_vs_local_wall_at_largest"] = round(out["ray"]["rows"][-1]["wall_s"] / out["local"]["rows"][-1]["wall_s"], 2)
    return out


def bench_kill(tmp: Path, kills: int = 3, n: int = 48) -> dict:
    path = tmp / "kill.toml"
    path.write_text(SMALL.format(name="kill", seeds=n))
    cache, results = linked_cache(tmp / "kill-cache"), tmp / "kill-results"
    command = [sys.executable, "-m", "w2slab.cli", "sweep", "run", str(path), "--cache-dir", str(cache),
               "--results-dir", str(results), "--no-progress", "--executor", "local", "--processes", "2"]
    rng = np.random.default_rng(0)
    recomputed, runs_at_kill = 0, []
    before: dict = {}
    for k in range(kills):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        target = len(_files(cache, "run")) + int(rng.integers(3, 8))
        while len(_files(cache, "run")) < target and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.3)))  # land anywhere inside the next stage
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        now = _identities(cache)
        recomputed += sum(1 for p, ident in before.items() if now.get(p) != ident)
        before = now
        runs_at_kill.append(len(_files(cache, "run")))
    final = run_sweep(path, executor="local", processes=2, cache_dir=cache, results_dir=results, progress=False)
    now = _identities(cache)
    recomputed += sum(1 for p, ident in before.items() if now.get(p) != ident)
    corrupt = 0
    for p in now:
        try:
            with np.load(p) as data:
                data.files
        except Exception:  # noqa: BLE001 - counting, not handling
            corrupt += 1
    rows = ResultsStore(results / "results.sqlite").dataframe("runs")
    expected_rows = 3 * n  # floor, ceiling and transfer row per seed
    return {"runs": n, "kills": kills, "finished_runs_at_each_kill": runs_at_kill,
            "resumed_cached": final.cached, "resumed_computed": final.computed,
            "finished_stages_recomputed": recomputed, "rows": len(rows), "rows_expected": expected_rows,
            "duplicated_rows": int(len(rows) - rows.run_key.nunique()),
            "lost_rows": int(expected_rows - rows.run_key.nunique()), "corrupt_artifacts": corrupt,
            "stage_files_checked": len(now)}


def _files(cache: Path, stage: str) -> list[Path]:
    return list((cache / "stages" / stage).glob("*.npz"))


def _identities(cache: Path) -> dict:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache / "stages").rglob("*.npz")}


def plot(result: dict) -> Path:
    """docs/sweep_scaling.png: total wall time vs number of runs per executor, with the fitted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from w2slab.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, data in result["executors"].items():
        if not isinstance(data, dict):
            continue
        n = np.array([r["runs"] for r in data["rows"]])
        ax.plot(n, [r["wall_s"] for r in data["rows"]], "o", label=f"{name} ({data['processes']} proc.)")
        ax.plot(n, data["fixed_s (intercept)"] + data["seconds_per_run (slope)"] * n, "-", alpha=0.5,
                color=ax.lines[-1].get_color())
    ax.set_xlabel("runs in the sweep (cached features)")
    ax.set_ylabel("total wall time (s)")
    ax.set_title("sweep time vs size: points measured, lines least-squares fits")
    ax.legend()
    target = ROOT / "docs" / "sweep_scaling.png"
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="8,16,32,64,128")
    parser.add_argument("--plot-only", action="store_true", help="redraw docs/sweep_scaling.png from out/sweep.json")
    args = parser.parse_args()
    if args.plot_only:
        import json

        print(plot(json.loads((OUT / "sweep.json").read_text())))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        result = {"command": f"python benchmarks/bench_sweep.py --sizes {args.sizes}",
                  "plan_10k": bench_plan(tmp)}
        print(result["plan_10k"], flush=True)
        result["executors"] = bench_executors(tmp, sizes)
        result["kill_resume"] = bench_kill(tmp)
    save("sweep", result)
    plot(result)


if __name__ == "__main__":
    main()
