"""The oversight numbers (issue: "Scalable-oversight protocols"), written to benchmarks/out/oversight-<experiment>.json
and docs/<experiment>_bench.md: judge accuracy per protocol with intervals, the gap recovered, calibration, position
flips, consultancy persuasiveness, verified quotes, tokens, and accuracy split by which answer echoes the passage, for
the config given (default: the pilot).

A study longer than one session runs in parts (``--experts``, ``--seeds``): each part's numbers — per-question
probabilities and counts, no generated text — are kept in benchmarks/measured/oversight-<experiment>.json, and the
page recomputes every measure from all parts together.

    python benchmarks/bench_oversight.py [--config sweeps/oversight.toml] [--experts M ..] [--seeds S ..]
        [--protocols P ..] [--markdown-only] [--against OTHER.toml]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from common import MEASURED, OUT, ROOT, part_key, parts_overlap, relative, save
from w2slab.feedback.oversight import PROTOCOLS
from w2slab.report.table import interval_text

RESULTS = OUT / "oversight-results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps/oversight_pilot.toml"), help="an OversightConfig TOML")
    parser.add_argument("--experts", nargs="+", help="run only these experts of the config (a part)")
    parser.add_argument("--seeds", nargs="+", type=int, help="run only these seeds of the config (a part)")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS,
                        help="run only these protocols of the config (the judge alone and the expert alone always run: "
                             "'--protocols expert' measures the references of a part in minutes)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rebuild the page from the stored parts (benchmarks/measured/)")
    parser.add_argument("--against", help="another config's TOML, a variant on the same questions (e.g. without "
                                          "--interactive or best-of-N) with stored parts: the page gains this "
                                          "config's accuracy minus that one's, paired per cell")
    args = parser.parse_args()
    from w2slab.feedback.oversight_run import OversightConfig, run_oversight

    config = OversightConfig.from_toml(args.config)
    against = None
    if args.against:
        from w2slab.errors import ConfigError

        try:
            other = OversightConfig.from_toml(args.against)
        except ConfigError as e:
            parser.error(f"--against: {e}")
        if (other.task, other.n_questions, other.item_seed) != (config.task, config.n_questions, config.item_seed):
            parser.error(f"--against {relative(args.against)} asks other questions (task, n_questions or item_seed)")
        stored_other = MEASURED / f"oversight-{other.experiment}.json"
        if not stored_other.is_file():
            parser.error(f"--against {relative(args.against)}: no stored parts ({relative(stored_other)})")
        against = (json.loads(stored_other.read_text())["parts"], other, args.against)
    name = f"oversight-{config.experiment}"
    stored = MEASURED / f"{name}.json"
    out = json.loads(stored.read_text()) if stored.is_file() else {"parts": {}}
    if not args.markdown_only:
        part = OversightConfig.from_toml(args.config, experts=args.experts, seeds=args.seeds, protocols=args.protocols)
        unknown = (sorted(set(part.experts) - set(config.experts)) + sorted(set(part.seeds) - set(config.seeds))
                   + sorted(set(part.protocols) - set(config.protocols)))
        if unknown:
            parser.error(f"not in {relative(args.config)}: {', '.join(map(str, unknown))}")
        start = time.perf_counter()
        result = run_oversight(part, results_dir=RESULTS, progress=sys.stderr.isatty())
        result["total_s"] = time.perf_counter() - start
        subset = {"protocols": part.protocols} if args.protocols else {}  # kept beside the full part, never over it
        key = part_key(experts=part.experts, seeds=part.seeds, **subset)
        out["parts"] = {k: v for k, v in out["parts"].items() if not parts_overlap(k, key)} | {key: result}
        save(name, out, keep=out)
    page = ROOT / "docs" / f"{config.experiment.replace('-', '_')}_bench.md"  # oversight_bench.md, oversight_pilot_...
    page.write_text(markdown(out["parts"], config, args.config, against=against), encoding="utf-8")


def merge(parts: dict, config) -> dict:
    """Every part's per-question probabilities together, and every measure recomputed from them: {"blind": {judge:
    measures}, "experts": {expert: measures}, "protocols": {(judge, expert, protocol): (measures, gap, seeds)},
    "quotes", "tokens", "seconds", "cells": {(judge, expert, protocol): {seed: {"p", "flip_rate"}}}, "questions"}. Parts must share the task, questions and scoring (checked)."""
    import numpy as np

    from w2slab.feedback.oversight_run import accuracy_measures, protocol_measures
    from w2slab.tasks.passages import load_passage_questions

    from w2slab.feedback.oversight_run import OversightConfig

    defaults = {f.name: f.default for f in dataclasses.fields(OversightConfig)}  # for parts stored before a field
    setting = lambda part, f: part["config"].get(f, defaults[f])  # noqa: E731
    first = next(iter(parts.values()))
    same = ("task", "n_questions", "item_seed", "rounds", "sequential", "judge_scoring", "max_tokens", "words",
            "best_of", "selector", "interactive")
    for key, part in parts.items():
        differ = [f for f in same if setting(part, f) != setting(first, f)]
        if differ:
            sys.exit(f"error: part {key} was run with another {', '.join(differ)}: rerun it or delete it from "
                     "benchmarks/measured/")
    questions = load_passage_questions(setting(first, "task"), limit=setting(first, "n_questions"),
                                       seed=setting(first, "item_seed"))
    blind, expert, cells = {}, {}, {}
    quotes, tokens, seconds = {}, {}, {}
    for key in parts:
        part = parts[key]
        pc = part["p_correct"]
        blind.update({j: (p, part["judges"][j]["blind"]["flip_rate"]) for j, p in pc["blind"].items()})
        expert.update({e: (p, part["experts"][e]["flip_rate"]) for e, p in pc["expert"].items()})
        for judge, by_expert in pc["protocols"].items():
            for exp, by_protocol in by_expert.items():
                for protocol, by_seed in by_protocol.items():
                    cells.setdefault((judge, exp, protocol), {}).update({int(s): v for s, v in by_seed.items()})
        for label, per_seed in part["quotes"].items():
            quotes.setdefault(label, []).extend(per_seed)
            for k, v in part["tokens"][label].items():
                tokens.setdefault(label, {"prompt": 0, "completion": 0})[k] += v
        seconds[key] = part["total_s"]
    out = {"blind": {j: accuracy_measures(np.array([p])) | {"flip_rate": f} for j, (p, f) in blind.items()},
           "experts": {e: accuracy_measures(np.array([p])) | {"flip_rate": f} for e, (p, f) in expert.items()},
           "protocols": {}, "quotes": quotes, "tokens": tokens, "seconds": seconds, "cells": cells,
           "questions": questions}
    for (judge, exp, protocol), by_seed in sorted(cells.items()):
        seeds = sorted(by_seed)
        measures, gap = protocol_measures(questions, protocol, seeds, blind[judge][0],
                                          [by_seed[s]["p"] for s in seeds], expert[exp][0],
                                          [by_seed[s]["flip_rate"] for s in seeds])
        out["protocols"][(judge, exp, protocol)] = (measures, gap, seeds)
    out["overlap"] = _by_overlap(questions, blind, expert, cells)
    out["prior"] = _fixed_answer_prior(questions, blind, expert, cells)
    out["calibrated"] = _calibrated_protocols(questions, blind, expert, cells) if out["prior"] else None
    out["vs_consultancy"] = _debate_vs_consultancy(questions, cells, calibrate=bool(out["prior"]))
    return out


def _debate_vs_consultancy(questions, cells, *, calibrate: bool) -> dict:
    """{(judge, expert): {"seeds", "raw", "calibrated"}}: debate's accuracy minus consultancy's for one judge and
    expert, paired over questions and the seeds both ran (oversight_run.paired_change); "calibrated" after batch
    calibration of each (None unless ``calibrate``)."""
    import numpy as np

    from w2slab.feedback.oversight import batch_calibrated
    from w2slab.feedback.oversight_run import paired_change

    out = {}
    for (judge, exp, protocol), debate in sorted(cells.items()):
        if protocol != "debate":
            continue
        consultancy = cells.get((judge, exp, "consultancy"), {})
        seeds = sorted(set(debate) & set(consultancy))
        if not seeds:
            continue
        p_c, p_d = (np.array([by_seed[s]["p"] for s in seeds]) for by_seed in (consultancy, debate))
        out[(judge, exp)] = {"seeds": seeds, "raw": paired_change(p_c, p_d),
                             "calibrated": paired_change(batch_calibrated(questions, p_c),
                                                         batch_calibrated(questions, p_d)) if calibrate else None}
    return out


def _calibrated_protocols(questions, blind, expert, cells) -> dict:
    """The per-protocol measures of :func:`merge` after batch calibration (oversight.batch_calibrated) of every
    reader: the judge alone, the judge per seed with the protocol, and the expert alone — so a protocol that only
    shifts the judge toward one answer text shows no change. {(judge, expert, protocol): (measures, gap, seeds)}."""
    from w2slab.feedback.oversight import batch_calibrated
    from w2slab.feedback.oversight_run import protocol_measures

    out = {}
    for (judge, exp, protocol), by_seed in sorted(cells.items()):
        seeds = sorted(by_seed)
        p = batch_calibrated(questions, [by_seed[s]["p"] for s in seeds])
        measures, gap = protocol_measures(questions, protocol, seeds, batch_calibrated(questions, blind[judge][0]), p,
                                          batch_calibrated(questions, expert[exp][0]),
                                          [by_seed[s]["flip_rate"] for s in seeds])
        out[(judge, exp, protocol)] = (measures, gap, seeds)
    return out


def _readers(blind, expert, cells) -> dict:
    """{reader label: P(correct), (n,) or (n_seeds, n)}: each judge alone, each expert alone, the passage's own effect
    on a model that is both (its log-odds with the passage minus without), and each judge with each protocol."""
    import numpy as np
    from scipy.special import expit, logit

    log_odds = lambda p: logit(np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9))  # noqa: E731
    readers = {f"{j} alone (no passage)": p for j, (p, _) in sorted(blind.items())}
    for e, (p, _) in sorted(expert.items()):
        readers[f"{e} expert alone (with the passage)"] = p
        if e in blind:
            readers[f"{e}: the passage's own effect (log-odds with minus without)"] = expit(log_odds(p)
                                                                                             - log_odds(blind[e][0]))
    for (judge, exp, protocol), by_seed in sorted(cells.items()):
        readers[f"{judge} judging {exp}'s {protocol}"] = np.array([by_seed[s]["p"] for s in sorted(by_seed)])
    return readers


def _by_overlap(questions, blind, expert, cells) -> dict:
    """Accuracy split by which answer echoes the passage more (oversight.accuracy_by_overlap), per reader of
    :func:`_readers` (protocols: seeds pooled per question)."""
    from w2slab.feedback.oversight import accuracy_by_overlap

    return {reader: accuracy_by_overlap(questions, p) for reader, p in _readers(blind, expert, cells).items()}


def _fixed_answer_prior(questions, blind, expert, cells) -> dict | None:
    """oversight.fixed_answer_prior per reader of :func:`_readers` (protocols: seeds averaged per question), or None
    when the questions' answer texts vary (only BoolQ has one pair of answers)."""
    import numpy as np

    from w2slab.feedback.oversight import fixed_answer_prior

    out = {reader: fixed_answer_prior(questions, np.asarray(p).reshape(-1, len(questions)).mean(0))
           for reader, p in _readers(blind, expert, cells).items()}
    return None if any(v is None for v in out.values()) else out


def _accuracy(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _share(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def markdown(parts: dict, config, config_path: str, *, against=None) -> str:
    """The page; ``against``: (parts, config, path) of a variant on the same questions, compared cell by cell."""
    c = config
    lines = [f"# Oversight: measured numbers ({c.experiment})", "",
             f"Regenerate: `python benchmarks/bench_oversight.py --config {relative(config_path)}"
             + (f" --against {relative(against[2])}" if against else "") + "` (2 CPU cores; "
             "`--experts` / `--seeds` run a part, and every part's numbers — per-question probabilities, no text — are "
             "kept in benchmarks/measured/). Transcripts stay in benchmarks/out/oversight-results/oversight/ (never "
             "in git). Protocol and reading guide: [oversight.md](oversight.md).", ""]
    scoring = ("each answer's own text scored (no answer slots)" if c.judge_scoring == "answers" else
               "judges read both answer orders and average" if c.both_orders else "answers in one order")
    lines += [f"{c.n_questions} {c.task} questions (two answers each, the correct one at A or B by a hash); judges "
              f"{', '.join(c.judges)} (no passage); experts {', '.join(c.experts)} (with the passage); rounds: {c.rounds}, "
              f"{'sequential' if c.sequential else 'simultaneous'} debate; seeds "
              f"{', '.join(map(str, c.seeds))}; verdicts: {scoring}"
              + (f"; best-of-{c.best_of} arguments chosen by {'each judge' if c.selector == 'judge' else c.selector}"
                 if c.best_of > 1 else "") + ("; the judge asks the debaters a question between rounds"
                                               if c.interactive else "") + ".", ""]
    if not parts:
        return "\n".join(lines + ["No part has run yet."]) + "\n"
    m = merge(parts, config)
    done = {(e, s) for (_, e, _), (_, _, seeds) in m["protocols"].items() for s in seeds}
    missing = [(e, s) for e in c.experts for s in c.seeds if (e, s) not in done]
    if missing:
        lines += ["**Partial:** not run yet — " + ", ".join(f"{e} seed {s}" for e, s in missing)
                  + " (`--experts E --seeds S`).", ""]
    lines += ["## The references", "", "| model | alone, without the passage (judge) | with the passage (expert) "
              "| position flips (judge / expert) |", "|---|---|---|---|"]
    for model in sorted(set(m["blind"]) | set(m["experts"])):
        judge, expert = m["blind"].get(model), m["experts"].get(model)
        lines.append(f"| {model} | {'—' if judge is None else format(judge['accuracy'], '.3f')} | "
                     f"{'—' if expert is None else format(expert['accuracy'], '.3f')} | "
                     f"{_share(judge and judge['flip_rate'])} / {_share(expert and expert['flip_rate'])} |")
    lines += ["", "## Judge accuracy per protocol", "",
              "change: paired against the judge alone, 95% bootstrap over questions and seeds; gap recovered = "
              "(with − alone) / (expert − alone), *undefined* when the expert does not beat the judge alone beyond "
              "noise.", "", "| judge | expert | protocol | seeds | alone | with protocol | expert alone | change | "
              "gap recovered | ECE | flips | judge sides with consultant (right / wrong side) |", "|" + "---|" * 12]
    lines += _protocol_rows(m["protocols"])
    if m["vs_consultancy"]:
        calibrated = any(v["calibrated"] for v in m["vs_consultancy"].values())
        lines += ["", "## Debate against consultancy", "", "Debate's accuracy minus consultancy's for the same judge "
                  "and expert, paired over questions and seeds (95% bootstrap)"
                  + ("; batch-calibrated: both after batch calibration (see below)" if calibrated else "") + ".", "",
                  "| judge | expert | seeds | debate − consultancy |" + (" batch-calibrated |" if calibrated else ""),
                  "|" + "---|" * (5 if calibrated else 4)]
        for (judge, expert), v in m["vs_consultancy"].items():
            lines.append(f"| {judge} | {expert} | {','.join(map(str, v['seeds']))} | {interval_text(v['raw'])} |"
                         + (f" {interval_text(v['calibrated'])} |" if calibrated else ""))
    if against:
        lines += _against_section(m, merge(against[0], against[1]), against[1], against[2])
    lines += _reliability_section(m)
    lines += ["", "## Quotes and cost", "", "| transcripts | arguments | quotes per argument | verified (all / correct "
              "side / wrong side) | unparseable quote tags | prompt tokens | completion tokens |", "|" + "---|" * 7]
    for label, per_seed in sorted(m["quotes"].items()):
        arguments = sum(s["arguments"] for s in per_seed)
        quotes = sum(s["quotes"] for s in per_seed)
        mean = lambda k: (None if all(s[k] is None for s in per_seed)  # noqa: E731
                          else sum(s[k] for s in per_seed if s[k] is not None) / sum(s[k] is not None for s in per_seed))
        tokens = m["tokens"][label]
        lines.append(f"| {label} | {arguments} | {quotes / arguments:.2f} | {_share(mean('verified_share'))} / "
                     f"{_share(mean('verified_share_correct_side'))} / {_share(mean('verified_share_incorrect_side'))} "
                     f"| {sum(s['unparseable_quotes'] for s in per_seed)} | {tokens['prompt']:,} | "
                     f"{tokens['completion']:,} |")
    if m["prior"]:
        answer = next(iter(m["prior"].values()))["answer"]
        lines += ["", "## A constant preference or reading? (every question's answers are the same two texts)", "",
                  f"A reader that always prefers one answer scores that answer's base rate while reading nothing. "
                  f"AUC: how well P(\"{answer}\") ranks the questions where \"{answer}\" is correct (0.5: no "
                  "information, whatever the preference). Batch-calibrated: accuracy once the mean log-odds over the "
                  "questions is subtracted (Zhou et al. 2023).", "",
                  f"| reader | accuracy | \"{answer}\" correct | mean P(\"{answer}\") | AUC | batch-calibrated "
                  "accuracy |", "|---|---|---|---|---|---|"]
        accuracy = {f"{j} alone (no passage)": v["accuracy"] for j, v in m["blind"].items()}
        accuracy |= {f"{e} expert alone (with the passage)": v["accuracy"] for e, v in m["experts"].items()}
        accuracy |= {f"{j} judging {e}'s {p}": g["gap"]["transfer"] for (j, e, p), (_, g, _) in m["protocols"].items()}
        for reader, v in m["prior"].items():
            lines.append(f"| {reader} | {_accuracy(accuracy.get(reader))} | {v['base_rate']:.3f} | {v['mean_p']:.3f} | "
                         f"{'—' if v['auc'] is None else format(v['auc'], '.3f')} | {v['batch_calibrated']:.3f} |")
        if m["calibrated"]:
            lines += ["", "### Judge accuracy per protocol, batch-calibrated", "",
                      "The table above's measures with every reader batch-calibrated first (per seed for protocols): "
                      "a protocol that only moves the judge toward one answer text changes nothing here. The mean "
                      "log-odds is fixed on all questions, so the intervals leave out its own noise.", "",
                      "| judge | expert | protocol | seeds | alone | with protocol | expert alone | change | "
                      "gap recovered | ECE | flips | judge sides with consultant (right / wrong side) |", "|" + "---|" * 12]
            lines += _protocol_rows(m["calibrated"])
    else:
        lines += _overlap_section(m)
    lines += ["", "Wall time on this CPU per part: " + "; ".join(f"{k} {v:.0f} s" for k, v in m["seconds"].items())
              + "."]
    return "\n".join(lines) + "\n"


def _against_section(m: dict, other: dict, other_config, other_path: str) -> list[str]:
    """This config's accuracy minus ``other``'s (merge of another config's parts on the same questions) for every
    (judge, expert, protocol) both ran, paired over questions and the seeds both ran; batch-calibrated too when the
    task has one answer pair (as the per-protocol tables)."""
    import numpy as np

    from w2slab.feedback.oversight import batch_calibrated
    from w2slab.feedback.oversight_run import paired_change

    calibrate = bool(m["prior"])
    lines = ["", f"## Against {other_config.experiment} ({relative(other_path)})", "",
             f"This config's judge accuracy minus {other_config.experiment}'s, on the same questions, paired over "
             "questions and the seeds both ran (95% bootstrap)" + ("; batch-calibrated: both after batch calibration "
                                                                   "per seed" if calibrate else "") + ".", "",
             f"| judge | expert | protocol | seeds | {other_config.experiment} | this config | change |"
             + (" batch-calibrated change |" if calibrate else ""),
             "|" + "---|" * (8 if calibrate else 7)]
    for (judge, expert, protocol), mine in sorted(m["cells"].items()):
        theirs = other["cells"].get((judge, expert, protocol), {})
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            continue
        p_mine, p_theirs = (np.array([c[s]["p"] for s in seeds]) for c in (mine, theirs))
        calibrated = (paired_change(batch_calibrated(m["questions"], p_theirs), batch_calibrated(m["questions"], p_mine))
                      if calibrate else None)
        lines.append(f"| {judge} | {expert} | {protocol} | {','.join(map(str, seeds))} | "
                     f"{(p_theirs >= 0.5).mean():.3f} | {(p_mine >= 0.5).mean():.3f} | "
                     f"{interval_text(paired_change(p_theirs, p_mine))} |"
                     + (f" {interval_text(calibrated)} |" if calibrate else ""))
    return lines


def _reliability_section(m: dict) -> list[str]:
    """Confidence against accuracy per confidence bin: each judge alone, each expert alone, and each judge with each
    protocol (seeds pooled)."""
    from w2slab.feedback.oversight_run import CONFIDENCE_BINS

    readers = {f"{j} alone": v for j, v in sorted(m["blind"].items())}
    readers |= {f"{e} expert alone (with the passage)": v for e, v in sorted(m["experts"].items())}
    readers |= {f"{j} with {e}'s {p}": measures for (j, e, p), (measures, _, _) in m["protocols"].items()}
    bins = [f"{low:.1f}–{high:.1f}" for low, high in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:])]
    lines = ["", "## Calibration: confidence against accuracy", "",
             "Per reader, the accuracy of its verdicts whose confidence (max(P, 1 − P)) falls in each bin, with their "
             "number (seeds pooled). A calibrated reader's accuracy falls within its bin; ECE is in the table above.",
             "", "| reader | " + " | ".join(bins) + " |", "|" + "---|" * (len(bins) + 1)]
    for reader, measures in readers.items():
        cells = ["—" if b["n"] == 0 else f"{b['accuracy']:.2f} ({b['n']})" for b in measures["reliability"]]
        lines.append(f"| {reader} | " + " | ".join(cells) + " |")
    return lines


def _protocol_rows(cells: dict) -> list[str]:
    """One table row per (judge, expert, protocol) of merge's {cell: (measures, gap, seeds)}."""
    from w2slab.report.table import gap_text

    lines = []
    for (judge, expert, protocol), (measures, gap, seeds) in cells.items():
        g, persuasion = gap["gap"], measures.get("persuasion")
        sided = (f"{_share(persuasion['agree_when_correct'])} / {_share(persuasion['agree_when_incorrect'])}"
                 if persuasion else "—")
        lines.append(f"| {judge} | {expert} | {protocol} | {','.join(map(str, seeds))} | {g['floor']:.3f} | "
                     f"{g['transfer']:.3f} | {g['ceiling']:.3f} | {interval_text(gap['change'])} | "
                     f"{gap_text(g, 'undefined')} | "
                     f"{measures['ece']:.3f} | {_share(measures['flip_rate'])} | {sided} |")
    return lines


def _overlap_section(m: dict) -> list[str]:
    lines = ["", "## What the readers follow: the answer that echoes the passage", "",
              "CosmosQA's distractors often share more of their words with the passage than the correct answer does. "
              "Accuracy split by which of the two answers shares the larger share of its words with the passage "
              "(n questions; 95% bootstrap over questions; protocols pool seeds per question). A reader that follows "
              "word overlap is high in the first column and low in the second.", "",
              "| reader | correct answer echoes more | wrong answer echoes more | equal |", "|---|---|---|---|"]
    cell = lambda v: ("—" if v["accuracy"] is None else f"{v['accuracy']:.3f}"  # noqa: E731
                      + (f" [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" if v["ci"] else "") + f" (n={v['n']})")
    for reader, split in m["overlap"].items():
        lines.append(f"| {reader} | {cell(split['correct_more'])} | {cell(split['wrong_more'])} | "
                     f"{cell(split['equal'])} |")
    return lines


if __name__ == "__main__":
    main()
