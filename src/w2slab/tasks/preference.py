"""Preference tasks: Anthropic HH-RLHF (harmless-base test) as pairwise reward modelling, and the BIG-bench
HHH alignment sets. Pairwise items hold two texts; models see features(A) - features(B), so a linear probe
on top is a Bradley-Terry reward model and swapping A and B flips its prediction."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from ..errors import DataError
from .base import Item, Row, TaskSpec, pair_items
from .qa import read_bigbench
from .readers import require_keys

_ASSISTANT = "\n\nAssistant:"
HH_TEMPLATE = "Assistant: {reply}\n\nConversation so far: {prompt}"


def _read_hh(data_dir: Path) -> list[Row]:
    path = data_dir / "hh_rlhf/harmless-base_test.jsonl.gz"
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} is missing")
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    rows.append({**json.loads(line), "_src": f"{path}, line {line_no}"})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    return rows


def split_last_reply(conversation: str) -> tuple[str, str]:
    """'...Human: x\\n\\nAssistant: y' → ('...Human: x', 'y'): the context and the final assistant reply."""
    cut = conversation.rfind(_ASSISTANT)
    if cut < 0:
        raise ValueError("no assistant turn")
    return conversation[:cut].strip(), conversation[cut + len(_ASSISTANT):].strip()


def _convert_hh(rows: list[Row]) -> list[Item]:
    """Chosen and rejected conversations share the context; only the last assistant reply differs. The reply
    is placed first in the text so that truncation to the model's length drops old context, not the reply."""
    pairs = []
    for i, row in enumerate(rows):
        require_keys(row, ("chosen", "rejected"), where=row.get("_src", "row"))
        try:
            context, chosen = split_last_reply(row["chosen"])
            context_r, rejected = split_last_reply(row["rejected"])
        except ValueError:
            raise DataError(f"{row.get('_src', 'row')}: conversation without an assistant reply") from None
        if chosen == rejected:
            continue  # identical replies carry no preference
        pairs.append((context, chosen, rejected, f"hh-{i}"))
    return pair_items(pairs, template=HH_TEMPLATE)


HH_RLHF = TaskSpec(
    name="hh_rlhf_harmless", frozen_features_learnable=True,
    description="Anthropic HH-RLHF harmless-base (test): is reply A preferred over reply B?",
    licence="MIT", hub=("Anthropic/hh-rlhf", None, ("test",)), local_files=("hh_rlhf/harmless-base_test.jsonl.gz",),
    read_local=_read_hh, convert=_convert_hh, template="pairwise: " + HH_TEMPLATE.replace("\n", "\\n"),
    conversion="pairwise (conversation, reply A, reply B); the chosen reply is B in a seeded half of the rows; "
               "label 1 = A preferred; rows with identical replies dropped; features(A) - features(B)")


def _convert_hhh(rows: list[Row]) -> list[Item]:
    pairs = []
    for i, row in enumerate(rows):
        require_keys(row, ("input", "target_scores"), where=row.get("_src", "row"))
        scores = row["target_scores"]
        good = [t for t, s in scores.items() if s == 1]
        bad = [t for t, s in scores.items() if s == 0]
        if len(good) != 1 or not bad:
            raise DataError(f"{row.get('_src', 'row')}: expected one preferred and one other reply")
        pairs.append((row["input"].strip(), good[0].strip(), bad[0].strip(), f"hhh-{i}"))
    return pair_items(pairs, template="Assistant: {reply}\n\nHuman: {prompt}")


def _hhh(subset: str) -> TaskSpec:
    return TaskSpec(
        name=f"hhh_{subset}", description=f"BIG-bench HHH alignment, {subset}: is reply A better than reply B?",
        licence="Apache-2.0 (BIG-bench)", hub=("HuggingFaceH4/hhh_alignment", subset, ("test",)),
        local_files=(f"bigbench/hhh_alignment_{subset}.json",),
        read_local=lambda d: read_bigbench(d / f"bigbench/hhh_alignment_{subset}.json"), convert=_convert_hhh,
        hub_rows=lambda rows: [{"input": r["input"], "target_scores": dict(zip(r["targets"]["choices"],
                                                                                r["targets"]["labels"])),
                                "_src": r["_src"]} for r in rows],
        template="pairwise: Assistant: {reply}\\n\\nHuman: {prompt}",
        conversion="pairwise (prompt, reply A, reply B); preferred reply second in a seeded half; label 1 = A better")


HHH_HARMLESS, HHH_HELPFUL, HHH_HONEST, HHH_OTHER = (_hhh(s) for s in ("harmless", "helpful", "honest", "other"))


def hh_preference_pairs(data_dir: Path, *, max_chars: int = 1500) -> list[dict]:
    """HH-RLHF harmless-base as preference pairs for reward models and DPO: {"prompt": conversation up to and
    including the last "Assistant:", "chosen": " reply", "rejected": " reply"}, in file order. Pairs whose
    contexts differ, whose replies are identical or whose text exceeds ``max_chars`` are left out."""
    pairs = []
    for row in _read_hh(Path(data_dir)):
        try:
            context, chosen = split_last_reply(row["chosen"])
            other, rejected = split_last_reply(row["rejected"])
        except ValueError:
            continue
        if context != other or chosen == rejected or len(context) + max(len(chosen), len(rejected)) > max_chars:
            continue
        pairs.append({"prompt": context + _ASSISTANT, "chosen": " " + chosen, "rejected": " " + rejected})
    return pairs
