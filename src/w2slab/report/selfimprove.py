"""Report tables and figures for self-improvement (``rounds`` rows and summaries of protocol 'selfimprove'):
accuracy per round with the oracle and gold references, the error-reinforcement curve, and the calibration of
vote shares — each per (model, task), means over seeds with 95% intervals over seeds and questions."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .figures import _plt, _png
from .table import interval_text, pgr_text

CONTROLS = {"oracle": "oracle filter (reads gold: upper bound)", "gold": "gold rationales SFT (control)",
            "none": "no filter (control)", "majority": "majority vote (LMSI)"}


COLLAPSED = 0.95  # a model giving one answer to this share of the test questions or more has collapsed


def selfimprove_gap_table(summaries: list[dict]) -> list[dict]:
    """One row per (experiment, task, model, filter, round): base, after training, reference, the accuracy
    change with its interval, the gap recovered with its interval or 'undefined', and ``one_answer``: the share of
    test questions the trained model / the reference give their most common answer, with 'both collapsed' where
    both reach COLLAPSED (the gap then compares constant answers)."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["experiment"], s["task"], s["weak"], s["loss"])):
        r = s["result"]
        shares = r.get("one_answer") or {}
        trained, reference = shares.get("trained"), shares.get("reference")
        one_answer = "—" if trained is None or reference is None else (
            f"{100 * trained:.0f}% / {100 * reference:.0f}%"
            + (" (both collapsed)" if min(trained, reference) >= COLLAPSED else ""))
        rows.append({"experiment": s["experiment"], "task": s["task"], "model": s["weak"], "filter": r["filter"],
                     "round": r["round"], "base_acc": round(s["floor"], 4), "trained_acc": round(s["transfer"], 4),
                     "reference": s["strong"], "reference_acc": round(s["ceiling"], 4),
                     "change": interval_text(r["change"]), "gap_recovered": pgr_text(s), "one_answer": one_answer,
                     "n_test": r["n_test"], "seeds": r["n_seeds"], "reason": s["reason"] or ""})
    return rows


def round_table(rounds: list[dict]) -> list[dict]:
    """One row per (experiment, task, model, filter, round), means over seeds: greedy and maj@k accuracy,
    unextractable answers, mean vote share, the most common greedy answer's share (collapse) and the best
    constant answer's accuracy, ECE, the kept set's size and share of wrong majorities, and the
    error reinforcement counts (summed over seeds)."""
    groups = defaultdict(list)
    for r in rounds:
        groups[(r["experiment"], r["task"], r["model"], r["filter"], r["round"])].append(r)
    out = []
    for (experiment, task, model, filter_name, index), rs in sorted(groups.items()):
        tests = [r["metrics"]["test"] for r in rs]
        reinforcement = [t["reinforcement"] for t in tests if "reinforcement" in t]
        kept = [r["kept"] for r in rs if r["kept"] is not None]
        wrong = [r["kept_wrong_share"] for r in rs if r["kept_wrong_share"] is not None]
        out.append({"experiment": experiment, "task": task, "model": model, "filter": filter_name, "round": index,
                    "seeds": len(rs), "greedy_acc": round(float(np.mean([r["greedy_acc"] for r in rs])), 4),
                    "maj_acc": round(float(np.mean([r["maj_acc"] for r in rs])), 4),
                    "greedy_unextractable": int(sum(r["greedy_unextractable"] for r in rs)),
                    "sample_unextractable": int(sum(r["sample_unextractable"] for r in rs)),
                    "mean_share": round(float(np.mean([t["mean_share"] for t in tests])), 4),
                    "top_answer_share": (round(float(np.mean([t["top_answer_share"] for t in tests])), 4)
                                         if all("top_answer_share" in t for t in tests) else None),
                    "constant_baseline": tests[0].get("constant_baseline"),
                    "ece": round(float(np.mean([t["ece"] for t in tests])), 4),
                    "kept": round(float(np.mean(kept)), 1) if kept else None,
                    "kept_wrong_share": round(float(np.mean(wrong)), 4) if wrong else None,
                    "wrong_confident_before": sum(x["wrong_confident_before"] for x in reinforcement) if reinforcement else None,
                    "wrong_more_confident_after": (sum(x["wrong_more_confident_after"] for x in reinforcement)
                                                   if reinforcement else None),
                    "fixed_after": sum(x["fixed_after"] for x in reinforcement) if reinforcement else None})
    return out


def seed_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and a 95% t-interval over seeds (the mean itself twice when there is one seed)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _cells(rounds: list[dict]) -> dict:
    cells = defaultdict(list)
    for r in rounds:
        cells[(r["task"], r["model"])].append(r)
    return cells


def accuracy_per_round(rounds: list[dict], task: str, model: str) -> bytes:
    """Greedy test accuracy per round for each filter (mean over seeds, 95% interval over seeds); oracle and gold
    are drawn dashed as references, the best constant answer's accuracy dotted (a collapsed model reaches it)."""
    plt = _plt()
    rows = _cells(rounds)[(task, model)]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    by_filter = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_filter[r["filter"]][r["round"]].append(r["greedy_acc"])
    for j, (filter_name, per_round) in enumerate(sorted(by_filter.items())):
        xs = sorted(per_round)
        stats = [seed_interval(per_round[x]) for x in xs]
        means = [s[0] for s in stats]
        err = np.array([[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]])
        offset = (j - 1.5) * 0.04
        ax.errorbar([x + offset for x in xs], means, yerr=err, marker="o", capsize=3,
                    ls="--" if filter_name in ("oracle", "gold") else "-", label=CONTROLS.get(filter_name, filter_name))
    constant = [r["metrics"]["test"].get("constant_baseline") for r in rows]
    if constant and constant[0] is not None:
        ax.axhline(constant[0], color="gray", ls=":", lw=1)
        ax.annotate("best constant answer", (ax.get_xlim()[0], constant[0]), fontsize=7, color="gray", va="bottom")
    ax.set_xlabel("round (0 = base model)")
    ax.set_ylabel("greedy test accuracy")
    ax.set_xticks(sorted({r["round"] for r in rows}))
    ax.set_title(f"{model} on {task}")
    ax.legend(fontsize=7)
    return _png(fig)


def reinforcement_curve(rounds: list[dict], task: str, model: str) -> bytes:
    """Per round and filter: of the test questions the previous round answered wrongly with high agreement, the
    share answered wrongly with *higher* agreement (errors reinforced) and the share fixed (sums over seeds)."""
    plt = _plt()
    rows = [r for r in _cells(rounds)[(task, model)] if "reinforcement" in r["metrics"]["test"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    by_filter = defaultdict(lambda: defaultdict(lambda: np.zeros(3)))
    for r in rows:
        x = r["metrics"]["test"]["reinforcement"]
        by_filter[r["filter"]][r["round"]] += [x["wrong_confident_before"], x["wrong_more_confident_after"],
                                               x["fixed_after"]]
    for j, (filter_name, per_round) in enumerate(sorted(by_filter.items())):
        xs = sorted(per_round)
        share = lambda i: [per_round[x][i] / per_round[x][0] if per_round[x][0] else np.nan for x in xs]  # noqa: E731
        ax.plot(xs, share(1), marker="o", color=f"C{j}", label=f"{filter_name}: reinforced")
        ax.plot(xs, share(2), marker="x", ls=":", color=f"C{j}", label=f"{filter_name}: fixed")
    ax.set_xlabel("round")
    ax.set_ylabel("share of confidently wrong questions")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{model} on {task}: error reinforcement")
    if by_filter:
        ax.legend(fontsize=6)
    return _png(fig)


def calibration_plot(rounds: list[dict], task: str, model: str, *, bins: int = 5) -> bytes:
    """Majority-vote accuracy against vote share (equal-width bins, all seeds pooled) for round 0 and each
    filter's last round; the diagonal is perfect calibration."""
    plt = _plt()
    rows = _cells(rounds)[(task, model)]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8)
    last = {}
    for r in rows:
        if r["round"] > last.get(r["filter"], -1):
            last[r["filter"]] = r["round"]
    curves = {"round 0 (base)": [r for r in rows if r["round"] == 0 and r["filter"] == rows[0]["filter"]]}
    curves.update({f"{f}, round {n}": [r for r in rows if r["filter"] == f and r["round"] == n]
                   for f, n in sorted(last.items()) if n > 0})
    edges = np.linspace(0, 1, bins + 1)
    for label, rs in curves.items():
        shares = np.concatenate([r["metrics"]["test"]["shares"] for r in rs])
        correct = np.concatenate([r["metrics"]["test"]["majority_correct"] for r in rs]).astype(float)
        index = np.clip(np.digitize(shares, edges[1:-1], right=True), 0, bins - 1)
        xs = [shares[index == b].mean() for b in range(bins) if (index == b).any()]
        ys = [correct[index == b].mean() for b in range(bins) if (index == b).any()]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("vote share of the majority")
    ax.set_ylabel("accuracy of the majority")
    ax.set_title(f"{model} on {task}: calibration", fontsize=9)
    ax.legend(fontsize=6)
    return _png(fig)


def selfimprove_figures(rounds: list[dict]) -> list[tuple[str, bytes]]:
    """(title, PNG) per (task, model): accuracy per round, error reinforcement, calibration."""
    out = []
    for task, model in sorted(_cells(rounds)):
        out.append((f"self-improvement: {model} on {task}, accuracy per round", accuracy_per_round(rounds, task, model)))
        out.append((f"self-improvement: {model} on {task}, error reinforcement", reinforcement_curve(rounds, task, model)))
        out.append((f"self-improvement: {model} on {task}, calibration", calibration_plot(rounds, task, model)))
    return out
