"""ETHICS (Hendrycks et al.): justice, deontology, virtue, utilitarianism, commonsense. Train and test files
pooled (test_hard too); related scenarios share a group so minimal pairs never straddle a split."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import Item, Row, TaskSpec, balance, pair_items
from .readers import read_csv, require_keys

LICENCE = "MIT"
SPLITS = ("train", "test", "test_hard")


def _rows(data_dir: Path, subset: str, columns: tuple[str, ...], splits=SPLITS) -> list[Row]:
    return [r for split in splits for r in read_csv(data_dir / f"ethics/{subset}_{split}.csv", columns)]


def _label(row: Row) -> int:
    if row["label"] not in ("0", "1", 0, 1):
        raise DataError(f"{row.get('_src', 'row')}: label {row['label']!r} outside {{0, 1}}")
    return int(row["label"])


def _convert(rows: list[Row], fields: tuple[str, ...], text, group) -> list[Item]:
    items = []
    for row in rows:
        require_keys(row, fields, where=row.get("_src", "row"))
        items.append(Item(text(row), _label(row), group(row)))
    return balance(items, seed=0)


JUSTICE = TaskSpec(
    name="ethics_justice", description="ETHICS justice: is the claim of desert or impartiality reasonable?",
    licence=LICENCE, hub=("hendrycks/ethics", "justice", ("train", "test")),
    local_files=tuple(f"ethics/justice_{s}.csv" for s in SPLITS),
    read_local=lambda d: _rows(d, "justice", ("label", "scenario")),
    convert=lambda rows: _convert(rows, ("label", "scenario"), lambda r: r["scenario"].strip(),
                                  lambda r: "justice-" + r["scenario"].split(" because ")[0].strip()),
    template="{scenario}", conversion="label 1 = reasonable; grouped by the text before 'because'; "
                                      "majority class downsampled (seed 0)")

DEONTOLOGY = TaskSpec(
    name="ethics_deontology", frozen_features_learnable=True,
    description="ETHICS deontology: is the excuse for not doing the request reasonable?",
    licence=LICENCE, hub=("hendrycks/ethics", "deontology", ("train", "test")),
    local_files=tuple(f"ethics/deontology_{s}.csv" for s in SPLITS),
    read_local=lambda d: _rows(d, "deontology", ("label", "scenario", "excuse")),
    convert=lambda rows: _convert(rows, ("label", "scenario", "excuse"),
                                  lambda r: f"Request: {r['scenario'].strip()}\nExcuse: {r['excuse'].strip()}",
                                  lambda r: "deon-" + r["scenario"].strip()),
    template="Request: {scenario}\nExcuse: {excuse}",
    conversion="label 1 = reasonable excuse; grouped by request; majority class downsampled (seed 0)")

VIRTUE = TaskSpec(
    name="ethics_virtue", description="ETHICS virtue: does the trait fit the person in the scenario?",
    licence=LICENCE, hub=("hendrycks/ethics", "virtue", ("train", "test")),
    local_files=tuple(f"ethics/virtue_{s}.csv" for s in SPLITS),
    read_local=lambda d: _rows(d, "virtue", ("label", "scenario")),
    convert=lambda rows: _convert(rows, ("label", "scenario"),
                                  lambda r: r["scenario"].replace(" [SEP] ", "\nTrait: ").strip(),
                                  lambda r: "virtue-" + r["scenario"].split("[SEP]")[0].strip()),
    template="{scenario}\nTrait: {trait}",
    conversion="label 1 = the trait fits (1 in 5 candidates); grouped by scenario; majority class downsampled (seed 0)")


def _convert_util(rows: list[Row]) -> list[Item]:
    for row in rows:
        require_keys(row, ("more", "less"), where=row.get("_src", "row"))
    pairs = [("", r["more"].strip(), r["less"].strip(), f"util-{i}") for i, r in enumerate(rows)]
    return pair_items(pairs, template="{reply}")


UTILITARIANISM = TaskSpec(
    name="ethics_utilitarianism", frozen_features_learnable=True,
    description="ETHICS utilitarianism: is scenario A more pleasant than scenario B?",
    licence=LICENCE, hub=("hendrycks/ethics", "utilitarianism", ("train", "test")),
    local_files=tuple(f"ethics/util_{s}.csv" for s in SPLITS),
    read_local=lambda d: [r for s in SPLITS for r in read_csv(d / f"ethics/util_{s}.csv", header=False,
                                                                fieldnames=("more", "less"))],
    convert=_convert_util,
    hub_rows=lambda rows: [{"more": r["baseline"], "less": r["less_pleasant"], "_src": r["_src"]} for r in rows],
    template="pairwise: (scenario A, scenario B)",
    conversion="pairwise; the more pleasant scenario comes second in a seeded half of the rows (exact "
               "balance); label 1 = A is more pleasant; models see features(A) - features(B)")

COMMONSENSE = TaskSpec(
    name="ethics_commonsense", description="ETHICS commonsense morality (test files): is the action clearly wrong?",
    licence=LICENCE, hub=("hendrycks/ethics", "commonsense", ("test",)),
    local_files=("ethics/cm_test.csv", "ethics/cm_test_hard.csv"),
    read_local=lambda d: _rows(d, "cm", ("label", "input"), splits=("test", "test_hard")),
    convert=lambda rows: _convert(rows, ("label", "input"), lambda r: r["input"].strip(),
                                  lambda r: "cm-" + r["input"].strip()),
    template="{scenario}", conversion="label 1 = wrong; majority class downsampled (seed 0); no train file")
