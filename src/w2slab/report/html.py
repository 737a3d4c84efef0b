"""``write_report``: a self-contained static HTML page (figures embedded as PNG data URIs) plus the same
tables as CSV, built from the results store."""
from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, W2SError
from ..evaluation import compare_paired, median_with_ci
from ..judging.server import people_exchanges
from ..paths import results_dir as resolve_results_dir
from ..runner.store import ResultsStore
from . import figures
from .cai import cai_table
from .judging import critique_gap_table, is_feedback, judge_table, oversight_table, people_oversight_table
from .redteam import attack_table, classifier_table, success_vs_diversity
from .selfimprove import round_table, selfimprove_figures, selfimprove_gap_table


def select_rows(store: ResultsStore, *, experiment: str | None = None, task: str | None = None,
                everything: bool = False) -> tuple[list[dict], list[dict]]:
    """(summaries, runs) for a filter; with no filter, the most recent experiment only."""
    where = {k: v for k, v in (("experiment", experiment), ("task", task)) if v}
    summaries = store.query("summaries", **where)
    if not summaries and experiment and experiment in store.experiments():
        return [], []  # an experiment with rows in other tables only (e.g. red teaming's attacks)
    if not summaries:
        raise ConfigError(f"no results in {store.path} match {where or 'anything'}: run `w2slab run` first")
    if not where and not everything:
        latest = max(summaries, key=lambda s: s["created_at"])["experiment"]
        summaries = [s for s in summaries if s["experiment"] == latest]
    experiments = sorted({s["experiment"] for s in summaries})
    runs = [r for e in experiments for r in store.query("runs", experiment=e)]
    return latest_per_key(summaries), runs


def latest_per_key(summaries: list[dict]) -> list[dict]:
    """One summary per (task, weak, strong, loss), in key order: a rerun replaces, never doubles, a result in every
    table, and the order (hence every bootstrap over these rows) does not depend on which run finished first."""
    latest: dict[tuple, dict] = {}
    for s in sorted(summaries, key=lambda s: s["created_at"]):
        latest[(s["task"], s["weak"], s["strong"], s["loss"])] = s
    return [latest[key] for key in sorted(latest)]


def supervisor_kind(weak: str) -> str:
    """'single model', 'ensemble', 'chain' or 'prompted' — medians are taken within a kind, never across."""
    from ..supervisors.spec import parse_supervisor

    try:
        kind = parse_supervisor(weak).kind
    except W2SError:
        return "unknown"
    return {"model": "single model", "ensemble": "ensemble", "chain": "chain", "prompt": "prompted"}.get(kind, kind)


def method_class(method: str) -> str:
    """'oracle' (ground-truth epoch choice, an upper bound), 'generative' (+gen) or 'weak-to-strong'."""
    return "oracle" if is_oracle(method) else "generative" if "+gen" in method else "weak-to-strong"


def summary_table(summaries: list[dict]) -> list[dict]:
    """One row per (task, weak, strong, loss): accuracies, PGR with interval or 'undefined' and the reason."""
    rows = []
    for s in summaries:
        r = s["result"]
        rows.append({"task": s["task"], "weak": s["weak"], "strong": s["strong"], "loss": s["loss"],
                     "strong_to_strong": bool(s["strong_to_strong"]), "seeds": r["n_seeds"], "test_items": r["n_test"],
                     "floor": round(s["floor"], 4), "transfer": round(s["transfer"], 4), "ceiling": round(s["ceiling"], 4),
                     "pgr": round(s["pgr"], 3) if s["defined"] else "undefined",
                     "pgr_ci_low": round(s["pgr_low"], 3) if s["defined"] else "",
                     "pgr_ci_high": round(s["pgr_high"], 3) if s["defined"] else "",
                     "pgr_per_seed": " ".join("undef." if v is None else f"{v:+.2f}" for v in r.get("pgr_per_seed", [])),
                     "reason_undefined": s["reason"], "oracle_stopping": is_oracle(s["loss"]),
                     "experiment": s["experiment"]})
    return rows


def is_oracle(method: str) -> bool:
    """Whether a method selected epochs on ground truth (the '+oracle' upper bound; its name always says so)."""
    return "oracle" in method


def imitation_table(summaries: list[dict]) -> list[dict]:
    """One row per summary: student–supervisor agreement overall, where the supervisor is wrong, and right."""
    rows = []
    for s in summaries:
        im = s["result"].get("imitation")
        if im:
            rows.append({"task": s["task"], "weak": s["weak"], "strong": s["strong"], "loss": s["loss"],
                         **{k: round(v, 4) for k, v in im.items()}})
    return rows


def median_table(summaries: list[dict]) -> list[dict]:
    """Per supervisor kind and loss: median PGR over task-pairs (defined only) with a bootstrap interval, and the
    undefined count. Oracle and generative methods are their own class, never pooled with weak-to-strong rows."""
    rows = []
    summaries = latest_per_key(summaries)
    strata = sorted({(supervisor_kind(s["weak"]), s["loss"]) for s in summaries},
                    key=lambda k: (method_class(k[1]) != "weak-to-strong", k))
    for kind, loss in strata:
        of_loss = [s for s in summaries if s["loss"] == loss and supervisor_kind(s["weak"]) == kind
                   and not s["strong_to_strong"]]
        defined = [s["pgr"] for s in of_loss if s["defined"]]
        row = {"supervisor_kind": kind, "loss": loss, "class": method_class(loss), "task_pairs": len(of_loss),
               "defined": len(defined), "undefined": len(of_loss) - len(defined)}
        if defined:
            m = median_with_ci(np.array(defined))
            row.update(median_pgr=round(m["median"], 3), ci_low=round(m["ci"][0], 3), ci_high=round(m["ci"][1], 3))
        rows.append(row)
    return rows


def comparison_table(summaries: list[dict]) -> list[dict]:
    """Per pair of losses: paired comparison over task-pairs where both PGRs are defined."""
    rows = []
    for a, b in itertools.combinations(sorted({s["loss"] for s in summaries}), 2):
        pairs = figures._paired_pgr([s for s in summaries if not s["strong_to_strong"]], a, b)
        if not pairs:
            rows.append({"method_a": a, "method_b": b, "n_tasks": 0, "note": "no task-pair with both PGRs defined"})
            continue
        c = compare_paired(np.array([p[1] for p in pairs]), np.array([p[2] for p in pairs]))
        rows.append({"method_a": a, "method_b": b, "n_tasks": c["n_tasks"], "a_better": c["a_better"],
                     "b_better": c["b_better"], "ties": c["ties"], "mean_diff_a_minus_b": round(c["mean_diff"], 3),
                     "ci_low": round(c["mean_diff_ci"][0], 3), "ci_high": round(c["mean_diff_ci"][1], 3),
                     "wilcoxon_p": None if c["wilcoxon_p"] is None else round(c["wilcoxon_p"], 4), "note": ""})
    return rows


def filter_table(runs: list[dict]) -> list[dict]:
    """Transfer runs with a label filter: how many weak labels were removed, and how many of those were wrong."""
    return [{"task": r["task"], "weak": r["weak"], "strong": r["strong"], "method": r["loss"], "seed": r["seed"],
             **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r["metrics"]["filter"].items()}}
            for r in runs if r["role"] == "transfer" and "filter" in r["metrics"]]


def self_training_table(runs: list[dict]) -> list[dict]:
    """Self-training runs, one row per round: the error-amplification curve in numbers."""
    return [{"task": r["task"], "weak": r["weak"], "strong": r["strong"], "method": r["loss"], "seed": r["seed"],
             **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in rnd.items()}}
            for r in runs if r["role"] == "transfer" for rnd in r["metrics"].get("self_training", [])]


def write_report(*, results_dir: str | Path | None = None, out: str | Path | None = None,
                 experiment: str | None = None, task: str | None = None, everything: bool = False) -> Path:
    """Write ``index.html`` and CSV tables into ``out`` (default ``<results_dir>/report``); returns the page.

    The folder is built beside its target and renamed into place, so a reader never sees half a report.
    """
    results = resolve_results_dir(results_dir)
    store = ResultsStore(results / "results.sqlite")
    everything_rows, runs = select_rows(store, experiment=experiment, task=task, everything=everything)
    summaries = [s for s in everything_rows if not is_feedback(s)]  # weak-to-strong rows
    feedback = [s for s in everything_rows if is_feedback(s)]
    experiments = sorted({s["experiment"] for s in everything_rows} | ({experiment} if experiment else set()))
    judgements = [j for e in experiments for j in store.query("judgements", experiment=e)]
    rounds = [r for e in experiments for r in store.query("rounds", experiment=e)
              if task is None or r["task"] == task]
    attacks = [a for e in experiments for a in store.query("attacks", experiment=e)]
    protocol = lambda name: [s for s in feedback if s["result"]["protocol"] == name]  # noqa: E731
    tables = {"summaries": summary_table(summaries), "median_pgr": median_table(summaries),
              "method_comparison": comparison_table(summaries), "imitation": imitation_table(summaries),
              "label_filtering": filter_table(runs), "self_training": self_training_table(runs),
              "critique_gaps": critique_gap_table(protocol("critiques")), "judges": judge_table(judgements),
              "selfimprove_gaps": selfimprove_gap_table(protocol("selfimprove")),
              "selfimprove_rounds": round_table(rounds),
              "oversight": oversight_table(protocol("oversight")),
              "people_oversight": people_oversight_table(judgements), "attacks": attack_table(attacks),
              "harm_classifiers": classifier_table(attacks), "cai": cai_table(protocol("cai"))}
    images = []
    for t in sorted({s["task"] for s in summaries}):
        images.append((f"{t}: test accuracy vs student size", figures.accuracy_vs_size(summaries, t)))
        images.append((f"{t}: PGR vs student size", figures.pgr_vs_size(summaries, t)))
    if summaries:
        images.append(("PGR per task and method", figures.pgr_bars(summaries)))
    for a, b in itertools.combinations(sorted({s["loss"] for s in summaries}), 2):
        images.append((f"method {b} vs {a}", figures.method_scatter(summaries, a, b)))
    if any(r["role"] == "transfer" and "curve" in r["metrics"] for r in runs):
        images.append(("learning curves of transfer runs", figures.learning_curves(runs)))
    images += selfimprove_figures(rounds)
    if attacks:
        images.append(("red teaming: success vs diversity", success_vs_diversity(attacks)))

    target = Path(out) if out else results / "report"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be served and shared
    try:
        for name, rows in tables.items():
            _write_csv(staging / f"{name}.csv", rows)
        people = people_exchanges(store, judgements)
        if tables["oversight"] or people:
            (staging / "transcripts.html").write_text(
                transcripts_page(results, sorted({s["experiment"] for s in protocol("oversight")}), people=people),
                encoding="utf-8")
        (staging / "index.html").write_text(_page(everything_rows, runs, tables, images), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "index.html"


def transcripts_page(results: Path, experiments: list[str], *, per_protocol: int = 40,
                     people: list[dict] = ()) -> str:
    """The first ``per_protocol`` oversight transcripts of each (experiment, protocol, expert, judge, seed), as the
    judge saw them, with the correct answer marked; then ``people``'s exchanges with live models on the judging page
    (:func:`w2slab.judging.server.people_exchanges`), each with the answer the person chose."""
    import json

    parts = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>oversight transcripts</title>'
             "<style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto}"
             ".turn{margin:.4em 0 .4em 1em}.q{border-top:1px solid #ccc;padding-top:.5em}</style></head><body>"
             "<h1>Oversight transcripts</h1><p><b>Generated text</b>: it may be wrong, misleading or offensive.</p>"]
    for experiment in experiments:
        path = results / "oversight" / experiment / "transcripts.jsonl"
        if not path.is_file():
            continue
        shown: dict[tuple, int] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            t = json.loads(line)
            key = (t["protocol"], t["expert"], t["judge"], t["seed"])
            shown[key] = shown.get(key, 0) + 1
            if shown[key] > per_protocol:
                continue
            answers = "".join(f"<li>{'✔ ' if i == t['correct'] else ''}{html.escape(a)}</li>"
                              for i, a in enumerate(t["answers"]))
            turns = "".join(f'<div class="turn"><b>{html.escape(u["speaker"])}'
                            f'{" for " + html.escape(t["answers"][u["side"]]) if u["side"] is not None else ""}'
                            f"</b>: {html.escape(u['shown'])}</div>" for u in t["turns"])
            parts.append(f'<div class="q"><p>{html.escape(experiment)} · {html.escape(t["protocol"])} · expert '
                         f'{html.escape(t["expert"])}{" · judge " + html.escape(t["judge"]) if t["judge"] else ""} · '
                         f'seed {t["seed"]}</p><p><b>{html.escape(t["question"])}</b></p><ol type="A">{answers}</ol>'
                         f"{turns}</div>")
    if people:
        parts.append("<h2>People questioning live models</h2>")
    for p in people:
        turns = []
        for k, e in enumerate(p["exchanges"], start=1):
            asked = (f'<div class="turn"><b>person asked</b>: {html.escape(e["question"])}</div>'
                     if e["question"] else "")
            replies = (zip(("debater for A", "debater for B"), e["shown"]) if p["condition"] == "interactive_debate"
                       else [("assistant", e["shown"])])
            turns.append(f"<p>round {k}</p>{asked}" + "".join(
                f'<div class="turn"><b>{who}</b>: {html.escape(text)}</div>' for who, text in replies))
        verdict = "right" if p["chose"] == p["correct"] else "wrong"
        head = " · ".join(html.escape(x) for x in (p["experiment"], p["condition"], p["helper"],
                                                    f"person {p['judge']}", p["item_id"]))
        parts.append(f'<div class="q"><p>{head}</p>'
                     f'{"".join(turns)}<p>chose {"AB"[p["chose"]]} ({verdict})</p></div>')
    return "".join(parts) + "</body></html>"


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _table_html(name: str, rows: list[dict]) -> str:
    if not rows:
        return f'<p class="empty" id="table-{name}">no rows</p>'
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return (f'<table id="table-{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="csv"><a href="{name}.csv">{name}.csv</a></p>')


_SELF_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.figure');
  var ok = Array.prototype.filter.call(imgs, function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var el = document.getElementById('figure-check');
  el.textContent = 'figures loaded: ' + ok + '/' + imgs.length;
  el.setAttribute('data-loaded', ok); el.setAttribute('data-total', imgs.length);
});
</script>"""


def _page(summaries: list[dict], runs: list[dict], tables: dict, images: list[tuple[str, bytes]]) -> str:
    provenance = runs[0]["provenance"] if runs else {}
    experiments = ", ".join(sorted({s["experiment"] for s in summaries}))
    figs = "".join(f'<figure><img class="figure" alt="{html.escape(title)}" src="data:image/png;base64,'
                   f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(title)}</figcaption></figure>'
                   for title, png in images)
    undefined = sum(1 for s in summaries if not s["defined"])
    sections = [
        ("PGR per task, pair and method", "summaries",
         "Accuracies are means over seeds; the PGR interval is a 95% bootstrap over test items and seeds. "
         f"<b>undefined</b> ({undefined} of {len(summaries)}): the ceiling does not beat the floor beyond test-set "
         "noise (decided per task and pair, for every method alike) — see reason_undefined; a reason starting "
         "'wide' marks a defined PGR whose interval is wider than 1."
         + (" Rows with oracle_stopping = True chose their epochs on <b>ground-truth</b> validation labels: an upper "
            "bound, not a weak-to-strong result." if any(is_oracle(s["loss"]) for s in summaries) else "")),
        ("Median PGR across task-pairs", "median_pgr",
         "Bootstrap over task-pairs; undefined PGRs are excluded and counted; strong-to-strong controls excluded."),
        ("Method comparisons (paired over task-pairs)", "method_comparison",
         "Counts of task-pairs each way, mean difference with a paired bootstrap interval, Wilcoxon signed-rank p."),
        ("Imitation: does the student copy its supervisor's errors?", "imitation",
         "Agreement of the student's hard test predictions with the supervisor's, where the supervisor is wrong vs "
         "right. Near 1.0 where wrong: errors copied; a strong student that generalises disagrees with them."),
        ("Label filtering", "label_filtering",
         "Weak labels removed before training on half B, and the share of removed labels that were actually wrong "
         "(ground truth is used here for reporting only), next to the weak labels' overall error rate."),
        ("Self-training rounds", "self_training",
         "Round 0 is the student on the supervisor's labels; each later round retrains on its own confident "
         "pseudo-labels (plus a quarter of supervisor labels). Falling pseudo-label accuracy or drifting class "
         "balance is error amplification."),
    ]
    if tables.get("critique_gaps") or tables.get("judges"):
        sections += [
            ("AI critiques: gap recovered", "critique_gaps",
             "A weak judge decides whether code is buggy alone and with an AI critique; the gap recovered is "
             "(with − alone) / (reference − alone), the reference being the tests (always right on verified bugs) or "
             "the critic model judging alone. Same bootstrap and 'undefined' rule as PGR; uplift intervals resample "
             "problems."),
            ("Judges: people and models", "judges",
             "Every stored judgement, by judge and condition. catch_rate: buggy programs called buggy; false_alarm: "
             "correct programs called buggy; median_seconds: time per item for people (from the judging page)."),
        ]
    if tables.get("oversight"):
        sections += [
            ("Oversight: a judge without the passage", "oversight",
             "The judge sees the question and two answers only; experts read the passage. judge_alone: no help; "
             "with_protocol: after reading the consultancy, debate or sandwiching transcript; expert_alone: the expert "
             "model answering with the passage. change: paired over questions and seeds; gap recovered = (with − "
             "alone) / (expert − alone), same bootstrap and 'undefined' rule as PGR; debate_vs_consultancy: debate's "
             "accuracy minus consultancy's for the same judge and expert, paired the same way. Transcripts (generated "
             "text, may be wrong or offensive): <a href=\"transcripts.html\">transcripts.html</a>."),
        ]
    if tables.get("people_oversight"):
        sections += [
            ("Oversight: people as judges", "people_oversight",
             "Verdicts from the local judging page on the same questions (no passage): blind, after an AI transcript "
             "(consultancy, debate), after questioning a live assistant that read the story (sandwich), or after "
             "questioning two live debaters between rounds (interactive_debate). Accuracy with a 95% bootstrap over "
             "verdicts; conditions are not paired (a person sees an item once). What people asked and what the models "
             "answered: <a href=\"transcripts.html\">transcripts.html</a>."),
        ]
    if tables.get("cai"):
        sections += [
            ("Constitutional AI: AI feedback vs human feedback", "cai",
             "HH-RLHF harmless-base pairs: each AI-feedback setting's agreement with the human label (all pairs, 95% "
             "bootstrap) and its position flips (share of pairs whose choice changes when the responses swap); then, "
             "on pairs held out by conversation: the AI labeller alone (floor), a preference model trained on its "
             "labels (transfer) and on human labels (ceiling) → gap recovered, same bootstrap and 'undefined' rule "
             "as PGR."),
        ]
    if tables.get("attacks"):
        sections += [
            ("Red teaming: attack success", "attacks",
             "Share of a target's replies a harm classifier flags, per red-teaming method: raw, and corrected for the "
             "classifier's false positives and false negatives measured on held-out labelled data (Rogan-Gladen), "
             "with a 95% interval that resamples the test cases and the classifier's test set. self_bleu: higher = "
             "less diverse test cases; diversity: mean pairwise cosine distance of their embeddings. The test cases "
             "and replies themselves (which may be offensive) stay in the results folder."),
            ("Red teaming: the harm classifiers' measured error", "harm_classifiers",
             "Confusion matrix of each classifier at its threshold on held-out labelled data it was never trained on; "
             "these rates are what the corrected success rates above account for."),
        ]
    if tables.get("selfimprove_gaps") or tables.get("selfimprove_rounds"):
        sections += [
            ("Self-improvement: gap recovered", "selfimprove_gaps",
             "A model trained on its own majority-voted answers (filter 'majority'; 'none' = every sample) after r "
             "rounds, against the base model (floor) and a reference that reads gold (ceiling): SFT on gold "
             "rationales where the task has them, else the oracle filter (only correct majorities) after r rounds. "
             "change: trained − base greedy test accuracy with a 95% bootstrap interval over questions and seeds; "
             "gap recovered: same bootstrap and 'undefined' rule as PGR; one_answer: the share of test questions "
             "the trained model / the reference give their most common answer — where both have collapsed, the gap "
             "compares two constant answers."),
            ("Self-improvement: rounds", "selfimprove_rounds",
             "Means over seeds per round. kept / kept_wrong_share: the training set a round's outputs selected and the "
             "share of its majorities that are wrong (gold read for reporting only). wrong_confident_before: test "
             "questions the previous round got wrong with vote share ≥ 0.6; wrong_more_confident_after: still wrong "
             "with a higher share — errors reinforced; fixed_after: now right. Unextractable answers are counted, "
             "never dropped."),
        ]
    body = "".join(f"<h2>{title}</h2><p>{note}</p>{_table_html(name, tables[name])}" for title, name, note in sections)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(provenance.items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>w2slab report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f2f2f2; }} figure {{ display: inline-block; margin: 0.5em; }}
figcaption {{ font-size: 12px; text-align: center; }} .meta {{ color: #666; font-size: 12px; }}
</style></head><body>
<h1>w2slab report</h1>
<p class="meta">experiments: {html.escape(experiments)} · {len(summaries)} summaries · {len(runs)} runs ·
{html.escape(versions)}</p>
<p class="meta" id="figure-check">figures loaded: (checking)</p>
{body}
<h2>Figures</h2>
{figs}
{_SELF_CHECK}
</body></html>
"""
