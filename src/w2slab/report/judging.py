"""Report tables for judged items: the gap a critique recovers (summaries rows of protocol 'critiques'), every
judge's accuracy, catch rate and false alarms — people and models side by side — from the judgements table, and
judge accuracy per oversight protocol (summaries rows of protocol 'oversight')."""
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
    """One row per (experiment, task, judge, expert, protocol): the judge alone, with the protocol's transcript, the
    expert alone; the paired accuracy change and the gap recovered, each with its 95% interval."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["experiment"], s["task"], s["weak"], s["loss"])):
        r = s["result"]
        rows.append({"experiment": s["experiment"], "task": s["task"], "judge": r["judge"], "expert": r["expert"],
                     "protocol": r["oversight_protocol"], "rounds": r["rounds"],
                     "judge_alone": round(s["floor"], 4), "with_protocol": round(s["transfer"], 4),
                     "expert_alone": round(s["ceiling"], 4),
                     "change": interval_text(r["change"]), "gap_recovered": pgr_text(s),
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
