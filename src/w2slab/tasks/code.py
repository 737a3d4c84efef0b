"""Programming problems with tests (MBPP, HumanEval, or a JSONL file of your own), and the script that runs a
program against a problem's tests in the sandbox.

A user file has one JSON object per line: ``{"problem_id": str, "description": str, "solution": str,
"tests": [str, ...], "setup": str (optional)}``; each test is Python statements that raise when the program is
wrong (usually one ``assert``).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

from ..errors import DataError
from ..paths import data_dir as resolve_data_dir

SOURCES = ("mbpp", "humaneval")
_MARK = "__W2SLAB_TESTS__"


@dataclasses.dataclass(frozen=True)
class CodeProblem:
    """One problem: ``solution`` is the reference program (source text), ``tests`` its test snippets."""

    problem_id: str
    description: str
    solution: str
    tests: tuple[str, ...]
    setup: str = ""

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tests": list(self.tests)}


def load_code_problems(source: str, *, data_dir: str | Path | None = None, limit: int | None = None) -> list[CodeProblem]:
    """Problems from ``source``: 'mbpp' (974), 'humaneval' (164) from the data folder, or a path to a JSONL file."""
    if source in SOURCES:
        root = resolve_data_dir(data_dir)
        if root is None:
            raise DataError(f"{source} is read from the local data folder: set W2SLAB_DATA_DIR or --data-dir")
        problems = _mbpp(root) if source == "mbpp" else _humaneval(root)
    else:
        problems = _user_file(Path(source))
    return problems[:limit] if limit is not None else problems


def _lines(path: Path, opener=open) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise DataError(f"problem file {str(path)!r} does not exist")
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise DataError(f"{path}, line {number}: expected a JSON object")
                    out.append((number, obj))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if not out:
        raise DataError(f"{path}: no problems in the file")
    return out


def _mbpp(root: Path) -> list[CodeProblem]:
    return [CodeProblem(problem_id=f"mbpp/{row['task_id']}", description=row["text"].strip(),
                        solution=row["code"].replace("\r\n", "\n"), tests=tuple(row["test_list"]),
                        setup=row.get("test_setup_code", "").replace("\r\n", "\n"))
            for _, row in _lines(root / "mbpp/mbpp.jsonl")]


def _humaneval(root: Path) -> list[CodeProblem]:
    problems = []
    for _, row in _lines(root / "humaneval/HumanEval.jsonl.gz", gzip.open):
        entry = row["entry_point"]
        problems.append(CodeProblem(
            problem_id=f"humaneval/{row['task_id'].split('/')[-1]}",
            description=f"Implement `{entry}` as its docstring says.",
            solution=row["prompt"] + row["canonical_solution"], tests=(f"{row['test']}\ncheck({entry})",)))
    return problems


def _user_file(path: Path) -> list[CodeProblem]:
    problems = []
    for number, row in _lines(path):
        missing = {"problem_id", "description", "solution", "tests"} - set(row)
        if missing:
            raise DataError(f"{path}, line {number}: missing field(s) {', '.join(sorted(missing))}")
        tests = row["tests"]
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise DataError(f"{path}, line {number}: tests must be a list of strings")
        problems.append(CodeProblem(problem_id=str(row["problem_id"]), description=str(row["description"]),
                                    solution=str(row["solution"]), tests=tuple(tests), setup=str(row.get("setup", ""))))
    return problems


def program_with_tests(problem: CodeProblem, code: str) -> str:
    """A program that runs ``code`` then each of the problem's tests (each isolated by try/except) and prints
    one marker line with a JSON list of booleans, one per test. If ``code`` itself raises, no marker is printed."""
    runner = ("import json as __w2s_json\n__w2s_results = []\n"
              f"for __w2s_test in {list(problem.tests)!r}:\n"
              "    try:\n        exec(__w2s_test, globals())\n        __w2s_results.append(True)\n"
              "    except BaseException:\n        __w2s_results.append(False)\n"
              f"print('\\n{_MARK}' + __w2s_json.dumps(__w2s_results), flush=True)\n")
    return f"{problem.setup}\n{code}\n\n{runner}"


def parse_test_results(stdout: str, n_tests: int) -> list[bool] | None:
    """The booleans ``program_with_tests`` printed, or None when the program died before printing them."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                results = json.loads(line[len(_MARK):])
            except json.JSONDecodeError:
                return None
            return results if isinstance(results, list) and len(results) == n_tests else None
    return None

