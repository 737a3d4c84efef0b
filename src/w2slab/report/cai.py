"""Report table for Constitutional AI (summaries rows of protocol 'cai'): each AI-feedback setting's agreement
with human labels, and the gap a preference model trained on its labels recovers towards one trained on human
labels (floor = the AI labeller alone, ceiling = the human-trained model; all on held-out human labels)."""
from __future__ import annotations

from .table import interval_text, pgr_text


def cai_table(summaries: list[dict]) -> list[dict]:
    """One row per (experiment, feedback setting)."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["experiment"], s["weak"])):
        r = s["result"]
        agreement = r["agreement"]
        rows.append({"experiment": s["experiment"], "feedback": s["weak"].removeprefix("AI labels: "),
                     "agreement_all_pairs": interval_text({"mean": agreement["agreement"], "ci": agreement["ci"]}),
                     "position_flips": None if r["flip_rate"] is None else round(r["flip_rate"], 3),
                     "ai_alone": round(s["floor"], 4), "pm_on_ai_labels": round(s["transfer"], 4),
                     "pm_on_human_labels": round(s["ceiling"], 4), "gap_recovered": pgr_text(s),
                     "held_out_pairs": r["gap"]["n_test"], "seeds": r["gap"]["n_seeds"], "reason": s["reason"] or ""})
    return rows
