"""Report tables for judged items: the gap a critique recovers (summaries rows of protocol 'critiques'), every
judge's accuracy, catch rate and false alarms — people and models side by side — from the judgements table, and
judge accuracy per oversight protocol (summaries rows of protocol 'oversight'), and people's accuracy on oversight
questions per kind of help (judgements rows)."""
from __future__ import annotations

import numpy as np

from .table import interval_text, pgr_text


def is_feedback(summary: dict) -> bool:
    """A summaries row written by a feedback protocol (its result names the protocol), not a W2S run."""
    return bool((summary.get("result") or {}).get("protocol"))


def critique_gap_table(summaries: list[dict]) -> list[dict]:
    """One row per (experiment, judge, critic, reference): judge alone (floor), with critique (transfer), the
    reference (ceiling), uplift with its interval, and the gap recovered with its interval or 'undefined'."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["experiment"], s["weak"], s["loss"], s["strong"])):
        r = s["result"]
        rows.append({"experiment": s["experiment"], "task": s["task"], "judge": r["judge"], "critic": r["critic"],
                     "reference": s["strong"], "judge_alone": round(s["floor"], 4), "with_critique": round(s["transfer"], 4),
                     "reference_acc": round(s["ceiling"], 4),
                     "uplift": interval_text(r["uplift"]), "gap_recovered": pgr_text(s),
                     "reason": s["reason"] or ""})
    return rows


def oversight_table(summaries: list[dict]) -> list[dict]:
    """One row per (experiment, task, judge, expert, protocol with its variant: interactive, best-of-N): the judge
    alone, with the protocol's transcript, the expert alone; the paired accuracy change and the gap recovered, each
    with its 95% interval; for debate, the paired change from consultancy to debate (same judge, expert and seeds)
    when both ran."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["experiment"], s["task"], s["weak"], s["loss"])):
        r = s["result"]
        rows.append({"experiment": s["experiment"], "task": s["task"], "judge": r["judge"], "expert": r["expert"],
                     "protocol": r["oversight_protocol"] + (" interactive" if r.get("interactive") else "")
                     + (f" best-of-{r['best_of']}" if r.get("best_of", 1) > 1 else ""), "rounds": r["rounds"],
                     "judge_alone": round(s["floor"], 4), "with_protocol": round(s["transfer"], 4),
                     "expert_alone": round(s["ceiling"], 4),
                     "change": interval_text(r["change"]), "gap_recovered": pgr_text(s),
                     "debate_vs_consultancy": interval_text(r["vs_consultancy"]) if r.get("vs_consultancy") else "",
                     "reason": s["reason"] or ""})
    return rows


def judge_table(judgements: list[dict]) -> list[dict]:
    """One row per (experiment, judge kind, judge, condition, critic): judgements, distinct items, accuracy,
    catch rate (buggy called buggy), false alarms (correct called buggy) and median seconds per item (people)."""
    groups: dict[tuple, list[dict]] = {}
    for j in judgements:
        if j["condition"] not in ("alone", "critique", "mismatched"):
            continue  # oversight verdicts: see oversight_table
        groups.setdefault((j["experiment"], j["judge_kind"], j["judge"], j["condition"], j["critic"]), []).append(j)
    rows = []
    for (experiment, kind, judge, condition, critic), js in sorted(groups.items()):
        buggy = np.array([j["buggy"] for j in js], dtype=bool)
        called = np.array([j["decision"] for j in js], dtype=bool)
        seconds = [j["seconds"] for j in js if j["seconds"] is not None]
        rows.append({"experiment": experiment, "judge_kind": kind, "judge": judge, "condition": condition,
                     "critic": critic or "-", "judgements": len(js), "items": len({j["item_id"] for j in js}),
                     "accuracy": round(float((called == buggy).mean()), 4),
                     "catch_rate": round(float(called[buggy].mean()), 4) if buggy.any() else None,
                     "false_alarm": round(float(called[~buggy].mean()), 4) if (~buggy).any() else None,
                     "median_seconds": round(float(np.median(seconds)), 1) if seconds else None})
    return rows


OVERSIGHT_CONDITIONS = ("blind", "consultancy", "debate", "interactive_debate", "sandwich")


def people_oversight_table(judgements: list[dict], *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """People on oversight questions (the judging page): one row per (experiment, condition, critic) of human
    verdicts — people, verdicts, items, accuracy with a 95% bootstrap interval over verdicts, median seconds per item,
    and for sandwiching and interactive debate the mean number of questions asked. Conditions are not paired: a
    person sees an item once."""
    groups: dict[tuple, list[dict]] = {}
    for j in judgements:
        if j["judge_kind"] == "human" and j["condition"] in OVERSIGHT_CONDITIONS:
            groups.setdefault((j["experiment"], j["condition"], j["critic"]), []).append(j)
    rng = np.random.default_rng(seed)
    rows = []
    for (experiment, condition, critic), js in sorted(groups.items(), key=lambda g: (
            g[0][0], OVERSIGHT_CONDITIONS.index(g[0][1]), g[0][2])):
        correct = np.array([j["decision"] == j["buggy"] for j in js], dtype=float)
        boots = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(1)
        seconds = [j["seconds"] for j in js if j["seconds"] is not None]
        asked = [j["meta"].get("questions_asked") for j in js if isinstance(j["meta"], dict)]
        asked = [a for a in asked if a is not None]
        rows.append({"experiment": experiment, "condition": condition, "helper": critic or "-",
                     "people": len({j["judge"] for j in js}), "verdicts": len(js),
                     "items": len({j["item_id"] for j in js}),
                     "accuracy": f"{correct.mean():.3f} [{np.percentile(boots, 2.5):.3f}, "
                                 f"{np.percentile(boots, 97.5):.3f}]",
                     "median_seconds": round(float(np.median(seconds)), 1) if seconds else None,
                     "questions_asked": round(float(np.mean(asked)), 2) if asked else None})
    return rows
