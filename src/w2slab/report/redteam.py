"""Report tables and a figure for red teaming (``attacks`` rows): attack success per target and method — raw and
corrected for the classifier's measured error — next to the test cases' diversity, and the classifier's errors."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .figures import _plt, _png


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def attack_table(attacks: list[dict]) -> list[dict]:
    """One row per (target, method), seeds pooled: cases, raw flagged share, the corrected success rate (mean over
    seeds; the interval spans the seeds' intervals), self-BLEU, embedding diversity and refusals. ``attacks``: the
    ``attacks`` store rows (metrics nested) or run_redteam's result["attacks"] (flat)."""
    groups = defaultdict(list)
    for a in attacks:
        flat = a["metrics"] | {k: a[k] for k in ("target", "method", "seed")} if "metrics" in a else a
        groups[(flat["target"], flat["method"])].append(flat)
    rows = []
    for (target, method), items in sorted(groups.items()):
        rates = [i["rate"] for i in items if i["rate"]["n"]]
        corrected = [r["corrected"] for r in rates if r.get("corrected") is not None]
        lows = [r["corrected_ci"][0] for r in rates if r.get("corrected_ci")]
        highs = [r["corrected_ci"][1] for r in rates if r.get("corrected_ci")]
        mean = lambda k: (np.mean([i[k] for i in items if i[k] is not None])  # noqa: E731
                          if any(i[k] is not None for i in items) else None)
        rows.append({"target": target, "method": method, "seeds": len(items),
                     "cases": sum(i["replied"] for i in items),
                     "unparseable": sum(i["unparseable"] for i in items),
                     "flagged_raw": _pct(np.mean([r["raw"] for r in rates])) if rates else "—",
                     "success_corrected": (f"{_pct(np.mean(corrected))} [{_pct(min(lows))}, {_pct(max(highs))}]"
                                           if corrected else "— (" + (items[0]["note"] or "no cases") + ")"),
                     "self_bleu": None if mean("self_bleu") is None else round(float(mean("self_bleu")), 3),
                     "diversity": None if mean("embedding_diversity") is None
                     else round(float(mean("embedding_diversity")), 3),
                     "refusals": _pct(mean("refusal_rate"))})
    return rows


def classifier_table(attacks: list[dict]) -> list[dict]:
    """The confusion matrix and error rates of each harm classifier behind the attack rates, measured on its
    held-out labelled test set (one row per experiment, classifier and threshold)."""
    seen = {}
    for a in attacks:
        m = a["metrics"]
        c = m["classifier_metrics"]
        seen[(a["experiment"], m["classifier"], m["threshold"])] = {
            "experiment": a["experiment"], "classifier": m["classifier"], "threshold": m["threshold"],
            "evaluated_on": c["evaluated_on"], "true_pos": c["tp"], "false_neg": c["n_pos"] - c["tp"],
            "false_pos": c["fp"], "true_neg": c["n_neg"] - c["fp"], "precision": round(c["precision"], 3),
            "recall": round(c["recall"], 3), "fpr": round(c["fpr"], 3), "fnr": round(c["fnr"], 3),
            "auc": None if c["auc"] is None else round(c["auc"], 3), "ece": round(c["ece"], 3)}
    return list(seen.values())


def success_vs_diversity(attacks: list[dict]) -> bytes:
    """Corrected success rate against embedding diversity, a point per (target, method, seed): Perez et al.'s
    trade-off between how often an attack works and how varied the attacks are."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = {}
    for a in attacks:
        m = a["metrics"]
        rate = m["rate"]
        if rate.get("corrected") is None or m["embedding_diversity"] is None:
            continue
        color = styles.setdefault(a["method"], f"C{len(styles)}")
        marker = "o" if a["target"] == attacks[0]["target"] else "s"
        ax.errorbar(m["embedding_diversity"], rate["corrected"],
                    yerr=[[rate["corrected"] - rate["corrected_ci"][0]], [rate["corrected_ci"][1] - rate["corrected"]]],
                    color=color, marker=marker, capsize=2, ls="none")
    for method, color in styles.items():
        ax.plot([], [], color=color, marker="o", ls="none", label=method)
    ax.set_xlabel("diversity of test cases (mean pairwise cosine distance)")
    ax.set_ylabel("attack success (classifier-corrected)")
    ax.set_title("red teaming: success vs diversity (● first target, ■ others)", fontsize=9)
    if styles:
        ax.legend(fontsize=7)
    return _png(fig)
