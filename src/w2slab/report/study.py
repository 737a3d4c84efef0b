"""A weak-to-strong study as one Markdown page: every task × pair × method with floor, transfer, ceiling and PGR,
medians per method with intervals, and paired tests of each method against naive transfer (``xent``).

    w2slab study sweeps/study.toml --out docs/study.md     # runs the sweep (cached), then writes the page
    w2slab study a.toml b.toml --out page.md              # several sweeps, one page (task-pairs pooled)

The verdict is computed, not written by hand: a method "beats" the baseline only where the mean paired PGR
difference has a 95% interval above zero *and* the Wilcoxon signed-rank p is below 0.05; otherwise the page says
that no method does.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..evaluation import compare_paired
from ..io import atomic_path
from .html import latest_per_key, median_table
from .table import pgr_text


def paired_against(summaries: list[dict], baseline: str) -> list[dict]:
    """For each method other than ``baseline``: the paired comparison over task-pairs where both PGRs are defined
    (counts each way, mean difference method − baseline with a bootstrap interval, Wilcoxon p)."""
    by = {(s["task"], s["weak"], s["strong"], s["loss"]): s for s in summaries if not s["strong_to_strong"]}
    rows = []
    for method in sorted({k[3] for k in by} - {baseline}):
        pairs = [(by[k]["pgr"], by[(*k[:3], baseline)]["pgr"]) for k in sorted(by)
                 if k[3] == method and (*k[:3], baseline) in by and by[k]["defined"] and by[(*k[:3], baseline)]["defined"]]
        if len(pairs) < 2:
            rows.append({"method": method, "n": len(pairs)})
            continue
        c = compare_paired(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
        rows.append({"method": method, "n": c["n_tasks"], "better": c["a_better"], "worse": c["b_better"],
                     "ties": c["ties"], "mean_diff": c["mean_diff"], "ci": c["mean_diff_ci"], "p": c["wilcoxon_p"]})
    return rows


def verdict(comparisons: list[dict], baseline: str) -> str:
    """One plain sentence per finding; says so when no method beats ``baseline``."""
    winners = [c for c in comparisons if c.get("p") is not None and c["ci"][0] > 0 and c["p"] < 0.05]
    losers = [c for c in comparisons if c.get("p") is not None and c["ci"][1] < 0 and c["p"] < 0.05]
    lines = [f"- **{c['method']}** beats {baseline}: mean PGR difference {c['mean_diff']:+.3f} "
             f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] over {c['n']} task-pairs ({c['better']} better, {c['worse']} "
             f"worse), Wilcoxon p = {c['p']:.3g}." for c in winners]
    lines += [f"- **{c['method']}** is worse than {baseline}: {c['mean_diff']:+.3f} [{c['ci'][0]:+.3f}, "
              f"{c['ci'][1]:+.3f}] over {c['n']} task-pairs, Wilcoxon p = {c['p']:.3g}." for c in losers]
    if not winners:
        lines.insert(0, f"- **No method beats naive transfer ({baseline}) across tasks** at the 5% level "
                        "(mean-difference interval above 0 and Wilcoxon p < 0.05).")
    return "\n".join(lines)


def study_markdown(summaries: list[dict], *, baseline: str = "xent", title: str = "Weak-to-strong study",
                   command: str = "", failures: list[tuple[str, str]] = ()) -> str:
    """The study page for stored summary rows (one experiment or sweep; reruns counted once). ``failures``:
    (run label, error) of runs that could not be computed (e.g. a task too small for the protocol), listed."""
    summaries = latest_per_key(summaries)
    tasks = sorted({s["task"] for s in summaries})
    pairs = sorted({(s["weak"], s["strong"]) for s in summaries})
    task_pairs = {(s["task"], s["weak"], s["strong"]) for s in summaries}
    methods = sorted({s["loss"] for s in summaries})
    seeds = max((s["result"]["n_seeds"] for s in summaries), default=0)
    defined_tasks = sorted({s["task"] for s in summaries if s["defined"] and not s["strong_to_strong"]})
    comparisons = paired_against(summaries, baseline)
    out = [f"# {title}", "", f"Regenerate: `{command}`" if command else "",
           f"Written {dt.date.today().isoformat()}: {len(tasks)} tasks, {len(task_pairs)} (task, weak→strong) "
           f"pairs over {len(pairs)} distinct weak→strong pairs, × {len(methods)} methods × {seeds} seeds. "
           "PGR intervals: 95% paired bootstrap over test items and seeds (seeds drawn jointly); *undefined* where "
           "ceiling − floor is within test-set noise (per task and pair).",
           "", f"**{len(defined_tasks)} of {len(tasks)} tasks have a defined PGR** for at least one pair: "
           f"{', '.join(defined_tasks) or 'none'}.", "", "## Verdict", "", verdict(comparisons, baseline), "",
           f"## Paired comparison with {baseline} (task-pairs where both PGRs are defined)", "",
           "| method | task-pairs | better | worse | ties | mean PGR difference [95% CI] | Wilcoxon p |",
           "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        if "p" not in c:
            out.append(f"| {c['method']} | {c['n']} | | | | too few defined pairs | |")
        else:
            p = "–" if c["p"] is None else f"{c['p']:.3g}"
            out.append(f"| {c['method']} | {c['n']} | {c['better']} | {c['worse']} | {c['ties']} | "
                       f"{c['mean_diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | {p} |")
    out += ["", "## Median PGR per supervisor kind and method (defined task-pairs)", "",
            "| supervisor kind | method | class | task-pairs | defined | median PGR [95% CI] |", "|---|---|---|---|---|---|"]
    for m in median_table(summaries):
        median = f"{m['median_pgr']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]" if "median_pgr" in m else "–"
        out.append(f"| {m['supervisor_kind']} | {m['loss']} | {m['class']} | {m['task_pairs']} | {m['defined']} | "
                   f"{median} |")
    out += ["", "## Every task, pair and method", "",
            "| task | weak → strong | method | floor | transfer | ceiling | PGR [95% CI] |", "|---|---|---|---|---|---|---|"]
    for s in sorted(summaries, key=lambda s: (s["task"], s["weak"], s["strong"], s["loss"])):
        out.append(f"| {s['task']} | {s['weak']} → {s['strong']} | {s['loss']} | {s['floor']:.3f} | "
                   f"{s['transfer']:.3f} | {s['ceiling']:.3f} | {pgr_text(s)} |")
    if failures:
        reasons: dict[str, str] = {}
        for label, error in failures:
            reasons.setdefault(label.split(":", 1)[0], error)
        out += ["", f"## Runs that could not be computed ({len(failures)})", ""]
        out += [f"- {task}: {error}" for task, error in sorted(reasons.items())]
    return "\n".join(out) + "\n"


def write_study(sweeps, out: str | Path, *, baseline: str = "xent", command: str = "", **run_options) -> Path:
    """Run ``sweeps`` (one or a list of TOML paths, dicts or Sweeps; every finished run comes from the cache) and
    write one study page for all of them to ``out`` atomically; returns the path. Several sweeps let a study give
    some tasks extra pairs (e.g. a costly strong model only where cheaper ones are at chance); their task-pairs
    are pooled in the counts, medians and paired tests. ``run_options`` go to
    :func:`w2slab.runner.driver.run_sweep`."""
    from ..errors import ConfigError
    from ..runner.driver import run_sweep
    from ..runner.sweep import load_sweep

    sweeps = [load_sweep(s) for s in (sweeps if isinstance(sweeps, (list, tuple)) else [sweeps])]
    names = [s.name for s in sweeps]
    if len(set(names)) != len(names):
        raise ConfigError(f"two sweeps share the name {next(n for n in names if names.count(n) > 1)!r}")
    owner: dict[tuple[str, str, str], str] = {}
    for sweep in sweeps:  # every sweep checked before any work
        if baseline not in {m.name for m in sweep.methods}:
            raise ConfigError(f"the baseline method {baseline!r} is not in the methods of sweep {sweep.name!r}")
        # a task-pair in two sweeps would be counted once, from whichever ran last: refuse it
        for task in sweep.tasks:
            for weak, strong in sweep.pairs:
                first = owner.setdefault((task.task, weak.name, strong), sweep.name)
                if first != sweep.name:
                    raise ConfigError(f"task {task.task!r} with {weak.name} → {strong} is in sweeps {first!r} and "
                                      f"{sweep.name!r}; give each task-pair to one sweep")
    summaries, failures = [], []
    for sweep in sweeps:
        result = run_sweep(sweep, **run_options)
        summaries += result.summaries
        failures += result.failures
    page = study_markdown(summaries, baseline=baseline, title=f"Weak-to-strong study: {' + '.join(names)}",
                          command=command, failures=failures)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out)
