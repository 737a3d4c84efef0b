"""Built-in tasks load from the real mirror, balanced, grouped and deterministic; bad files fail clearly."""
import json

import numpy as np
import pytest

from w2slab.errors import DataError
from w2slab.runner.protocol import group_split
from w2slab.tasks import TASKS, get_spec, items_to_task, load_task, read_rows

BUILTIN = TASKS.names()


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_task_loads_balanced_grouped_deterministic(name, data_dir):
    task = load_task(name, data_dir=data_dir)  # converted once, then served from the task cache
    assert len(task) >= 40 and len(task.texts) == len(task.labels) == len(task.groups)
    assert set(np.unique(task.labels)) == {0, 1}
    assert task.positive_rate == pytest.approx(0.5, abs=0.02 if len(task) < 100 else 0.01)
    assert all(isinstance(t, str) and t.strip() for t in task.texts)
    # the conversion itself (no cache) gives exactly the same items
    spec = get_spec(name)
    again = items_to_task(name, spec.convert(read_rows(spec, data_dir)))
    assert again.texts == task.texts and again.texts_b == task.texts_b
    assert np.array_equal(again.labels, task.labels) and np.array_equal(again.groups, task.groups)
    # a split never separates a group
    split = group_split(task.groups, test_fraction=0.2, val_fraction=0.1, seed=1)
    parts = [set(task.groups[idx].tolist()) for idx in (split.weak, split.transfer, split.val, split.test)]
    assert sum(len(p) for p in parts) == len(set(task.groups.tolist()))


def test_multiple_choice_groups_hold_one_correct_and_one_wrong(data_dir):
    task = load_task("sciq", data_dir=data_dir, n_examples=600, seed=3)
    for g in np.unique(task.groups)[:50]:
        assert sorted(task.labels[task.groups == g].tolist()) == [0, 1]


def test_pairwise_tasks_carry_both_texts(data_dir):
    task = load_task("hh_rlhf_harmless", data_dir=data_dir)
    assert task.texts_b is not None and len(task.texts_b) == len(task)
    assert all(a != b for a, b in zip(task.texts[:100], task.texts_b[:100]))
    assert all(t.startswith("Assistant: ") for t in task.texts[:20])  # the reply first: truncation drops context


def test_chess_items_are_legal_moves(data_dir):
    import chess

    for name in ("chess_puzzles", "chess_mate_in_one"):
        task = load_task(name, data_dir=data_dir, n_examples=200, seed=0)
        for text, label in zip(task.texts, task.labels):
            fen = text.split("(FEN): ")[1].split("\n")[0]
            san = text.rsplit("Candidate move: ", 1)[1]
            assert not san.endswith(("+", "#"))  # check / mate marks would reveal the answer
            board = chess.Board(fen)
            move = board.parse_san(san)  # raises if the move is not legal
            if name == "chess_mate_in_one":
                board.push(move)
                assert board.is_checkmate() == bool(label)


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


def test_one_class_task_is_rejected_and_not_cached(tmp_path, cache_dir):
    (tmp_path / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / f"sst2/stsa.binary.{split}").write_text("1 good\n1 fine\n")
    before = set((cache_dir / "tasks").glob("*")) if (cache_dir / "tasks").is_dir() else set()
    with pytest.raises(DataError, match="all 6 examples have label 1; need both classes"):
        load_task("sst2", data_dir=tmp_path)
    after = set((cache_dir / "tasks").glob("*")) if (cache_dir / "tasks").is_dir() else set()
    assert after == before


def test_non_utf8_file(tmp_path):
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq/dev.jsonl").write_bytes(b'{"question": "\xff"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_task("boolq", data_dir=tmp_path)


def test_items_to_task_rejects_empty():
    with pytest.raises(DataError, match="no examples"):
        items_to_task("x", [])
