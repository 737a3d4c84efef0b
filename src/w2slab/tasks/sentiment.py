"""Sentiment tasks: SST-2 (sentence and GLUE phrase level), TweetEval sentiment and offensive, Amazon reviews."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from .base import Item, Row, TaskSpec, balance
from .readers import read_text, read_label_text_lines, read_tsv, require_keys


def _binary_items(rows: list[Row], prefix: str) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        require_keys(row, ("text", "label"), where=row.get("_src", "row"))
        if row["label"] not in (0, 1):
            raise DataError(f"{row.get('_src', 'row')}: label {row['label']!r} outside {{0, 1}}")
        items.append(Item(text=str(row["text"]).strip(), label=int(row["label"]), group=f"{prefix}-{i}"))
    return balance(items, seed=0)


SST2 = TaskSpec(
    name="sst2", frozen_features_learnable=True,
    description="Stanford Sentiment Treebank, sentence level: is the movie-review sentence positive?",
    licence="unspecified (research use)",
    hub=("SetFit/sst2", None, ("train", "validation", "test")),
    local_files=("sst2/stsa.binary.train", "sst2/stsa.binary.dev", "sst2/stsa.binary.test"),
    read_local=lambda d: [r for s in ("train", "dev", "test") for r in read_label_text_lines(d / f"sst2/stsa.binary.{s}")],
    convert=lambda rows: _binary_items(rows, "sst2"),
    template="{sentence}",
    prompt=("Review: {text}\nIs the sentiment of this review positive or negative?\nAnswer:", ("negative", "positive")),
    conversion="all splits pooled; majority class downsampled (seed 0)",
)


def _read_sst2_glue(data_dir: Path) -> list[Row]:
    rows = []
    for name in ("alps_train.tsv", "alps_dev.tsv", "alps_test.tsv"):
        for row in read_tsv(data_dir / "sst2" / name, ("sentence", "label")):
            if row["label"] not in ("0", "1"):
                raise DataError(f"{row['_src']}: label {row['label']!r} outside {{0, 1}}")
            rows.append({"text": row["sentence"], "label": int(row["label"]), "_src": row["_src"]})
    return rows


SST2_GLUE = TaskSpec(
    name="sst2_glue", frozen_features_learnable=True,
    description="GLUE SST-2 (train phrases + validation sentences): is the phrase positive?",
    licence="unspecified (research use)",
    hub=("stanfordnlp/sst2", None, ("train", "validation")),
    local_files=("sst2/alps_train.tsv", "sst2/alps_dev.tsv", "sst2/alps_test.tsv"),
    read_local=_read_sst2_glue,
    convert=lambda rows: _binary_items(rows, "sst2g"),
    hub_rows=lambda rows: [{**r, "text": r["sentence"]} for r in rows],
    template="{sentence}",
    prompt=("Review: {text}\nIs the sentiment of this review positive or negative?\nAnswer:", ("negative", "positive")),
    conversion="GLUE train + validation pooled; majority class downsampled (seed 0)",
)


def read_tweeteval(data_dir: Path, subset: str = "sentiment", splits: tuple[str, ...] = ("val", "test"),
                   labels: tuple[str, ...] = ("0", "1", "2")) -> list[Row]:
    """Rows {text, label, _src} of TweetEval ``subset`` (``<subset>_<split>_text.txt`` / ``_labels.txt``), labels
    checked against ``labels``."""
    rows = []
    for split in splits:
        texts_path = data_dir / f"tweeteval/{subset}_{split}_text.txt"
        labels_path = data_dir / f"tweeteval/{subset}_{split}_labels.txt"
        texts = read_text(texts_path).splitlines()
        label_lines = read_text(labels_path).splitlines()
        if len(texts) != len(label_lines):
            raise DataError(f"{texts_path}: {len(texts)} lines but {labels_path.name} has {len(label_lines)}")
        for i, (text, label) in enumerate(zip(texts, label_lines), start=1):
            if label.strip() not in labels:
                raise DataError(f"{labels_path}, line {i}: label {label!r} outside {{{', '.join(labels)}}}")
            rows.append({"text": text, "label": int(label), "_src": f"{texts_path}, line {i}"})
    return rows


def _convert_tweeteval(rows: list[Row]) -> list[Item]:
    kept = [{**r, "label": {0: 0, 2: 1}[r["label"]]} for r in rows if r["label"] != 1]  # neutral dropped
    return _binary_items(kept, "tweet")


TWEETEVAL = TaskSpec(
    name="tweeteval_sentiment", frozen_features_learnable=True,
    description="TweetEval sentiment (validation + test): is the tweet positive (neutral dropped)?",
    licence="research use (Twitter terms; see cardiffnlp/tweeteval)",
    hub=("cardiffnlp/tweet_eval", "sentiment", ("validation", "test")),
    local_files=("tweeteval/sentiment_val_text.txt", "tweeteval/sentiment_test_text.txt"),
    read_local=read_tweeteval,
    convert=_convert_tweeteval,
    template="{tweet}",
    prompt=("Tweet: {text}\nIs the sentiment of this tweet positive or negative?\nAnswer:", ("negative", "positive")),
    conversion="0 negative → 0, 2 positive → 1, 1 neutral dropped; majority class downsampled (seed 0)",
)

_OFFENSIVE_SPLITS = ("train", "val", "test")
TWEETEVAL_OFFENSIVE = TaskSpec(
    name="tweeteval_offensive", frozen_features_learnable=True,
    description="TweetEval offensive (OffensEval 2019; train + validation + test): is the tweet offensive?",
    licence="research use (Twitter terms; see cardiffnlp/tweeteval)",
    hub=("cardiffnlp/tweet_eval", "offensive", ("train", "validation", "test")),
    local_files=tuple(f"tweeteval/offensive_{s}_{part}.txt" for s in _OFFENSIVE_SPLITS for part in ("text", "labels")),
    read_local=lambda d: read_tweeteval(d, "offensive", _OFFENSIVE_SPLITS, ("0", "1")),
    convert=lambda rows: _binary_items(rows, "offensive"),
    template="{text}",
    prompt=("Tweet: {text}\nIs this tweet offensive?\nAnswer:", ("no", "yes")),
    conversion="0 not offensive, 1 offensive; all splits pooled; majority class (not offensive) downsampled (seed 0)",
)

_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = re.compile(r"<(title|review_text|unique_id)>\s*(.*?)\s*</\1>", re.S)
AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")


def _read_amazon(data_dir: Path) -> list[Row]:
    rows = []
    for domain in AMAZON_DOMAINS:
        for polarity, label in (("positive", 1), ("negative", 0)):
            path = data_dir / f"amazon_multidomain/{domain}_{polarity}.review"
            blocks = _REVIEW.findall(read_text(path))
            if not blocks:
                raise DataError(f"{path}: no <review> blocks")
            for i, block in enumerate(blocks):
                fields = dict(_FIELD.findall(block))
                if "review_text" not in fields:
                    raise DataError(f"{path}, review {i + 1}: no <review_text>")
                rows.append({"title": fields.get("title", ""), "content": fields["review_text"], "label": label,
                             "id": f"{domain}:{fields.get('unique_id', i)}", "_src": f"{path}, review {i + 1}"})
    return rows


def _convert_amazon(rows: list[Row]) -> list[Item]:
    items = []
    for row in rows:
        require_keys(row, ("title", "content", "label"), where=row.get("_src", "row"))
        items.append(Item(f"Title: {row['title'].strip()}\nReview: {row['content'].strip()}", int(row["label"]),
                          f"amazon-{row.get('id', row['_src'])}"))
    return balance(items, seed=0)


AMAZON = TaskSpec(
    name="amazon_polarity", frozen_features_learnable=True,
    description="Amazon product reviews (Blitzer multi-domain set, 4 domains; stand-in for amazon_polarity): positive?",
    licence="research use (Blitzer et al. 2007)",
    hub=("fancyzhx/amazon_polarity", None, ("test",)),
    local_files=tuple(f"amazon_multidomain/{d}_{p}.review" for d in AMAZON_DOMAINS for p in ("positive", "negative")),
    read_local=_read_amazon,
    convert=_convert_amazon,
    template="Title: {title}\nReview: {content}",
    prompt=("Review: {text}\nIs the sentiment of this review positive or negative?\nAnswer:", ("negative", "positive")),
    conversion="positive files → 1, negative → 0 (already balanced, 1,000 each per domain)",
)
