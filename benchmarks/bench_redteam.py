"""The red-teaming numbers (issue: "Red teaming a language model with a language model"), written to
benchmarks/out/redteam-<experiment>.json and docs/<experiment>_bench.md: each harm classifier's measured error, and
attack success per target and method (raw and corrected, with intervals), diversity, refusals and cost, for the
config given (default: the pilot). A study longer than one session runs in parts (``--targets``, ``--seeds``); each
part's numbers (no generated text) are kept in benchmarks/measured/redteam-<experiment>.json and the page shows every
part.

    python benchmarks/bench_redteam.py [--config sweeps/redteam.toml] [--targets M ..] [--seeds S ..] [--markdown-only]
        [--skip-classifiers]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from common import MEASURED, OUT, ROOT, part_key, parts_overlap, relative, save

RESULTS = OUT / "redteam-results"


def classifiers() -> list[dict]:
    """Each harm classifier trained (cached) and measured on TweetEval offensive test."""
    from w2slab.feedback.harm import KINDS, train_classifier

    rows = []
    for kind in KINDS:
        start = time.perf_counter()
        clf = train_classifier(kind)
        rows.append({"kind": kind, "seconds": round(time.perf_counter() - start, 1), **clf.metrics})
        clf.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps/redteam_pilot.toml"), help="a RedTeamConfig TOML")
    parser.add_argument("--skip-classifiers", action="store_true",
                        help="do not train and measure all three (keep the stored table)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild the page from the stored parts (benchmarks/measured/)")
    parser.add_argument("--targets", nargs="+", help="run only these targets of the config (a part)")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="run only these seeds of the config (a part); parts from other runs stay")
    args = parser.parse_args()
    from w2slab.feedback.redteam_run import RedTeamConfig, run_redteam

    config = RedTeamConfig.from_toml(args.config)
    name = f"redteam-{config.experiment}"
    stored = MEASURED / f"{name}.json"
    out = json.loads(stored.read_text()) if stored.is_file() else {"classifiers": None, "parts": {}}
    if not args.markdown_only:
        if not args.skip_classifiers:
            out["classifiers"] = classifiers()
        part = RedTeamConfig.from_toml(args.config, targets=args.targets, seeds=args.seeds)
        unknown = sorted(set(part.targets) - set(config.targets)) + sorted(set(part.seeds) - set(config.seeds))
        if unknown:
            sys.exit(f"error: not in {relative(args.config)}: {', '.join(map(str, unknown))}")
        key = part_key(targets=part.targets, seeds=part.seeds)
        start = time.perf_counter()
        study = run_redteam(part, results_dir=RESULTS / key.replace(";", "_"), progress=sys.stderr.isatty())
        out["parts"] = {k: v for k, v in out["parts"].items() if not parts_overlap(k, key)}
        out["parts"][key] = {"study": numbers_only(study), "study_s": time.perf_counter() - start}
        save(name, out, keep=out)
    page = ROOT / "docs" / f"{config.experiment.replace('-', '_')}_bench.md"  # redteam_bench.md, redteam_pilot_bench.md
    page.write_text(markdown(out, args.config, config), encoding="utf-8")


def numbers_only(study: dict) -> dict:
    """``study`` without generated text (the clusters' example test cases): what may be tracked in git."""
    return {**study, "clusters": {t: [{"size": c["size"]} for c in cs] for t, cs in study["clusters"].items()}}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def markdown(out: dict, config_path: str, config) -> str:
    from w2slab.report.redteam import attack_table

    parts = out["parts"]
    c = next(iter(parts.values()))["study"]["config"] if parts else dataclasses.asdict(config)
    done = {(a["target"], a["seed"]) for part in parts.values() for a in part["study"]["attacks"]}
    seeds = sorted({seed for _, seed in done})
    missing = [(t, s) for s in config.seeds for t in config.targets if (t, s) not in done]
    lines = ["# Red teaming: measured numbers", "",
             f"Regenerate: `python benchmarks/bench_redteam.py --config {relative(config_path)}` (2 CPU "
             "cores; `--targets` / `--seeds` run a part, and every part's numbers — no text — are kept in benchmarks/measured/). "
             "Test cases, replies and failures — generated text that may be offensive — stay in "
             "benchmarks/out/redteam-results/ (never in git). Protocol: [redteam.md](redteam.md).", "",
             f"Red LM {c['red_lm']}; targets {', '.join(config.targets)}; methods {', '.join(c['methods'])}; "
             f"{c['n_cases']} test cases per method, target and seed; seeds {', '.join(map(str, c['seeds'] if not parts else seeds))}"
             f"; replies greedy, at most {c['reply_max_tokens']} tokens; classifier {c['classifier']} at threshold "
             f"{c['threshold']}.", ""]
    if missing:
        lines += ["**Partial:** not run yet — " + ", ".join(f"{t} seed {s}" for t, s in missing)
                  + " (`--targets T --seeds S`).", ""]
    if out.get("classifiers"):
        lines += ["## Harm classifiers (measured on TweetEval offensive test, never trained on)", "",
                  "| classifier | precision | recall | false positives | false negatives | AUC | ECE | HH-RLHF held-out "
                  "pairwise acc | seconds |", "|" + "---|" * 9]
        for r in out["classifiers"]:
            pairwise = r.get("pairwise_accuracy_heldout")
            lines.append(f"| {r['kind']} ({r['evaluated_on']}) | {r['precision']:.3f} | {r['recall']:.3f} | "
                         f"{r['fpr']:.3f} | {r['fnr']:.3f} | {r['auc']:.3f} | {r['ece']:.3f} | "
                         f"{'—' if pairwise is None else round(pairwise, 3)} | {r['seconds']} |")
        lines.append("")
    if not parts:
        return "\n".join(lines) + "\n"
    studies = [parts[key]["study"] for key in sorted(parts)]
    attacks = [a for st in studies for a in st["attacks"]]
    m = studies[0]["classifier"]
    lines += ["## Attack success", "",
              f"Flagged share of replies, raw and corrected for the classifier's error (precision {m['precision']:.3f}, "
              f"recall {m['recall']:.3f}, false positives {m['fpr']:.3f}: Rogan-Gladen, 95% interval resampling the "
              "test cases and the classifier's test set); seeds pooled: the mean of their rates, the interval spanning "
              "theirs.", "",
              "| target | method | seeds | cases | unparseable | flagged (raw) | success (corrected) [95% CI] | "
              "self-BLEU | diversity | refusals |", "|" + "---|" * 10]
    for r in attack_table(attacks):
        lines.append(f"| {r['target']} | {r['method']} | {r['seeds']} | {r['cases']} | {r['unparseable']} | "
                     f"{r['flagged_raw']} | {r['success_corrected']} | {r['self_bleu']} | {r['diversity']} | "
                     f"{r['refusals']} |")
    for key in sorted(parts):
        clusters = parts[key]["study"].get("clusters") or {}
        if clusters:
            lines += ["", f"Failure clusters, {key.replace(';', ', ')} (k-means on test-case embeddings): sizes per target — "
                      + "; ".join(f"{t}: {', '.join(str(c['size']) for c in cs)}" for t, cs in clusters.items())
                      + ". The example test cases of each cluster are in the results folder's result.json "
                      "(generated text, not reproduced here)."]
    seconds = sum(p["study_s"] for p in parts.values())
    total_cases = sum(a["replied"] + a["unparseable"] for a in attacks)
    if total_cases:
        lines += ["", f"Cost on this CPU: {seconds:.0f} s for {total_cases} test cases and their replies "
                  f"(≈ {1000 * seconds / total_cases:.0f} s per 1,000 test cases; harm-classifier training (once per "
                  "machine), classifier scoring and the supervised method's training included)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
