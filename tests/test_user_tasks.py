"""User CSV / JSONL tasks round-trip, and every bad input is rejected with file, row and problem."""
import json

import numpy as np
import pytest

from w2slab.errors import ConfigError, DataError
from w2slab.tasks import load_task
from w2slab.tasks.user import FileTask, add_user_task, tasks_file, user_tasks


def _csv(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_classification_round_trip(tmp_path):
    path = _csv(tmp_path / "reviews.csv", "id,review,verdict\n" + "".join(
        f"{i},review number {i} text,{'good' if i % 3 else 'bad'}\n" for i in range(30)))
    n = add_user_task(FileTask(name="my_reviews", path=path, text="review", label="verdict", id="id",
                               positive=("good",), negative=("bad",)))
    assert n == 20  # 10 bad, 20 good -> balanced to 10 + 10
    assert "my_reviews" in user_tasks()
    task = load_task("my_reviews")
    assert len(task) == 20 and task.positive_rate == 0.5
    assert all(t.startswith("review number") for t in task.texts)


def test_jsonl_multiple_choice_round_trip(tmp_path):
    rows = [{"q": f"What is {i}+1?", "options": [str(i + 1), str(i + 2), str(i)], "gold": str(i + 1)} for i in range(12)]
    path = tmp_path / "quiz.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    add_user_task(FileTask(name="my_quiz", path=str(path), question="q", candidates="options", answer="gold"))
    task = load_task("my_quiz")
    assert len(task) == 24 and task.positive_rate == 0.5
    assert len(np.unique(task.groups)) == 12
    assert "What is 0+1?\nAnswer: 1" in task.texts


BAD = [
    ("missing.csv", "text,label\nhello,1\n", dict(text="text", label="verdict"), r"header lacks column\(s\) verdict"),
    ("empty.csv", "", dict(text="text", label="label"), "file is empty"),
    ("badlabel.csv", "text,label\na,1\nb,maybe\n", dict(text="text", label="label"),
     r"line 3: label 'maybe' is not in the declared values"),
    ("ragged.csv", "text,label\na,1\nb,0,extra\n", dict(text="text", label="label"), r"line 3: 3 fields, expected 2"),
    ("dupes.csv", "id,text,label\n1,a,1\n2,b,0\n1,c,0\n", dict(text="text", label="label", id="id"),
     r"line 4: duplicate id '1'"),
    ("nocorrect.jsonl", json.dumps({"q": "x?", "c": ["a", "b"], "a": "z"}) + "\n",
     dict(question="q", candidates="c", answer="a"), r"line 1: answer 'z' matches no candidate"),
    ("missingfield.jsonl", json.dumps({"text": "x"}) + "\n", dict(text="text", label="label"),
     r"line 1: missing field\(s\) label"),
]


@pytest.mark.parametrize("filename,content,columns,message", BAD)
def test_bad_user_files_are_rejected_and_not_declared(tmp_path, filename, content, columns, message):
    path = _csv(tmp_path / filename, content)
    before = tasks_file().read_text() if tasks_file().is_file() else None
    with pytest.raises(DataError, match=message) as err:
        add_user_task(FileTask(name="bad_task", path=path, **columns))
    assert filename in str(err.value)
    after = tasks_file().read_text() if tasks_file().is_file() else None
    assert after == before


def test_non_utf8_user_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.csv, line 2: not UTF-8"):
        add_user_task(FileTask(name="bad_task", path=str(path), text="text", label="label"))


def test_declaration_errors():
    with pytest.raises(ConfigError, match="either text \\+ label columns or question"):
        FileTask(name="x", path="x.csv")
    with pytest.raises(ConfigError, match="must end in .csv or .jsonl"):
        FileTask(name="x", path="x.txt", text="t", label="l")
    with pytest.raises(ConfigError, match="taken by a built-in task"):
        add_user_task(FileTask(name="sst2", path="x.csv", text="t", label="l"))
