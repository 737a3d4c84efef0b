"""The self-improvement numbers (issue: "Self-improvement on its own majority votes"), written to
benchmarks/out/selfimprove.json and docs/selfimprove_study.md.

1. base accuracy of each decoder on each reasoning task (greedy, the first N test questions): which (model, task)
   pairs are neither at floor nor at ceiling;
2. the study of sweeps/selfimprove.toml: every model × task cell, filter, seed and round, stored in
   benchmarks/out/selfimprove-results/results.sqlite (resumable: generations and adapters are cached).

    python benchmarks/bench_selfimprove.py [--skip-base] [--markdown-only]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from common import OUT, ROOT, save

RESULTS = OUT / "selfimprove-results"
BASE_MODELS = ("smollm2", "qwen-coder-0.5b")
BASE_TASKS = ("gsm8k", "strategyqa", "openbookqa", "sciq", "piqa")


def base_accuracy(n: int = 32) -> list[dict]:
    """Greedy accuracy and unextractable answers per (model, task) on the first ``n`` test questions; GSM8K
    answers get 256 tokens, the others 96 (as in the study)."""
    from w2slab.feedback.selfimprove import generate_in_chunks, sample_requests
    from w2slab.lm import load_lm
    from w2slab.tasks.reasoning import extract_answer, load_reasoning

    rows = []
    for model in BASE_MODELS:
        with load_lm(model) as lm:
            for task in BASE_TASKS:
                questions = load_reasoning(task, split="test", limit=n)
                start = time.perf_counter()
                texts = generate_in_chunks(lm, sample_requests(task, questions, k=1, temperature=0.0,
                                                               max_tokens=256 if task == "gsm8k" else 96, seed=0))
                answers = [extract_answer(task, t[0]) for t in texts]
                rows.append({"model": model, "task": task, "n": n,
                             "correct": sum(a == q.answer for a, q in zip(answers, questions)),
                             "unextractable": sum(a is None for a in answers),
                             "seconds": round(time.perf_counter() - start, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-base", action="store_true", help="skip the base-accuracy table")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild docs/selfimprove_study.md from benchmarks/out/selfimprove.json and the store")
    args = parser.parse_args()
    if args.markdown_only:
        saved = OUT / "selfimprove.json"
        out = json.loads(saved.read_text()) if saved.is_file() else {"base": None}  # the store has the rows
    else:
        from w2slab.feedback.selfimprove_run import SelfImproveStudy, run_selfimprove_study

        out = {"base": None if args.skip_base else base_accuracy()}
        start = time.perf_counter()
        cells = run_selfimprove_study(SelfImproveStudy.from_toml(ROOT / "sweeps/selfimprove.toml"),
                                      results_dir=RESULTS, progress=sys.stderr.isatty())
        out["study_s"] = time.perf_counter() - start
        out["cells"] = [{"model": c["config"]["model"], "task": c["config"]["task"], "seconds": c["seconds"]}
                        for c in cells]
        save("selfimprove", out)
    (ROOT / "docs/selfimprove_study.md").write_text(markdown(out), encoding="utf-8")


def _share(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def markdown(out: dict) -> str:
    from w2slab.feedback.selfimprove_run import SelfImproveStudy
    from w2slab.report.selfimprove import round_table, selfimprove_gap_table
    from w2slab.runner.store import ResultsStore

    study = SelfImproveStudy.from_toml(ROOT / "sweeps/selfimprove.toml")
    store = ResultsStore(RESULTS / "results.sqlite")
    stored = store.query("rounds", experiment=study.experiment)
    rounds = round_table(stored)
    done = {(r["model"], r["task"]): sorted({x["seed"] for x in stored if (x["model"], x["task"]) == (r["model"], r["task"])})
            for r in stored}
    missing = [f"{m} × {t}" for m in study.models for t in study.tasks if (m, t) not in done]
    gaps = selfimprove_gap_table(store.query("summaries", experiment=study.experiment))
    lines = ["# Self-improvement: measured numbers", "",
             "Regenerate: `python benchmarks/bench_selfimprove.py` (2 CPU cores; the study alone is "
             "`w2slab selfimprove run sweeps/selfimprove.toml`; rows in "
             "benchmarks/out/selfimprove-results/results.sqlite, raw numbers in benchmarks/out/selfimprove.json). "
             "The protocol and how to read it: docs/selfimprove.md.", "",
             f"Study: models {', '.join(study.models)} × tasks {', '.join(study.tasks)}; {study.n_train} training and "
             f"{study.n_test} test questions; k = {study.k} samples at temperature {study.temperature} (at most "
             f"{study.max_tokens} tokens); keep a question when its majority holds ≥ {study.tau} of the votes; "
             f"{study.rounds} rounds; filters {', '.join(study.filters)}; seeds {', '.join(map(str, study.seeds))} "
             "(sampling and LoRA training); intervals are 95% bootstraps over questions and seeds drawn jointly.", "",
             "**Stored so far:** " + ("; ".join(f"{m} × {t}: seeds {', '.join(map(str, seeds))}"
                                                for (m, t), seeds in sorted(done.items())) or "nothing")
             + (f". **Not run yet:** {', '.join(missing)} (the study resumes from the caches)." if missing else "."), ""]
    if out.get("base"):
        lines += ["## Base accuracy (greedy, first test questions)", "",
                  "| model | task | correct | unextractable | seconds |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['task']} | {r['correct']}/{r['n']} | {r['unextractable']} | {r['seconds']} |"
                  for r in out["base"]]
        lines.append("")
    lines += ["## Gap recovered", "",
              "base → after r rounds of the label-free filter, against the reference that reads gold (gold-rationale "
              "SFT where the task has rationales, else the oracle filter at the same round).", "",
              "| task | model | filter | round | base | trained | reference | reference acc | change [95% CI] "
              "| gap recovered [95% CI] |", "|" + "---|" * 10]
    lines += [f"| {g['task']} | {g['model']} | {g['filter']} | {g['round']} | {g['base_acc']:.3f} | "
              f"{g['trained_acc']:.3f} | {g['reference']} | {g['reference_acc']:.3f} | {g['change']} | "
              f"{g['gap_recovered']} |" for g in gaps]
    lines += ["", "## Rounds (means over seeds; counts summed over seeds)", "",
              "| task | model | filter | round | seeds | greedy acc | maj@k acc | unextractable (greedy / samples) "
              "| mean vote share | most common answer (constant-answer acc) | ECE | kept | kept majorities wrong "
              "| wrong & confident before → more confident after / fixed |", "|" + "---|" * 14]
    for r in rounds:
        reinforcement = (f"{r['wrong_confident_before']} → {r['wrong_more_confident_after']} / {r['fixed_after']}"
                         if r["wrong_confident_before"] is not None else "—")
        wrong = "—" if r["kept_wrong_share"] is None else f"{100 * r['kept_wrong_share']:.0f}%"
        lines.append(f"| {r['task']} | {r['model']} | {r['filter']} | {r['round']} | {r['seeds']} | "
                     f"{r['greedy_acc']:.3f} | {r['maj_acc']:.3f} | {r['greedy_unextractable']} / "
                     f"{r['sample_unextractable']} | {r['mean_share']:.3f} | "
                     f"{_share(r['top_answer_share'])} ({_share(r['constant_baseline'])}) | {r['ece']:.3f} | "
                     f"{'—' if r['kept'] is None else r['kept']} | {wrong} | {reinforcement} |")
    if out.get("cells"):
        lines += ["", "## Cost on this CPU", "", "| model | task | seconds (all seeds, filters, rounds) |",
                  "|---|---|---|"]
        lines += [f"| {c['model']} | {c['task']} | {c['seconds']:.0f} |" for c in out["cells"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
