"""Plain-text table of an experiment's summaries: accuracy (mean ± sd over seeds), AUC, and PGR [95% CI]."""
from __future__ import annotations


def _acc(summary: dict, name: str) -> str:
    r = summary["result"]
    return f"{r[f'{name}_accuracy_mean']:.3f}±{r[f'{name}_accuracy_sd']:.3f}"


def pgr_text(summary: dict, undefined: str = "undefined") -> str:
    """'+0.42 [+0.10, +0.80]' for a summaries row (' (wide)' when its interval is wider than 1), else ``undefined``."""
    if not summary["defined"]:
        return undefined
    wide = " (wide)" if str(summary.get("reason") or "").startswith("wide") else ""
    return f"{summary['pgr']:+.2f} [{summary['pgr_low']:+.2f}, {summary['pgr_high']:+.2f}]{wide}"


def gap_text(gap: dict, undefined: str = "undefined (gap within noise)") -> str:
    """:func:`pgr_text` of a gap result (``PGRResult.as_dict()``: defined, pgr, pgr_ci, reason)."""
    low, high = gap["pgr_ci"] or (None, None)
    return pgr_text({"defined": gap["defined"], "pgr": gap["pgr"], "pgr_low": low, "pgr_high": high,
                     "reason": gap["reason"]}, undefined)


def interval_text(estimate: dict) -> str:
    """'+0.027 [-0.018, +0.070]' for {"mean": m, "ci": [low, high]}."""
    return f"{estimate['mean']:+.3f} [{estimate['ci'][0]:+.3f}, {estimate['ci'][1]:+.3f}]"


def format_table(result) -> str:
    """Render an ExperimentResult (or anything with .config, .summaries, .split_sizes) as text."""
    cfg = result.config
    header = ["weak → strong", "loss", "floor", "transfer", "ceiling", "PGR [95% CI]", "AUC f/t/c"]
    rows = []
    for s in result.summaries:
        pair = f"{s['weak']} → {s['strong']}" + (" (s2s control)" if s["strong_to_strong"] else "")
        r = s["result"]
        auc = "/".join(f"{r[f'{n}_auc_mean']:.3f}" for n in ("floor", "transfer", "ceiling"))
        rows.append([pair, s["loss"], _acc(s, "floor"), _acc(s, "transfer"), _acc(s, "ceiling"), pgr_text(s, "undefined*"), auc])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    sizes = result.split_sizes
    out = [f"task {cfg.task}: test accuracy, mean±sd over {cfg.seeds} seed(s); split A={sizes['weak']} "
           f"B={sizes['transfer']} val={sizes['val']} test={sizes['test']}; head {cfg.head}",
           line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    undefined = {(s["weak"], s["strong"]): s["reason"] for s in result.summaries if not s["defined"]}
    notes = [f"* {weak} → {strong} (every method): PGR undefined: {reason}" for (weak, strong), reason in undefined.items()]
    if any(s.get("reason", "").startswith("wide") for s in result.summaries):
        notes.append("(wide): the gap is real but small; the PGR interval is wider than 1, so methods on this pair "
                     "are hard to tell apart")
    if any("oracle" in s["loss"] for s in result.summaries):
        notes.append("+oracle: epochs chosen on ground-truth validation labels — an upper bound, not a weak-to-strong "
                     "result")
    if any(s["strong_to_strong"] for s in result.summaries):
        notes.append("s2s control: the same model as weak and strong (strong-to-strong), not a weak-to-strong pair")
    return "\n".join(out + ([""] + notes if notes else []))


def format_rows(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Rows as a plain left-aligned text table with a header line."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
