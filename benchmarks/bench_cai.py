"""The Constitutional-AI numbers (issue: "Constitutional AI and RLAIF"), written to benchmarks/out/cai-<experiment>.json
and docs/<experiment>_bench.md: agreement of each AI-feedback setting with human labels, the gap recovered by a preference
model trained on AI labels, cost per 1,000 labels, and the policy before / after SL-CAI and DPO.

    python benchmarks/bench_cai.py [--config sweeps/cai.toml] [--markdown-only]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from common import MEASURED, OUT, ROOT, relative, save
from w2slab.report.table import gap_text

RESULTS = OUT / "cai-results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps/cai.toml"), help="a CaiConfig TOML")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild the page from saved JSON (benchmarks/out/, else benchmarks/measured/)")
    args = parser.parse_args()
    from w2slab.feedback.cai_run import CaiConfig, run_cai

    config = CaiConfig.from_toml(args.config)
    name = f"cai-{config.experiment}"
    if args.markdown_only:  # the benchmark's saved numbers, else what a stopped run stored so far
        candidates = [OUT / f"{name}.json", RESULTS / "cai" / config.experiment / "result.json", MEASURED / f"{name}.json"]
        out = json.loads(next((p for p in candidates if p.is_file()), candidates[0]).read_text())
    else:
        start = time.perf_counter()
        out = run_cai(config, results_dir=RESULTS, progress=sys.stderr.isatty())
        out["total_s"] = time.perf_counter() - start
        save(name, out, keep=numbers_only(out))
    page = ROOT / "docs" / f"{config.experiment.replace('-', '_')}_bench.md"  # cai_bench.md, cai_rest_bench.md
    page.write_text(markdown(out, args.config), encoding="utf-8")


def numbers_only(out: dict) -> dict:
    """``out`` without generated text (the chain-of-thought examples): what benchmarks/measured/ may keep."""
    return {**out, "settings": [{k: v for k, v in s.items() if k != "reasoning_examples"} for s in out["settings"]]}


def _labels(config: dict) -> list[str]:
    from w2slab.feedback.cai_run import SETTING_DEFAULTS, setting_label

    return [setting_label({**SETTING_DEFAULTS, **s}) for s in config["settings"]]


def _cost(s: dict) -> str:
    """Seconds per 1,000 labels as measured when the setting was labelled from scratch; a lower bound ("≥") when
    the run read some of its model calls from the cache, "—" when an older row does not say."""
    if s.get("cost"):
        return f"{s['cost']['per_1000_s']:.0f}"
    if s.get("cache_hits") is None:
        return "—"
    if s["cache_hits"] == 0:
        return f"{s['per_1000_s']:.0f}"
    return f"≥ {s['per_1000_s']:.0f} ({s['cache_hits']} of {s['model_calls']} calls cached)"


def markdown(out: dict, config_path: str) -> str:
    c = out["config"]
    lines = ["# Constitutional AI: measured numbers", "",
             f"Regenerate: `python benchmarks/bench_cai.py --config {relative(config_path)}` (2 CPU cores). "
             "SL-CAI critiques and revisions (generated text) stay in benchmarks/out/cai-results/. Protocol: "
             "[cai.md](cai.md).", "",
             f"{out['pairs']['n']} HH-RLHF harmless-base pairs ({out['pairs']['held_out']} held out by conversation; "
             f"{out['pairs']['skipped_identical_or_malformed']} skipped as identical or malformed); preference models "
             f"on {c['features']} features, seeds {', '.join(map(str, c['seeds']))}.", "",
             *(["**Partial:** the run stopped after these settings; not measured yet: "
                + ", ".join(sorted(set(_labels(c)) - {s["label"] for s in out["settings"]})) + ".", ""]
               if out.get("complete") is False else []),
             "## AI feedback vs human labels", "",
             "| feedback setting | pairs (held out) | agreement [95% CI] | position flips | AI alone (held out) | PM on "
             "AI labels | PM on human labels | gap recovered [95% CI] | s per 1,000 labels |", "|" + "---|" * 9]
    for s in out["settings"]:
        a, g = s["agreement"], s["gap"]
        flips = "—" if s["flip_rate"] is None else f"{100 * s['flip_rate']:.0f}%"
        lines.append(f"| {s['label']} | {a['n']} ({g['n_test']}) | {a['agreement']:.3f} [{a['ci'][0]:.3f}, "
                     f"{a['ci'][1]:.3f}] | {flips} | {g['floor']:.3f} | {g['transfer']:.3f} | {g['ceiling']:.3f} | "
                     f"{gap_text(g)} | {_cost(s)} |")
    lines.append("\nSeconds per 1,000 labels (both orders are two model calls per label, an ensemble of k questions "
                 "2k) are measured in the run that labelled the setting from scratch on this machine's 2 cores; "
                 "\"≥\" marks a lower bound from a run that read some model calls from the cache.")
    tuned = [s for s in out["settings"] if s.get("finetune")]
    for s in tuned:
        f = s["finetune"]
        lines.append(f"\n`{s['label']}`: LoRA SFT on {f['pairs']} human-labelled pairs (both orders, "
                     f"{f['metrics']['examples']} examples) that share no conversation with the measured pairs and "
                     f"lie outside the held-out ones; {f['metrics']['seconds']:.0f} s of "
                     "training (included in its cost).")
    sampled = [s for s in out["settings"] if s.get("unparseable_views") is not None]
    for s in sampled:
        lines.append(f"\n`{s['label']}` (sampled choices, marked): {s['unparseable_views']} views without a "
                     "readable letter counted as 0.5.")
    policy = out.get("policy")
    if policy:
        # results of an older run carry the toxicity classifier alone, as "classifier" and a raw "harm_rate"
        classifiers = policy.get("classifiers") or {"toxicity": policy["classifier"]}
        lines += ["", "## The policy before and after", "",
                  f"{c['policy']} on {c['eval_prompts']} held-out red-team prompts (greedy): harm rate by each harm "
                  "classifier, raw and corrected for its error measured on TweetEval offensive test (Rogan-Gladen, 95% "
                  "interval over prompts and the classifier's test set); mean reward under the human-trained "
                  "preference model; refusals and length. Classifiers: "
                  + "; ".join(f"{kind} precision {m['precision']:.3f}, recall {m['recall']:.3f}, false positives "
                              f"{m['fpr']:.3f}" for kind, m in classifiers.items()) + ".", "",
                  "| policy | " + " | ".join(f"{kind} flagged (raw) | {kind} corrected [95% CI]"
                                             for kind in classifiers) + " | reward | refusals | words |", "|---|" + "---|---|" * len(classifiers) + "---|---|---|"]
        for stage in ("before", "after_sl", "after_dpo"):
            if stage in policy:
                p = policy[stage]
                harm = p.get("harm") or {"toxicity": {"raw": p["harm_rate"], "corrected": None}}
                cells = []
                for kind in classifiers:
                    h = harm[kind]
                    corrected = ("—" if h.get("corrected") is None else
                                 f"{h['corrected']:.3f} [{h['corrected_ci'][0]:.3f}, {h['corrected_ci'][1]:.3f}]")
                    cells += [f"{h['raw']:.3f}", corrected]
                lines.append(f"| {stage} | " + " | ".join(cells) + f" | {p['reward']:+.3f} | {p['refusal_rate']:.3f} | "
                             f"{p['mean_words']:.0f} |")
        lines.append(f"\nDPO pairs: {policy.get('dpo_pairs', 0)} (identical answer pairs skipped: "
                     f"{policy.get('identical_answer_pairs_skipped', 0)}).")
    if out.get("total_s"):
        lines.append(f"\nTotal wall time on this CPU: {out['total_s']:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
