"""The oversight numbers (issue: "Scalable-oversight protocols"), written to benchmarks/out/oversight-<experiment>.json
and docs/oversight_bench.md: judge accuracy per protocol with intervals, the gap recovered, calibration, position
flips, consultancy persuasiveness, verified quotes and tokens, for the config given (default: the pilot).

    python benchmarks/bench_oversight.py [--config sweeps/oversight.toml] [--markdown-only]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from common import OUT, ROOT, relative, save

RESULTS = OUT / "oversight-results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps/oversight_pilot.toml"), help="an OversightConfig TOML")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild docs/oversight_bench.md from the stored result.json and rows")
    args = parser.parse_args()
    from w2slab.feedback.oversight_run import OversightConfig, run_oversight

    config = OversightConfig.from_toml(args.config)
    if args.markdown_only:
        out = json.loads((RESULTS / "oversight" / config.experiment / "result.json").read_text())
    else:
        start = time.perf_counter()
        out = run_oversight(config, results_dir=RESULTS, progress=sys.stderr.isatty())
        out["total_s"] = time.perf_counter() - start
        save(f"oversight-{config.experiment}", out)
    (ROOT / "docs/oversight_bench.md").write_text(markdown(out, args.config), encoding="utf-8")


def _share(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def markdown(out: dict, config_path: str) -> str:
    from w2slab.report.judging import oversight_table
    from w2slab.runner.store import ResultsStore

    c = out["config"]
    rows = oversight_table([s for s in ResultsStore(RESULTS / "results.sqlite").query("summaries",
                                                                                     experiment=c["experiment"])
                            if s["result"].get("protocol") == "oversight"])
    lines = ["# Oversight: measured numbers", "",
             f"Regenerate: `python benchmarks/bench_oversight.py --config {relative(config_path)}` (2 CPU "
             "cores; rows in benchmarks/out/oversight-results/results.sqlite; transcripts in its oversight/ folder, "
             "never in git). Protocol and reading guide: [oversight.md](oversight.md).", "",
             f"{out['n']} {c['task']} questions (two answers each, the correct one at A or B by a hash); judges "
             f"{', '.join(c['judges'])} (no passage); experts {', '.join(c['experts'])} (with the passage); "
             f"{c['rounds']} rounds, {'sequential' if c['sequential'] else 'simultaneous'} debate; seeds "
             f"{', '.join(map(str, c['seeds']))}; judges read both answer orders and average.", "",
             "## The references", "", "| model | alone, without the passage (judge) | with the passage (expert) "
             "| position flips (judge / expert) |", "|---|---|---|---|"]
    for model in sorted(set(c["judges"]) | set(c["experts"])):
        judge = out["judges"].get(model, {}).get("blind")
        expert = out["experts"].get(model)
        alone = "—" if judge is None else f"{judge['accuracy']:.3f}"
        informed = "—" if expert is None else f"{expert['accuracy']:.3f}"
        lines.append(f"| {model} | {alone} | {informed} | "
                     f"{_share(judge and judge['flip_rate'])} / {_share(expert and expert['flip_rate'])} |")
    lines += ["", "## Judge accuracy per protocol", "",
              "change: paired against the judge alone, 95% bootstrap over questions and seeds; gap recovered = "
              "(with − alone) / (expert − alone), *undefined* when the expert does not beat the judge alone beyond "
              "noise.", "", "| judge | expert | protocol | alone | with protocol | expert alone | change | gap recovered "
              "| ECE | flips | judge sides with consultant (right / wrong side) |", "|" + "---|" * 11]
    for r in rows:
        m = out["judges"][r["judge"]][r["expert"]][r["protocol"]]
        persuasion = m.get("persuasion")
        sided = (f"{_share(persuasion['agree_when_correct'])} / {_share(persuasion['agree_when_incorrect'])}"
                 if persuasion else "—")
        lines.append(f"| {r['judge']} | {r['expert']} | {r['protocol']} | {r['judge_alone']:.3f} | "
                     f"{r['with_protocol']:.3f} | {r['expert_alone']:.3f} | {r['change']} | {r['gap_recovered']} | "
                     f"{m['ece']:.3f} | {_share(m['flip_rate'])} | {sided} |")
    lines += ["", "## Quotes and cost", "", "| transcripts | arguments | quotes per argument | verified (all / correct "
              "side / wrong side) | unparseable quote tags | prompt tokens | completion tokens |", "|" + "---|" * 7]
    for label, per_seed in sorted(out["quotes"].items()):
        arguments = sum(s["arguments"] for s in per_seed)
        quotes = sum(s["quotes"] for s in per_seed)
        mean = lambda k: (None if all(s[k] is None for s in per_seed)  # noqa: E731
                          else sum(s[k] for s in per_seed if s[k] is not None) / sum(s[k] is not None for s in per_seed))
        tokens = out["tokens"][label]
        lines.append(f"| {label} | {arguments} | {quotes / arguments:.2f} | {_share(mean('verified_share'))} / "
                     f"{_share(mean('verified_share_correct_side'))} / {_share(mean('verified_share_incorrect_side'))} "
                     f"| {sum(s['unparseable_quotes'] for s in per_seed)} | {tokens['prompt']:,} | "
                     f"{tokens['completion']:,} |")
    seconds = out.get("seconds", {})
    if seconds:
        lines += ["", "Wall time on this CPU: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
                  + (f"; total {out['total_s']:.0f} s" if "total_s" in out else "") + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
