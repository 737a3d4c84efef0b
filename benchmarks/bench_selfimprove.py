"""The self-improvement numbers (issue: "Self-improvement on its own majority votes"), written to
benchmarks/out/selfimprove.json and docs/selfimprove_study.md (docs/<experiment>_study.md).

1. base accuracy of each decoder on each reasoning task (greedy, the first N test questions): which (model, task)
   pairs are neither at floor nor at ceiling;
2. the study of sweeps/selfimprove.toml: every model × task cell, filter, seed and round, stored in
   benchmarks/out/selfimprove-results/ (resumable: generations and adapters are cached). Each cell's result
   (numbers and extracted answers only) is also kept in benchmarks/measured/selfimprove/, tracked in git, so a
   study longer than one machine's session lands part by part (``--models/--tasks/--seeds``) and the page is
   rebuilt from every part.

    python benchmarks/bench_selfimprove.py [--skip-base | --base-only] [--markdown-only] [--models M ..] [--tasks T ..] [--seeds S ..]
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from common import MEASURED, OUT, ROOT, machine, relative, save

RESULTS = OUT / "selfimprove-results"
BASE_MODELS = ("smollm2", "qwen-coder-0.5b")
BASE_TASKS = ("gsm8k", "strategyqa", "openbookqa", "sciq", "piqa")


def base_accuracy(n: int = 32) -> list[dict]:
    """Greedy accuracy, unextractable answers and collapse (the share of the most common extracted answer, beside
    the best constant answer's accuracy) per (model, task) on the first ``n`` test questions; GSM8K answers get
    256 tokens, the others 96 (as in the study). ``seconds`` is 0 where the generations were cached."""
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
                extracted = collections.Counter(a for a in answers if a is not None)
                rows.append({"model": model, "task": task, "n": n,
                             "correct": sum(a == q.answer for a, q in zip(answers, questions)),
                             "unextractable": sum(a is None for a in answers),
                             "top_answer_share": max(extracted.values(), default=0) / n,
                             "constant_baseline": max(collections.Counter(q.answer for q in questions).values()) / n,
                             "seconds": round(time.perf_counter() - start, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps/selfimprove.toml"), help="a SelfImproveStudy TOML")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--skip-base", action="store_true", help="skip the base-accuracy table (keep the stored one)")
    base.add_argument("--base-only", action="store_true",
                        help="measure the base-accuracy table only (seconds where the generations are cached)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild docs/<experiment>_study.md from the stored cells (benchmarks/measured/)")
    parser.add_argument("--models", nargs="+", help="only these models of the study (default: all)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks of the study (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: all); earlier seeds stay")
    args = parser.parse_args()
    from w2slab.feedback.selfimprove_run import SelfImproveStudy

    study = SelfImproveStudy.from_toml(args.config)
    name = "selfimprove" if study.experiment == "selfimprove" else f"selfimprove-{study.experiment}"
    saved = MEASURED / f"{name}.json"
    out = json.loads(saved.read_text()) if saved.is_file() else {"base": None, "runs": []}
    if not args.markdown_only:
        from w2slab.feedback.selfimprove_run import run_selfimprove_study

        if not args.skip_base:
            out["base"] = base_accuracy()
        if not args.base_only:
            part = SelfImproveStudy.from_toml(args.config, models=args.models, tasks=args.tasks,
                                              seeds=args.seeds)
            _copy_cells(MEASURED / "selfimprove", RESULTS / "selfimprove", study.experiment, overwrite=False)
            cells = run_selfimprove_study(part, results_dir=RESULTS, progress=sys.stderr.isatty())
            _copy_cells(RESULTS / "selfimprove", MEASURED / "selfimprove", study.experiment, overwrite=True)
            cpu = machine()["cpu_model"]
            out["runs"] = out.get("runs", []) + [{"model": c["config"]["model"], "task": c["config"]["task"],
                                                  "seeds": list(part.seeds), "seconds": c["seconds"], "cpu": cpu}
                                                 for c in cells]
        save(name, out, keep=out)
    page = ROOT / "docs" / f"{study.experiment.replace('-', '_')}_study.md"  # selfimprove_study.md
    page.write_text(markdown(out, study, args.config), encoding="utf-8")


def _copy_cells(source, target, experiment: str, overwrite: bool) -> None:
    """Copy the per-cell result JSONs of ``experiment`` (numbers and extracted answers, no generated text) from
    ``source`` to ``target``: measured cells seed a fresh results folder, so seeds run in another session merge."""
    from w2slab.io import atomic_path

    for path in sorted((source / experiment).glob("*.json")):
        dest = target / experiment / path.name
        if overwrite or not dest.is_file():
            with atomic_path(dest) as tmp:
                tmp.write_bytes(path.read_bytes())


def _stored_cells(experiment: str) -> list[dict]:
    """Each cell's result: the results folder's when this machine has one (it holds every merged seed), else the
    tracked copy in benchmarks/measured/."""
    names = {p.name for folder in (RESULTS, MEASURED) for p in (folder / "selfimprove" / experiment).glob("*.json")}
    cells = []
    for name in sorted(names):
        local = RESULTS / "selfimprove" / experiment / name
        cells.append(json.loads((local if local.is_file() else MEASURED / "selfimprove" / experiment / name)
                                .read_text(encoding="utf-8")))
    return cells


def _base_differences(cells: list[dict]) -> list[str]:
    """A note per cell whose seeds saw different base greedy accuracies: greedy decoding of one model on the same
    questions, decoded afresh, differed (each seed's gap is measured from its own base)."""
    lines = []
    for cell in cells:
        accuracy = {seed: base["greedy_acc"] for seed, base in sorted(cell["base"].items())}
        if len(set(accuracy.values())) > 1:
            lines.append(f"- {cell['config']['model']} × {cell['config']['task']}: the base model's greedy accuracy "
                         "differs between seeds (" + ", ".join(f"seed {s}: {a:.3f}" for s, a in accuracy.items())
                         + "). Greedy decoding samples nothing, but llama.cpp with several slots (the study runs 4) "
                         "does not give bit-identical logits when the batch around a request changes, so a base "
                         "decoded afresh (another session, an empty cache) can differ on a few questions; seeds "
                         "run in one session share the cached base. Each seed's change is measured from its own "
                         "base, and the base column is their mean (docs/lm.md, determinism).")
    return ["", "**The base differs between seeds:**", ""] + lines if lines else []


def _share(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def markdown(out: dict, study, config_path: str) -> str:
    from w2slab.feedback.selfimprove_run import gap_summaries, round_rows
    from w2slab.report.selfimprove import round_table, selfimprove_gap_table

    cells = _stored_cells(study.experiment)
    stored = [row for cell in cells for row in round_rows(cell, cell.get("created_at", ""))]
    rounds = round_table(stored)
    done = {(r["model"], r["task"]): sorted({x["seed"] for x in stored if (x["model"], x["task"]) == (r["model"], r["task"])})
            for r in stored}
    missing = [f"{m} × {t}" for m in study.models for t in study.tasks if (m, t) not in done]
    gaps = selfimprove_gap_table([row for cell in cells for row in gap_summaries(cell, cell.get("created_at", ""))])
    lines = ["# Self-improvement: measured numbers", "",
             f"Regenerate: `python benchmarks/bench_selfimprove.py --config {relative(config_path)}` (2 CPU cores; "
             f"the study alone is `w2slab selfimprove run {relative(config_path)}`; a part of it: `--models`, `--tasks`, `--seeds`). "
             "Each cell's numbers are kept in benchmarks/measured/selfimprove/ (tracked), so parts run in different "
             "sessions add up on this page. The protocol and how to read it: docs/selfimprove.md.", "",
             f"Study: models {', '.join(study.models)} × tasks {', '.join(study.tasks)}; {study.n_train} training and "
             f"{study.n_test} test questions; k = {study.k} samples at temperature {study.temperature} (at most "
             f"{study.max_tokens} tokens); keep a question when its majority holds ≥ {study.tau} of the votes; "
             f"{study.rounds} rounds; filters {', '.join(study.filters)}; seeds {', '.join(map(str, study.seeds))} "
             f"(sampling and LoRA training); {study.parallel} llama.cpp slots; intervals are 95% bootstraps over "
             "questions and seeds drawn jointly.", "",
             "**Stored so far:** " + ("; ".join(f"{m} × {t}: seeds {', '.join(map(str, seeds))}"
                                                for (m, t), seeds in sorted(done.items())) or "nothing")
             + (f". **Not run yet:** {', '.join(missing)} (`--models`, `--tasks`, `--seeds` run a part)." if missing else "."), ""]
    if out.get("base"):
        lines += ["## Base accuracy (greedy, first test questions)", "",
                  "Which (model, task) pairs are neither at floor nor at ceiling. A model that gives one answer to "
                  "almost every question sits at the constant-answer baseline whatever its accuracy reads. Seconds "
                  "are near 0 where the generations came from the cache.", "",
                  "| model | task | correct | unextractable | most common answer (constant-answer acc) | seconds |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['task']} | {r['correct']}/{r['n']} | {r['unextractable']} | "
                  f"{_share(r.get('top_answer_share'))} ({_share(r.get('constant_baseline'))}) | {r['seconds']} |"
                  for r in out["base"]]
        lines.append("")
    lines += ["## Gap recovered", "",
              "base → after r rounds of the label-free filter, against the reference that reads gold (gold-rationale "
              "SFT where the task has rationales, else the oracle filter at the same round). One answer: the share of "
              "test questions the trained model / the reference give their most common answer; where both have "
              "collapsed, the gap compares two constant answers and says nothing about what was learned.", "",
              "| task | model | filter | round | base | trained | reference | reference acc | change [95% CI] "
              "| gap recovered [95% CI] | one answer (trained / reference) |", "|" + "---|" * 11]
    lines += [f"| {g['task']} | {g['model']} | {g['filter']} | {g['round']} | {g['base_acc']:.3f} | "
              f"{g['trained_acc']:.3f} | {g['reference']} | {g['reference_acc']:.3f} | {g['change']} | "
              f"{g['gap_recovered']} | {g['one_answer']} |" for g in gaps]
    lines += _base_differences(cells)
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
    if out.get("runs"):
        lines += ["", "## Cost on this CPU", "", "Each run of the study on part of it (a cell, some seeds), as measured; "
                  "a run that found earlier generations or adapters in the cache reads faster.", "",
                  "| model | task | seeds | seconds (all filters and rounds) | CPU |", "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['task']} | {', '.join(map(str, r['seeds']))} | {r['seconds']:.0f} | "
                  f"{r.get('cpu') or 'not recorded'} |" for r in out["runs"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
