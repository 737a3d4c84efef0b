"""The report's figures (matplotlib, Agg backend), each returned as PNG bytes.

Inputs are summary rows of the results store (one per task, weak, strong, loss) and run rows (for learning
curves). Undefined PGRs are never drawn as numbers: they are left out and counted in the figure's note.
"""
from __future__ import annotations

import io
from collections import defaultdict

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def model_size(name: str) -> float | None:
    """Parameters in millions for zoo models (TF-IDF counts as 0.1), None for others."""
    from ..models import MODELS

    if name not in MODELS:
        return None
    spec = MODELS.get(name)
    return 0.1 if spec.kind == "tfidf" else spec.params_m


def _x_positions(models: list[str]) -> tuple[dict[str, float], bool]:
    """Student size in millions of parameters when every model's size is known (log axis), else ranks."""
    sizes = {m: model_size(m) for m in models}
    if all(v is not None for v in sizes.values()):
        return sizes, True
    order = sorted(models, key=lambda m: (sizes[m] is None, sizes[m] or 0, m))
    return {m: float(i) for i, m in enumerate(order)}, False


def accuracy_vs_size(summaries: list[dict], task: str) -> bytes:
    """Test accuracy vs strong-student size: a line per (weak supervisor, loss) and the ceiling (Burns et al.
    Figure 3 style); the weak floors as dotted horizontal lines."""
    plt = _plt()
    rows = [s for s in summaries if s["task"] == task]
    students = sorted({s["strong"] for s in rows})
    x, log = _x_positions(students)
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = defaultdict(dict)
    for s in rows:
        lines[(s["weak"], s["loss"])][s["strong"]] = s["transfer"]
    for (weak, loss), points in sorted(lines.items()):
        xs = sorted(points, key=x.get)
        ax.plot([x[m] for m in xs], [points[m] for m in xs], marker="o", label=f"{weak} → student ({loss})")
    ceiling = {s["strong"]: s["ceiling"] for s in rows}
    xs = sorted(ceiling, key=x.get)
    ax.plot([x[m] for m in xs], [ceiling[m] for m in xs], color="black", lw=2, marker="s", label="ceiling (ground truth)")
    for weak in sorted({s["weak"] for s in rows}):
        floor = np.mean([s["floor"] for s in rows if s["weak"] == weak])
        ax.axhline(floor, ls=":", color="gray")
        ax.annotate(f"floor {weak}", (ax.get_xlim()[0], floor), fontsize=7, color="gray", va="bottom")
    _size_axis(ax, x, log)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{task}: accuracy vs student size")
    ax.legend(fontsize=7)
    return _png(fig)


def pgr_vs_size(summaries: list[dict], task: str) -> bytes:
    """PGR vs strong-student size, a line per (weak supervisor, loss), 95% intervals as error bars."""
    plt = _plt()
    rows = [s for s in summaries if s["task"] == task]
    x, log = _x_positions(sorted({s["strong"] for s in rows}))
    fig, ax = plt.subplots(figsize=(6, 4))
    undefined = 0
    groups = defaultdict(list)
    for s in rows:
        if s["defined"]:
            groups[(s["weak"], s["loss"])].append(s)
        else:
            undefined += 1
    for (weak, loss), points in sorted(groups.items()):
        points.sort(key=lambda s: x[s["strong"]])
        xs = [x[s["strong"]] for s in points]
        ys = np.array([s["pgr"] for s in points])
        err = np.array([[s["pgr"] - s["pgr_low"] for s in points], [s["pgr_high"] - s["pgr"] for s in points]])
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{weak} ({loss})")
    ax.axhline(0, color="gray", lw=0.8)
    ax.axhline(1, color="gray", lw=0.8, ls="--")
    _size_axis(ax, x, log)
    ax.set_ylabel("PGR")
    ax.set_title(f"{task}: PGR vs student size" + (f" ({undefined} undefined, not drawn)" if undefined else ""))
    if groups:
        ax.legend(fontsize=7)
    return _png(fig)


def pgr_bars(summaries: list[dict]) -> bytes:
    """PGR per (task, pair) and loss, bars with 95% intervals; undefined cells are marked with a cross."""
    plt = _plt()
    keys = sorted({(s["task"], s["weak"], s["strong"]) for s in summaries})
    losses = sorted({s["loss"] for s in summaries})
    width = 0.8 / len(losses)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(keys) * len(losses)), 4))
    by_key = {(s["task"], s["weak"], s["strong"], s["loss"]): s for s in summaries}
    for j, loss in enumerate(losses):
        ax.bar(0, 0, 0, color=f"C{j}", label=loss)  # legend entry even when the first cell is undefined
        for i, key in enumerate(keys):
            s = by_key.get((*key, loss))
            pos = i + (j - (len(losses) - 1) / 2) * width
            if s is None:
                continue
            if s["defined"]:
                ax.bar(pos, s["pgr"], width, color=f"C{j}",
                       yerr=[[s["pgr"] - s["pgr_low"]], [s["pgr_high"] - s["pgr"]]], capsize=3)
            else:
                ax.plot(pos, 0, marker="x", color=f"C{j}", ms=10)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{t}\n{w}→{m}" for t, w, m in keys], fontsize=7, rotation=30, ha="right")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_ylabel("PGR (95% CI)")
    ax.set_title("PGR per task and method (× = undefined: ceiling does not beat floor beyond noise)")
    ax.legend(fontsize=7)
    return _png(fig)


def method_scatter(summaries: list[dict], a: str, b: str) -> bytes:
    """PGR of loss ``a`` (x) vs loss ``b`` (y) across (task, pair), where both are defined."""
    plt = _plt()
    pairs = _paired_pgr(summaries, a, b)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if pairs:
        xa, yb = zip(*[(pa, pb) for _, pa, pb in pairs])
        ax.scatter(xa, yb)
        for (key, pa, pb) in pairs:
            ax.annotate(key[0], (pa, pb), fontsize=6)
        lo, hi = min(min(xa), min(yb), 0), max(max(xa), max(yb), 1)
        ax.plot([lo, hi], [lo, hi], color="gray", ls="--")
    ax.set_xlabel(f"PGR with {a}")
    ax.set_ylabel(f"PGR with {b}")
    ax.set_title(f"{b} vs {a} ({len(pairs)} task-pairs with both defined)")
    return _png(fig)


def learning_curves(runs: list[dict], max_panels: int = 6) -> bytes:
    """Transfer runs: test accuracy (ground truth) and agreement with the weak supervisor per epoch."""
    plt = _plt()
    curves = [r for r in runs if r["role"] == "transfer" and "curve" in r["metrics"] and r["seed"] == 0]
    curves = sorted(curves, key=lambda r: (r["task"], r["strong"], r["weak"], r["loss"]))[:max_panels]
    cols = min(3, max(1, len(curves)))
    rows = max(1, int(np.ceil(len(curves) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, run in zip(axes.ravel(), curves):
        curve = run["metrics"]["curve"]
        epochs = np.arange(1, len(curve["test_accuracy"]) + 1)
        ax.plot(epochs, curve["test_accuracy"], label="accuracy vs ground truth")
        ax.plot(epochs, curve["weak_agreement"], label="agreement with weak labels", ls="--")
        ax.set_title(f"{run['task']}: {run['weak']}→{run['strong']} {run['loss']} s{run['seed']}", fontsize=8)
        ax.set_xlabel("epoch")
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    return _png(fig)


def _paired_pgr(summaries: list[dict], a: str, b: str) -> list[tuple[tuple, float, float]]:
    by = {(s["task"], s["weak"], s["strong"], s["loss"]): s for s in summaries}
    out = []
    for (task, weak, strong, loss), s in sorted(by.items()):
        other = by.get((task, weak, strong, b))
        if loss == a and other and s["defined"] and other["defined"]:
            out.append(((task, weak, strong), s["pgr"], other["pgr"]))
    return out


def _size_axis(ax, x: dict[str, float], log: bool) -> None:
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("student parameters (millions)")
    else:
        ax.set_xlabel("student (ordered by size where known)")
    ax.set_xticks(sorted(x.values()))
    ax.set_xticklabels([m for m, _ in sorted(x.items(), key=lambda kv: kv[1])], fontsize=7)
