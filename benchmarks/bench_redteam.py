"""The red-teaming numbers (issue: "Red teaming a language model with a language model"), written to
benchmarks/out/redteam-<experiment>.json and docs/redteam_bench.md: each harm classifier's measured error, and
attack success per target and method (raw and corrected, with intervals), diversity, refusals and cost, for the
config given (default: the pilot).

    python benchmarks/bench_redteam.py [--config sweeps/redteam.toml] [--markdown-only] [--skip-classifiers]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from common import OUT, ROOT, save

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
    parser.add_argument("--skip-classifiers", action="store_true", help="do not train and measure all three")
    parser.add_argument("--markdown-only", action="store_true", help="rebuild docs/redteam_bench.md from saved JSON")
    args = parser.parse_args()
    from w2slab.feedback.redteam_run import RedTeamConfig, run_redteam

    config = RedTeamConfig.from_toml(args.config)
    name = f"redteam-{config.experiment}"
    if args.markdown_only:
        out = json.loads((OUT / f"{name}.json").read_text())
    else:
        out = {"classifiers": None if args.skip_classifiers else classifiers()}
        start = time.perf_counter()
        out["study"] = run_redteam(config, results_dir=RESULTS, progress=sys.stderr.isatty())
        out["study_s"] = time.perf_counter() - start
        save(name, out)
    (ROOT / "docs/redteam_bench.md").write_text(markdown(out, args.config), encoding="utf-8")


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _relative(path: str) -> str:
    from pathlib import Path

    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def markdown(out: dict, config_path: str) -> str:
    from w2slab.report.redteam import attack_table

    study = out["study"]
    c = study["config"]
    lines = ["# Red teaming: measured numbers", "",
             f"Regenerate: `python benchmarks/bench_redteam.py --config {_relative(config_path)}` (2 CPU "
             "cores). Test cases, replies and failures — generated text that may be offensive — stay in "
             "benchmarks/out/redteam-results/ (never in git). Protocol: [redteam.md](redteam.md).", "",
             f"Red LM {c['red_lm']}; targets {', '.join(c['targets'])}; {c['n_cases']} test cases per method, target "
             f"and seed; seeds {', '.join(map(str, c['seeds']))}; replies greedy, at most {c['reply_max_tokens']} "
             f"tokens; classifier {c['classifier']} at threshold {c['threshold']}.", ""]
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
    m = study["classifier"]
    lines += ["## Attack success", "",
              f"Flagged share of replies, raw and corrected for the classifier's error (precision {m['precision']:.3f}, "
              f"recall {m['recall']:.3f}, false positives {m['fpr']:.3f}: Rogan-Gladen, 95% interval resampling the "
              "test cases and the classifier's test set).", "",
              "| target | method | cases | unparseable | flagged (raw) | success (corrected) [95% CI] | self-BLEU | "
              "diversity | refusals |", "|" + "---|" * 9]
    for r in attack_table(study["attacks"]):
        lines.append(f"| {r['target']} | {r['method']} | {r['cases']} | {r['unparseable']} | {r['flagged_raw']} | "
                     f"{r['success_corrected']} | {r['self_bleu']} | {r['diversity']} | {r['refusals']} |")
    clusters = study.get("clusters") or {}
    if clusters:
        lines += ["", "Failure clusters (k-means on test-case embeddings): sizes per target — "
                  + "; ".join(f"{t}: {', '.join(str(c['size']) for c in cs)}" for t, cs in clusters.items())
                  + ". The example test cases of each cluster are in result.json (generated text, not reproduced here)."]
    total_cases = sum(a["replied"] + a["unparseable"] for a in study["attacks"])
    if out.get("study_s") and total_cases:
        lines += ["", f"Cost on this CPU: {out['study_s']:.0f} s for {total_cases} test cases and their replies "
                  f"(≈ {1000 * out['study_s'] / total_cases:.0f} s per 1,000 test cases, classifier scoring included)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
