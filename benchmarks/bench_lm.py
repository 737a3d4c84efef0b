"""The LM layer's numbers (issue: "Language models that write"), written to benchmarks/out/lm.json and docs/lm_bench.md.

1. tokens/s per backend × model, 1 stream and 4 concurrent requests, against xllamacpp called directly;
2. 10,000 cached generations re-read through CachedLM; 4 processes writing one cache;
3. log-prob agreement, transformers (dequantised fp32) vs llama.cpp (Q4), SmolLM2, 200 SST-2 (prefix, next words);
4. LoRA SFT and DPO throughput and peak RSS (fresh process each) on smollm2 and qwen-coder-0.5b, and a DPO run on
   200 HH-RLHF harmless pairs with the implicit reward margin on 100 held-out pairs before and after.

    python benchmarks/bench_lm.py [--models smollm2,qwen-coder-0.5b,qwen-coder-1.5b] [--skip-training]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import OUT, ROOT, save

PROMPTS = ["Explain in two sentences why the sky is blue.", "Write a Python function that reverses a string.",
           "List three uses of a paperclip.", "What is the difference between a list and a tuple in Python?",
           "Describe a cat to someone who has never seen one.", "Give one tip for writing clear emails.",
           "Why do we have seasons on Earth?", "Summarise the plot of Romeo and Juliet in one sentence."]
MAX_TOKENS = 48


def _payloads(lm, n):
    from w2slab.lm import GenerationRequest
    from w2slab.lm.base import derive_seed

    rendered = [lm.render(GenerationRequest(messages=({"role": "user", "content": p},))) for p in PROMPTS[:n]]
    # exactly what the llamacpp backend sends for sample 0 of each request, so all paths do the same work
    return [{"prompt": r, "max_tokens": MAX_TOKENS, "temperature": 0.7, "top_p": 1.0, "seed": derive_seed(i, 0),
             "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0} for i, r in enumerate(rendered)]


def throughput(model: str, port: int) -> list[dict]:
    """tokens/s of direct xllamacpp, the llamacpp backend and the openai backend (server process), 1 and 4 streams."""
    from w2slab.lm import GenerationRequest, load_lm
    from w2slab.lm.llamacpp import gguf_for, start_engine

    rows = []
    server = subprocess.Popen([sys.executable, "-m", "w2slab.cli", "serve", "--model", model, "--port", str(port),
                               "--parallel", "4", "--context", "512"], stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    try:
        for streams, n in ((1, 4), (4, 8)):
            engine = start_engine(gguf_for(model), context=512, parallel=streams, threads=2)
            backend = load_lm(model, backend="llamacpp", cache=False, context=512, parallel=streams)
            remote = load_lm(None, backend="openai", base_url=f"http://127.0.0.1:{port}/v1", cache=False,
                             concurrency=streams)
            payloads = _payloads(backend, n)
            requests = [GenerationRequest(prompt=p["prompt"], temperature=0.7, max_tokens=MAX_TOKENS, seed=i)
                        for i, p in enumerate(payloads)]

            def direct():
                with ThreadPoolExecutor(streams) as pool:
                    answers = list(pool.map(engine.handle_completions, payloads))
                return sum(a["usage"]["completion_tokens"] for a in answers)

            def through(lm):
                return lambda: sum(g[0].completion_tokens for g in lm.generate(requests))

            backend.generate(requests[:1]), remote.generate(requests[:1]), engine.handle_completions(payloads[0])  # warm
            for name, fn in (("xllamacpp direct", direct), ("w2slab llamacpp", through(backend)),
                             ("w2slab openai (server process)", through(remote))):
                start = time.perf_counter()
                tokens = fn()
                seconds = time.perf_counter() - start
                rows.append({"model": model, "streams": streams, "path": name, "tokens": tokens,
                             "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)})
                print(rows[-1], flush=True)
            del engine, backend, remote
    finally:
        server.terminate()
        server.wait()
    return rows


def _writer(args):
    path, worker, n = args
    from w2slab.lm import Generation, GenerationCache

    store = GenerationCache(path)
    for start in range(0, n, 250):  # half of each worker's keys are shared with the next worker
        keys = [f"k{worker * n // 2 + i}" for i in range(start, start + 250)]
        store.put_generations("m", [(k, Generation(k, 10, 20, "stop")) for k in keys])
    store.close()


def cache_numbers(tmp: Path) -> dict:
    """Re-read 10,000 cached samples through CachedLM (keys from real requests); 4 concurrent writer processes."""
    from w2slab.lm import Generation, GenerationRequest, load_lm

    lm = load_lm("smollm2", backend="llamacpp", cache=tmp / "c1")
    requests = [GenerationRequest(prompt=f"Question {i}: what is {i} + {i}?", n=10, temperature=0.8, max_tokens=32)
                for i in range(1000)]
    keys = [k for r in requests for k in lm.sample_keys(r)]
    lm.cache.put_generations(lm.identity, [(k, Generation(f"answer {k[:8]}", 12, 20, "stop")) for k in keys])
    start = time.perf_counter()
    samples = lm.generate(requests)
    reread = time.perf_counter() - start
    assert lm.backend_calls == 0 and sum(len(s) for s in samples) == 10_000
    path, n = tmp / "c2.sqlite", 5000
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_writer, [(path, w, n) for w in range(4)])
    writers_s = time.perf_counter() - start
    from w2slab.lm import GenerationCache

    store = GenerationCache(path)
    expected = {f"k{w * n // 2 + i}" for w in range(4) for i in range(n)}
    got = store.get_generations(sorted(expected))
    rows = store.counts()["generations"]
    return {"reread_10000_s": round(reread, 3), "writers": 4, "writes_attempted": 4 * n, "distinct_keys": len(expected),
            "rows_stored": rows, "lost": len(expected) - len(got), "duplicated": rows - len(expected),
            "writers_wall_s": round(writers_s, 2)}


def logprob_agreement(data_dir: str) -> dict:
    """Spearman correlation of llama.cpp (Q4) vs transformers (fp32) log-probs on 200 SST-2 (prefix, 3 words)."""
    from scipy.stats import spearmanr

    from w2slab.lm import ScoreRequest, load_lm
    from w2slab.tasks import load_task

    texts = [t for t in load_task("sst2", data_dir=data_dir, n_examples=600, seed=0).texts if len(t.split()) >= 8][:200]
    requests = []
    for t in texts:
        words = t.split()
        cut = len(words) // 2
        requests.append(ScoreRequest(prompt=" ".join(words[:cut]), continuation=" " + " ".join(words[cut: cut + 3])))
    llama = load_lm("smollm2", backend="llamacpp", cache=False)
    fast, t_fast = _timed(llama.loglikelihood, requests)
    exact, t_exact = _timed(load_lm("smollm2", backend="transformers", cache=False).loglikelihood, requests)
    a, b = [s.logprob for s in fast], [s.logprob for s in exact]
    both = [(x, y) for x, y, s in zip(a, b, fast) if s.exact]
    rho = spearmanr(a, b).statistic
    return {"pairs": len(requests), "top_k": llama.score_top_k, "spearman_all": round(float(rho), 4),
            "spearman_exact_only": round(float(spearmanr(*zip(*both)).statistic), 4), "llamacpp_exact": len(both),
            "mean_abs_diff_nats": round(sum(abs(x - y) for x, y in both) / len(both), 3),
            "llamacpp_s": round(t_fast, 1), "transformers_s": round(t_exact, 1)}


def _timed(fn, *args):
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


TRAIN_SCRIPT = """
import json, sys
from w2slab.tasks.preference import hh_preference_pairs
from w2slab.training.policy import PolicyTraining, train_dpo, train_sft
kind, model, n, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
pairs = hh_preference_pairs(sys.argv[5], max_chars=400)[:n]
config = PolicyTraining(epochs=1, batch_size=4, max_length=128, lr=5e-4, seed=0)
if kind == "sft":
    out = train_sft(model, [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs], config=config, cache=cache)
else:
    out = train_dpo(model, pairs, config=config, cache=cache)
print("RESULT " + json.dumps({**out.metrics, "adapter": str(out.adapter)}))
"""


def training(data_dir: str, cache: str) -> dict:
    rows = []
    for model, n in (("smollm2", 32), ("qwen-coder-0.5b", 16)):
        for kind in ("sft", "dpo"):
            done = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, kind, model, str(n), cache, data_dir],
                                  capture_output=True, text=True)
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise RuntimeError(done.stderr[-2000:])
            metrics = json.loads(line[0][7:])
            rows.append({"model": model, "kind": kind, "examples": n, **{k: metrics[k] for k in (
                "examples_per_s", "peak_rss_mb", "seconds", "first_loss", "last_loss")}})
            print(rows[-1], flush=True)
    return {"throughput": rows, "dpo_margin": dpo_margin(data_dir, cache)}


def dpo_margin(data_dir: str, cache: str) -> dict:
    """DPO (smollm2, LoRA) on 200 HH harmless pairs; implicit reward margin on 100 held-out pairs before/after."""
    from w2slab.lm import ScoreRequest, load_lm
    from w2slab.tasks.preference import hh_preference_pairs
    from w2slab.training.policy import PolicyTraining, train_dpo

    pairs = hh_preference_pairs(data_dir, max_chars=400)
    train, held = pairs[:200], pairs[200:300]
    config = PolicyTraining(epochs=1, batch_size=4, max_length=128, lr=5e-4, beta=0.1, seed=0)
    trained = train_dpo("smollm2", train, config=config, cache=cache)

    def logps(adapter, key):
        lm = load_lm("smollm2", backend="transformers", adapter=adapter, cache=cache)
        return [s.logprob for s in lm.loglikelihood([ScoreRequest(prompt=p["prompt"], continuation=p[key]) for p in held])]

    base_c, base_r = logps(None, "chosen"), logps(None, "rejected")
    new_c, new_r = logps(trained.adapter, "chosen"), logps(trained.adapter, "rejected")
    margins = [config.beta * ((nc - bc) - (nr - br)) for nc, bc, nr, br in zip(new_c, base_c, new_r, base_r)]
    import numpy as np

    rng = np.random.default_rng(0)
    boot = [float(np.mean(rng.choice(margins, len(margins)))) for _ in range(2000)]
    return {"train_pairs": len(train), "held_out_pairs": len(held), "beta": config.beta,
            "mean_implicit_margin": round(float(np.mean(margins)), 4),
            "margin_95ci": [round(float(np.quantile(boot, q)), 4) for q in (0.025, 0.975)],
            "share_positive": round(float(np.mean(np.array(margins) > 0)), 3),
            "base_prefers_chosen": round(float(np.mean(np.array(base_c) > np.array(base_r))), 3),
            "trained_prefers_chosen": round(float(np.mean(np.array(new_c) > np.array(new_r))), 3),
            "train_seconds": trained.metrics["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="smollm2,qwen-coder-0.5b,qwen-coder-1.5b")
    parser.add_argument("--sections", default="cache,agreement,throughput,training",
                        help="which parts to (re)measure; the others are kept from benchmarks/out/lm.json")
    args = parser.parse_args()
    import os

    data_dir = os.environ["W2SLAB_DATA_DIR"]
    sections = set(args.sections.split(","))
    previous = OUT / "lm.json"
    result = {k: v for k, v in json.loads(previous.read_text()).items() if k in ("cache", "logprob_agreement",
              "throughput", "training", "notes")} if previous.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if "cache" in sections:
            result["cache"] = cache_numbers(Path(tmp))
            print(result["cache"], flush=True)
        if "agreement" in sections:
            result["logprob_agreement"] = logprob_agreement(data_dir)
            print(result["logprob_agreement"], flush=True)
        if "throughput" in sections:
            result["throughput"] = [row for m in args.models.split(",") for row in throughput(m, _free_port())]
        if "training" in sections:
            result["training"] = training(data_dir, str(Path(tmp) / "train"))
    save("lm", result)
    write_markdown(result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_markdown(result: dict) -> None:
    lines = ["# LM layer: measured numbers", "", "Regenerate: `python benchmarks/bench_lm.py` (2 CPU cores; timings vary",
             "up to 2× from minute to minute, compare within one run). Raw: benchmarks/out/lm.json.", "",
             f"## Generation throughput (chat prompts, up to {MAX_TOKENS} new tokens each at temperature 0.7, the same "
             "seeds on every path)", "",
             "| model | streams | path | tokens | s | tokens/s | vs direct |", "|---|---|---|---|---|---|---|"]
    direct = {(r["model"], r["streams"]): r["tokens_per_s"] for r in result["throughput"] if r["path"] == "xllamacpp direct"}
    for r in result["throughput"]:
        ratio = r["tokens_per_s"] / direct[(r["model"], r["streams"])]
        lines.append(f"| {r['model']} | {r['streams']} | {r['path']} | {r['tokens']} | {r['seconds']} | "
                     f"{r['tokens_per_s']} | {ratio:.0%} |")
    c = result["cache"]
    lines += ["", "## Generation cache", "",
              f"- 10,000 cached samples (1,000 requests × n = 10) re-read through `CachedLM.generate`: "
              f"{c['reread_10000_s']} s (keys from real requests; the entries were inserted, not generated).",
              f"- 4 processes writing {c['writes_attempted']} samples ({c['distinct_keys']} distinct keys, half shared "
              f"between neighbours) into one SQLite cache: {c['rows_stored']} rows, {c['lost']} lost, "
              f"{c['duplicated']} duplicated, {c['writers_wall_s']} s."]
    a = result["logprob_agreement"]
    lines += ["", "## Log-prob agreement, SmolLM2: llama.cpp (Q4_1) vs transformers (dequantised fp32)", "",
              f"{a['pairs']} SST-2 (first half of a sentence, next 3 words) pairs: Spearman ρ = {a['spearman_all']} "
              f"over all; {a['llamacpp_exact']} of {a['pairs']} llama.cpp scores exact (every token in the top "
              f"{a.get('top_k', 20)}), "
              f"ρ = {a['spearman_exact_only']} on those, mean |difference| {a['mean_abs_diff_nats']} nats. "
              f"Time: llama.cpp {a['llamacpp_s']} s (teacher-forced, one call per token), transformers {a['transformers_s']} s."]
    if "training" in result:
        lines += ["", "## Policy training (LoRA r = 8, batch 4, max 128 tokens, 1 epoch; fresh process each)", "",
                  "| model | trainer | examples | examples/s | peak RSS MB | s | first → last loss |", "|---|---|---|---|---|---|---|"]
        for r in result["training"]["throughput"]:
            lines.append(f"| {r['model']} | {r['kind']} | {r['examples']} | {r['examples_per_s']} | {r['peak_rss_mb']} | "
                         f"{r['seconds']} | {r['first_loss']:.3f} → {r['last_loss']:.3f} |")
        lines += ["", "Peak RSS is the training process's own high-water mark (VmHWM). TRL drops pairs whose prompt alone "
                  "exceeds 128 tokens."]
        lines += [f"Note: {note}" for note in result.get("notes", [])]
        d = result["training"].get("dpo_margin")
        if d is None:
            lines += ["", "DPO margin run on 200 pairs: not finished in this run."]
        else:
            lines += ["", f"DPO on {d['train_pairs']} HH-RLHF harmless-base pairs (SmolLM2, β = {d['beta']}, "
                          f"{d['train_seconds']} s): implicit reward margin on {d['held_out_pairs']} held-out pairs "
                          f"{d['mean_implicit_margin']} (95% bootstrap CI {d['margin_95ci']}), positive on "
                          f"{d['share_positive']:.0%}; the policy prefers the human-chosen reply on "
                          f"{d['base_prefers_chosen']:.0%} of held-out pairs before and "
                          f"{d['trained_prefers_chosen']:.0%} after."]
    from w2slab.io import atomic_path

    with atomic_path(ROOT / "docs" / "lm_bench.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
