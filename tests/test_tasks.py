"""Built-in tasks load from the real mirror, balanced, grouped and deterministic; bad files fail clearly."""
import json

import numpy as np
import pytest

from w2slab.errors import DataError
from w2slab.runner.protocol import group_split
from w2slab.tasks import TASKS, items_to_task, load_task


@pytest.mark.parametrize("name", TASKS.names())
def test_builtin_task_loads_balanced_and_deterministic(name, data_dir):
    task = load_task(name, data_dir=data_dir)
    assert len(task) > 1000
    assert task.positive_rate == pytest.approx(0.5, abs=0.01)
    again = load_task(name, data_dir=data_dir)
    assert again.texts == task.texts and np.array_equal(again.labels, task.labels)


def test_sciq_items_of_one_question_share_a_split(data_dir):
    task = load_task("sciq", data_dir=data_dir, n_examples=600, seed=3)
    assert np.bincount(task.groups).max() == 2  # (question, correct) and (question, distractor)
    split = group_split(task.groups, test_fraction=0.2, val_fraction=0.1, seed=5)
    parts = [set(task.groups[idx].tolist()) for idx in (split.weak, split.transfer, split.val, split.test)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not parts[i] & parts[j]
    assert sum(split.sizes().values()) == len(task)


def test_subsample_is_seeded(data_dir):
    a = load_task("sst2", data_dir=data_dir, n_examples=300, seed=1)
    b = load_task("sst2", data_dir=data_dir, n_examples=300, seed=1)
    c = load_task("sst2", data_dir=data_dir, n_examples=300, seed=2)
    assert a.texts == b.texts and a.texts != c.texts
    assert 300 <= len(a) <= 301


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"sst2/stsa.binary.train' is missing"):
        load_task("sst2", data_dir=tmp_path)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "boolq").mkdir()
    good = {"question": "is it", "passage": "p", "answer": True, "title": "t"}
    (tmp_path / "boolq/dev.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"dev.jsonl, line 2: invalid JSON"):
        load_task("boolq", data_dir=tmp_path)


def test_missing_field_and_bad_label(tmp_path):
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq/dev.jsonl").write_text(json.dumps({"question": "q", "answer": True}) + "\n")
    with pytest.raises(DataError, match=r"line 1: missing field\(s\) passage"):
        load_task("boolq", data_dir=tmp_path)
    (tmp_path / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / f"sst2/stsa.binary.{split}").write_text("2 a sentence\n")
    with pytest.raises(DataError, match=r"line 1: expected '<0\|1> <text>'"):
        load_task("sst2", data_dir=tmp_path)


def test_one_class_task_is_rejected(tmp_path):
    (tmp_path / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / f"sst2/stsa.binary.{split}").write_text("1 good\n1 fine\n")
    with pytest.raises(DataError, match="all 6 examples have label 1; need both classes"):
        load_task("sst2", data_dir=tmp_path)


def test_non_utf8_file(tmp_path):
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq/dev.jsonl").write_bytes(b'{"question": "\xff"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_task("boolq", data_dir=tmp_path)


def test_items_to_task_rejects_empty():
    with pytest.raises(DataError, match="no examples"):
        items_to_task("x", [])
