"""Verified bug insertion, critiques, judges and the whole critiques run on real data and real models (small n)."""
import json

import numpy as np
import pytest

from w2slab.errors import ConfigError, DataError
from w2slab.feedback import critiques as C
from w2slab.feedback.bugs import KINDS, BugSetConfig, build_bug_set, changed_lines, code_from_reply, mutants
from w2slab.runner.cache import StageCache
from w2slab.sandbox import SandboxLimits, run_python
from w2slab.tasks.code import load_code_problems, parse_test_results, program_with_tests


@pytest.fixture(scope="module")
def bug_set(data_dir, tmp_path_factory):
    problems = load_code_problems("mbpp", data_dir=data_dir, limit=16) + \
        load_code_problems("humaneval", data_dir=data_dir, limit=4)
    cache = StageCache(tmp_path_factory.mktemp("stages"))
    records, report = build_bug_set(problems, config=BugSetConfig(per_kind=1), cache=cache)
    return problems, records, report, cache


def test_every_kept_mutant_fails_a_test_and_its_original_passes(bug_set):
    problems, records, report, _ = bug_set
    by_id = {p.problem_id: p for p in problems}
    assert report["kept_problems"] == 20 and sum(report["verified"].values()) >= 40
    assert len(report["verified"]) >= 6  # most mutation kinds occur on 20 problems
    for record in records:
        problem = by_id[record["problem_id"]]
        result = run_python(program_with_tests(problem, record["code"]))
        passed = parse_test_results(result.stdout, len(problem.tests))
        if record["buggy"]:
            assert passed is None or not all(passed), record["code"]
            assert record["changed_lines"] and record["kind"] in KINDS
        else:
            assert passed is not None and all(passed)


def test_the_bug_set_is_a_cached_stage(bug_set):
    problems, records, _, cache = bug_set
    before = len(cache.computed)
    again, _ = build_bug_set(problems, config=BugSetConfig(per_kind=1), cache=cache)
    assert again == records and len(cache.computed) == before and cache.hits >= 1


def test_changed_lines_mark_the_mutated_line():
    code = "def f(xs):\n    total = 0\n    for x in xs:\n        if x > 0:\n            total += x\n    return total\n"
    found = mutants(code, kinds=("comparison",), per_kind=1)
    assert len(found) == 1 and found[0].changed_lines == (4,) and ">=" in found[0].code.splitlines()[3]
    assert changed_lines("a = 1\nb = 2\nc = 3", "a = 1\nc = 3") == (1,)


def test_bad_problems_are_reported_and_excluded(tmp_path):
    rows = [
        {"problem_id": "ok", "description": "count up", "solution": "def f(n):\n    i = 0\n    while i < n:\n"
         "        i += 1\n    return i", "tests": ["assert f(3) == 3", "assert f(0) == 0"]},
        {"problem_id": "syntax", "description": "x", "solution": "def f(:\n  pass", "tests": ["assert True"]},
        {"problem_id": "untested", "description": "x", "solution": "def f():\n    return 1", "tests": []},
        {"problem_id": "wrong", "description": "x", "solution": "def f():\n    return 1", "tests": ["assert f() == 2"]},
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = BugSetConfig(kinds=("arithmetic",), per_kind=2, limits=SandboxLimits(cpu_s=1, wall_s=3))
    records, report = build_bug_set(load_code_problems(str(path)), config=config)
    assert {k: v["count"] for k, v in report["excluded"].items()} == {
        "solution does not parse": 1, "no tests": 1, "tests fail on the original": 1}
    assert {r["problem_id"] for r in records} == {"ok"}
    # `i += 1` -> `i -= 1` loops for ever: a timeout is a result (a kept bug), not a crash
    looping = [r for r in records if "i -= 1" in r["code"]]
    assert looping and looping[0]["status"] in ("timeout", "cpu_limit") and looping[0]["buggy"]


def test_bad_problem_files_fail_in_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no problems"):
        load_code_problems(str(empty))
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"problem_id": "a", "solution": "x = 1"}) + "\n")
    with pytest.raises(DataError, match="line 1: missing field"):
        load_code_problems(str(partial))
    with pytest.raises(ConfigError, match="unknown mutation kind"):
        BugSetConfig(kinds=("typo",))


def test_code_is_read_from_an_lm_reply():
    assert code_from_reply("Sure!\n```python\ndef f():\n  return 2\n```\nDone.") == "def f():\n    return 2"
    assert code_from_reply("I cannot do that.") is None


def test_critique_parsing_names_lines_and_no_bug():
    code = "def f(xs):\n    total = 0\n    for x in xs:\n        total -= x\n    return total"
    parsed = C.parse_critique("Line 4: `total -= x` subtracts instead of adding.", code)
    assert parsed.claims_bug and parsed.lines == (4,)
    assert C.parse_critique("The bug is in `total -= x`, it should add.", code).lines == (4,)
    assert not C.parse_critique("No bug.", code).claims_bug
    assert C.parse_critique("line 99 is wrong", code).lines == ()
    items = [{"code": code, "buggy": True, "changed_lines": [4]}, {"code": code, "buggy": False, "changed_lines": []}]
    quality = C.critique_quality(items, ["Line 4 is wrong", "Line 2: `total = 0` is wrong"])
    assert quality["localised"] == 1.0 and quality["hallucinated"] == 1.0


def test_the_judge_and_critic_never_see_the_label(bug_set):
    _, records, _, _ = bug_set
    item = C.balanced_items(records, n_problems=1)[0]
    flipped = {**item, "buggy": not item["buggy"], "kind": "constant", "changed_lines": [1, 2],
               "tests_failed": 3, "status": "timeout"}
    assert C.judge_messages(item) == C.judge_messages(flipped)
    assert C.judge_messages(item, "x") == C.judge_messages(flipped, "x")
    assert C.critic_messages(item) == C.critic_messages(flipped)


def test_balanced_items_pair_each_problem(bug_set):
    _, records, _, _ = bug_set
    items = C.balanced_items(records, n_problems=8, seed=3)
    assert len(items) == 16 and sum(i["buggy"] for i in items) == 8
    assert len({i["problem_id"] for i in items}) == 8
    assert C.balanced_items(records, n_problems=8, seed=3) == items  # same seed, same draw


def test_judge_with_and_without_critique_on_real_models(bug_set, cache_dir):
    from w2slab.lm import load_lm

    _, records, _, _ = bug_set
    items = C.balanced_items(records, n_problems=4, seed=1)
    y = np.array([int(i["buggy"]) for i in items])
    with load_lm("smollm2", cache=cache_dir) as lm:
        critiques = C.critique_items(lm, items, seeds=(0, 1), temperature=0.7, max_tokens=32)
        alone = C.judge_log_odds(lm, items)
        helped = C.judge_log_odds(lm, items, [C.target_critique(i) for i in items])
        again = C.judge_log_odds(lm, items)
    assert len(critiques) == 2 and all(len(c) == len(items) for c in critiques)
    assert all(isinstance(t, str) and t for c in critiques for t in c)
    np.testing.assert_allclose(alone, again)  # deterministic (and cached)
    assert not np.allclose(alone, helped)  # the critique reaches the judge
    summary = C.judge_summary(y, C.calibrate(alone), C.calibrate(helped)[None, :], {"tests": y.astype(float)},
                              groups=np.array([i["problem_id"] for i in items]))
    assert summary["gap_recovered"]["tests"]["floor"] == summary["alone"]["accuracy"]
    assert summary["gap_recovered"]["tests"]["ceiling"] == 1.0
    assert summary["uplift"]["n_groups"] == 4


def test_judge_summary_splits_the_uplift_into_catch_and_false_alarm_changes():
    # a critique that makes the judge call everything buggy: catches every bug, alarms on every correct program
    y = np.array([1, 0, 1, 0, 1, 0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    alone = np.array([0.9, 0.2, 0.2, 0.2, 0.2, 0.2])
    assisted = np.full((2, 6), 0.8)
    summary = C.judge_summary(y, alone, assisted, {"tests": y.astype(float)}, groups=groups)
    assert summary["catch_change"]["mean"] == pytest.approx(2 / 3) and summary["catch_change"]["n_groups"] == 3
    assert summary["false_alarm_change"]["mean"] == 1.0 and summary["false_alarm_change"]["ci"] == (1.0, 1.0)
    assert summary["uplift"]["mean"] == pytest.approx((2 / 3 - 1) / 2)
    assert summary["assisted"]["catch_rate"] == 1.0 and summary["alone"]["catch_rate"] == pytest.approx(1 / 3)


def test_mismatched_index_points_to_another_problem_and_is_seeded():
    groups = np.repeat([f"p{k}" for k in range(20)], 2)
    other = C.mismatched_index(groups, seed=3)
    assert (groups[other] != groups).all()
    np.testing.assert_array_equal(other, C.mismatched_index(groups, seed=3))
    assert not np.array_equal(other, C.mismatched_index(groups, seed=4))
    with pytest.raises(ConfigError, match="at least 2 problems"):
        C.mismatched_index(np.array(["p0", "p0"]))


def test_content_effect_is_matched_minus_mismatched_on_the_same_seeds():
    y = np.array([1, 0, 1, 0])
    groups = np.array(["a", "a", "b", "b"])
    alone = np.array([0.2, 0.8, 0.2, 0.8])  # all wrong
    assisted = np.array([[0.9, 0.1, 0.9, 0.1],  # seed 0: all right
                         [0.2, 0.8, 0.2, 0.8]])  # seed 1: all wrong
    mismatched = np.array([[0.9, 0.8, 0.2, 0.1]])  # seed 0, another problem's critique: half right
    summary = C.judge_summary(y, alone, assisted, {"tests": y.astype(float)}, groups=groups, mismatched=mismatched)
    assert summary["mismatched"]["accuracy"] == 0.5
    assert summary["placebo_uplift"]["mean"] == 0.5
    assert summary["content_effect"]["mean"] == 0.5  # seed 0 only: 1.0 - 0.5, not the 2-seed mean 0.5 - 0.5
    with pytest.raises(ConfigError, match="mismatched"):
        C.judge_summary(y, alone, assisted, {"tests": y.astype(float)}, mismatched=np.zeros((3, 4)))


def test_calibration_removes_a_constant_lean():
    odds = np.array([3.0, 3.5, 4.0, 4.5])
    assert (C.calibrate(odds, "none") >= 0.5).all()
    assert (C.calibrate(odds, "median") >= 0.5).sum() == 2
    with pytest.raises(ConfigError):
        C.calibrate(odds, "platt")
