"""Adversarial NLI (dev rounds 1-3): does the premise entail the hypothesis (vs neutral or contradiction)?"""
from __future__ import annotations

import hashlib

from ..errors import DataError
from .base import Item, Row, TaskSpec, balance
from .readers import read_csv, require_keys

_LABELS = {"e": 1, "n": 0, "c": 0}


def _convert_anli(rows: list[Row]) -> list[Item]:
    items = []
    for row in rows:
        require_keys(row, ("context", "statement", "gold_label"), where=row.get("_src", "row"))
        if row["gold_label"] not in _LABELS:
            raise DataError(f"{row.get('_src', 'row')}: gold_label {row['gold_label']!r} is not one of e, n, c")
        premise = row["context"].strip()
        items.append(Item(f"Premise: {premise}\nHypothesis: {row['statement'].strip()}", _LABELS[row["gold_label"]],
                          f"anli-{hashlib.sha1(premise.encode()).hexdigest()}"))
    return balance(items, seed=0)


ANLI = TaskSpec(
    name="anli", description="ANLI rounds 1-3 (dev): does the premise entail the hypothesis?",
    licence="CC BY-NC 4.0 (non-commercial)", hub=("facebook/anli", None, ("dev_r1", "dev_r2", "dev_r3")),
    local_files=tuple(f"anli/ANLI_analysis_r{r}_dev.csv" for r in (1, 2, 3)),
    read_local=lambda d: [row for r in (1, 2, 3)
                          for row in read_csv(d / f"anli/ANLI_analysis_r{r}_dev.csv", ("context", "statement", "gold_label"))],
    convert=_convert_anli,
    hub_rows=lambda rows: [{"context": r["premise"], "statement": r["hypothesis"],
                            "gold_label": "enc"[r["label"]], "_src": r["_src"]} for r in rows],
    template="Premise: {premise}\nHypothesis: {hypothesis}",
    prompt=("{text}\nDoes the premise imply the hypothesis? Answer yes or no.\nAnswer:", ("no", "yes")),
    conversion="entailment → 1, neutral and contradiction → 0; grouped by premise; majority class downsampled (seed 0)")
