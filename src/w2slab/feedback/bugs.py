"""Verified bug insertion: AST mutations and LM-written "tampering" of reference solutions, each kept only if
it fails at least one of the problem's tests while the original passes all of them (run in the sandbox).

Programs are normalised with ``ast.unparse`` *before* mutation, so the correct and the buggy program of a
problem are printed alike and differ only where the bug is (comments are lost). ``changed_lines`` (1-based, in
the buggy program) is the ground truth of where the bug is; a deleted branch marks the line where it was.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..checks import check_int_at_least
from ..errors import ConfigError
from ..io import stable_hash
from ..sandbox import SandboxLimits, run_python
from ..tasks.code import CodeProblem, parse_test_results, program_with_tests

log = logging.getLogger(__name__)

KINDS = ("comparison", "arithmetic", "off_by_one", "wrong_variable", "dropped_condition", "constant",
         "return_value")
LM_KIND = "lm_tamper"
DESCRIPTIONS = {
    "comparison": "a comparison operator is wrong", "arithmetic": "an arithmetic operator is wrong",
    "off_by_one": "a range bound or index is off by one", "wrong_variable": "the wrong variable is used",
    "dropped_condition": "a condition or branch is missing", "constant": "a constant is wrong",
    "return_value": "the returned value is wrong", LM_KIND: "a subtle bug was inserted here"}

_COMPARE_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                 ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_ARITH_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult, ast.FloorDiv: ast.Mod,
               ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}


def normalise(code: str) -> str:
    """``code`` as ``ast.unparse`` prints it (raises SyntaxError/ValueError when it does not parse)."""
    return ast.unparse(ast.parse(code))


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A candidate bug: ``code`` (normalised), ``kind``, ``changed_lines`` (1-based lines of ``code``)."""

    kind: str
    code: str
    changed_lines: tuple[int, ...]


class _Mutator(ast.NodeTransformer):
    """Counts the sites of each kind (``target`` None) or applies site number ``target[1]`` of kind ``target[0]``."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self.counts = dict.fromkeys(KINDS, 0)
        self.locals: list[str] = []
        self.done = False

    def _site(self, kind: str) -> bool:
        """Register one site of ``kind``; True if it is the one to mutate."""
        index = self.counts[kind]
        self.counts[kind] += 1
        return self.target == (kind, index)

    def visit_FunctionDef(self, node):
        outer = self.locals
        names = {a.arg for a in node.args.args + node.args.kwonlyargs}
        names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.locals = sorted(names)
        self.generic_visit(node)
        self.locals = outer
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            if type(op) in _COMPARE_SWAP and self._site("comparison"):
                node.ops[i] = _COMPARE_SWAP[type(op)]()
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        strings = all(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in (node.left, node.right))
        if type(node.op) in _ARITH_SWAP and not strings and self._site("arithmetic"):
            node.op = _ARITH_SWAP[type(node.op)]()
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        if type(node.op) in _ARITH_SWAP and self._site("arithmetic"):
            node.op = _ARITH_SWAP[type(node.op)]()
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "range" and node.args and len(node.args) <= 3:
            stop = 1 if len(node.args) >= 2 else 0
            if self._site("off_by_one"):
                node.args[stop] = _shift(node.args[stop])
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        index = node.slice
        if isinstance(index, ast.Constant) and type(index.value) is int and self._site("off_by_one"):
            node.slice = ast.Constant(index.value + 1 if index.value >= 0 else index.value - 1)
        elif isinstance(index, ast.Slice) and index.upper is not None and self._site("off_by_one"):
            index.upper = _shift(index.upper)
        return node

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.locals and len(self.locals) >= 2 \
                and self._site("wrong_variable"):
            others = [n for n in self.locals if n != node.id]
            return ast.copy_location(ast.Name(id=others[0], ctx=ast.Load()), node)
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        for i in range(len(node.values)):
            if self._site("dropped_condition"):
                rest = node.values[:i] + node.values[i + 1:]
                return rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest)
        return node

    def visit_If(self, node):
        self.generic_visit(node)
        if node.orelse and self._site("dropped_condition"):
            node.orelse = []
        return node

    def visit_Constant(self, node):
        value = node.value
        if type(value) in (int, float) and self._site("constant"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node

    def visit_Return(self, node):
        value = node.value
        if isinstance(value, ast.Constant) and type(value.value) is bool:
            if self._site("return_value"):
                return ast.copy_location(ast.Return(ast.Constant(not value.value)), node)
        elif isinstance(value, (ast.Compare, ast.BoolOp)) or (isinstance(value, ast.UnaryOp)
                                                              and isinstance(value.op, ast.Not)):
            if self._site("return_value"):
                return ast.copy_location(ast.Return(ast.UnaryOp(op=ast.Not(), operand=value)), node)
        self.generic_visit(node)
        return node


def _shift(expr: ast.expr) -> ast.expr:
    """``x - 1`` → ``x``, ``x + 1`` → ``x``, else ``x + 1``: a bound moved by one."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.right, ast.Constant) and expr.right.value == 1 \
            and isinstance(expr.op, (ast.Add, ast.Sub)):
        return expr.left
    return ast.BinOp(left=expr, op=ast.Add(), right=ast.Constant(1))


def changed_lines(original: str, mutated: str) -> tuple[int, ...]:
    """1-based lines of ``mutated`` that differ from ``original``; a pure deletion marks the line before it."""
    a, b = original.splitlines(), mutated.splitlines()
    lines: set[int] = set()
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            lines.update(range(j1 + 1, j2 + 1))
        elif tag == "delete":
            lines.add(max(1, j1))
    return tuple(sorted(lines))


def mutants(code: str, *, kinds: tuple[str, ...] = KINDS, per_kind: int = 2, seed: int = 0) -> list[Mutant]:
    """Up to ``per_kind`` distinct mutants of each kind of normalised ``code``, sites drawn with ``seed``."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ConfigError(f"unknown mutation kind(s) {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    original = normalise(code)
    tree = ast.parse(original)
    counter = _Mutator()
    counter.visit(copy.deepcopy(tree))
    out, seen = [], {original}
    for kind in kinds:
        rng = np.random.default_rng([seed, int(stable_hash([original, kind], length=8), 16)])
        for site in rng.permutation(counter.counts[kind]):
            if sum(m.kind == kind for m in out) >= per_kind:
                break
            mutated_tree = _Mutator((kind, int(site))).visit(copy.deepcopy(tree))
            try:
                mutated = ast.unparse(ast.fix_missing_locations(mutated_tree))
                ast.parse(mutated)
            except (SyntaxError, ValueError, AttributeError, TypeError):
                continue
            if mutated in seen:
                continue
            seen.add(mutated)
            out.append(Mutant(kind=kind, code=mutated, changed_lines=changed_lines(original, mutated)))
    return out


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.S)


def code_from_reply(text: str) -> str | None:
    """The first fenced code block of an LM reply (or the whole reply if it has none and parses), normalised;
    None when nothing parses."""
    match = _FENCE.search(text)
    candidate = match.group(1) if match else text
    try:
        return normalise(candidate)
    except (SyntaxError, ValueError):
        return None


def tamper_messages(problem: CodeProblem, code: str) -> tuple[dict, ...]:
    """Chat messages asking an LM to insert one subtle bug into ``code`` (the tampering prompt)."""
    return ({"role": "system", "content": "You help build a code-review benchmark by inserting bugs on purpose."},
            {"role": "user", "content": (
                f"Problem: {problem.description}\n\nCorrect solution:\n```python\n{code}\n```\n\n"
                "Insert exactly one subtle bug: change at most two lines so that some inputs give a wrong result, "
                "in a way a reviewer could easily miss. Do not add comments that point at the bug. Reply with the "
                "whole changed program in one ```python block and nothing else.")})


def _verify(problem: CodeProblem, code: str, limits: SandboxLimits) -> dict:
    result = run_python(program_with_tests(problem, code), limits=limits)
    passed = parse_test_results(result.stdout, len(problem.tests))
    return {"status": result.status, "passed": passed, "wall_ms": result.wall_ms,
            "all_pass": result.ok and passed is not None and all(passed)}


def verify_many(jobs: list[tuple[CodeProblem, str]], *, limits: SandboxLimits, workers: int | None = None) -> list[dict]:
    """Run each (problem, code) against the problem's tests in the sandbox, ``workers`` at a time.
    Each result: status (sandbox), passed (list of bool per test, None if the program died), wall_ms, all_pass."""
    workers = workers or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _verify(job[0], job[1], limits), jobs))


@dataclasses.dataclass(frozen=True)
class BugSetConfig:
    """kinds: AST mutation kinds; per_kind: mutants tried per kind and problem; seed: site draws; tamper_*: the
    LM-written bugs (None: none) — greedy, at most ``tamper_max_tokens``; max_changed_lines: a tampered program
    that changes more lines than this is dropped (a rewrite, not a bug); limits: the sandbox's."""

    kinds: tuple[str, ...] = KINDS
    per_kind: int = 1
    seed: int = 0
    tamper_max_tokens: int = 384
    max_changed_lines: int = 3
    limits: SandboxLimits = SandboxLimits(cpu_s=5, wall_s=10)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown mutation kind(s) {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
        for name in ("per_kind", "tamper_max_tokens", "max_changed_lines"):
            check_int_at_least(getattr(self, name), name, 0 if name == "per_kind" else 1)


def build_bug_set(problems: list[CodeProblem], *, config: BugSetConfig = BugSetConfig(), tamper_lm=None,
                  cache=None, workers: int | None = None) -> tuple[list[dict], dict]:
    """Verified bugs for ``problems``: (records, report).

    records: one dict per kept program — the original (``buggy`` False) and each verified mutant (``buggy``
    True) — with problem_id, description, code (normalised), kind ('original' or a mutation kind / 'lm_tamper'),
    changed_lines (1-based lines of ``code``; [] for originals), tests_failed, status.
    report: problems excluded and why (unparseable solution, no tests, tests failing on the original), and per
    kind the candidates tried and the mutants kept; for tampering, what became of the LM's replies.
    ``tamper_lm``: an LM from :func:`w2slab.lm.load_lm` that writes subtle bugs, or None.
    ``cache``: a runner StageCache; the whole set is one cached stage keyed by the problems' content, the config
    and the tamper model's identity."""
    from ..runner.cache import StageCache

    cache = cache if cache is not None else StageCache(None)
    params = {"problems": stable_hash([p.as_dict() for p in problems]), "config": dataclasses.asdict(config),
              "tamper": getattr(tamper_lm, "identity", None)}
    key = StageCache.key("bugs", 1, params)

    def compute() -> dict:
        records, report = _build(problems, config, tamper_lm, workers)
        return {"records": np.array([_dumps(r) for r in records] or [""], dtype=str),
                "report": np.array(_dumps(report))}

    arrays = cache.get_or_compute("bugs", key, compute, meta={"params": params})
    return [json.loads(r) for r in arrays["records"] if r], json.loads(str(arrays["report"]))


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def _build(problems, config, tamper_lm, workers) -> tuple[list[dict], dict]:
    excluded = {"solution does not parse": [], "no tests": [], "tests fail on the original": []}
    usable = []
    for problem in problems:
        if not problem.tests:
            excluded["no tests"].append(problem.problem_id)
            continue
        try:
            usable.append((problem, normalise(problem.solution)))
        except (SyntaxError, ValueError):
            excluded["solution does not parse"].append(problem.problem_id)
    checks = verify_many([(p, code) for p, code in usable], limits=config.limits, workers=workers)
    kept = []
    for (problem, code), check in zip(usable, checks):
        if check["all_pass"]:
            kept.append((problem, code))
        else:
            excluded["tests fail on the original"].append(problem.problem_id)
    candidates = [(problem, code, m) for problem, code in kept
                  for m in mutants(code, kinds=config.kinds, per_kind=config.per_kind, seed=config.seed)]
    tamper_report = {}
    if tamper_lm is not None:
        extra, tamper_report = _tamper(kept, tamper_lm, config)
        candidates += extra
    results = verify_many([(p, m.code) for p, _, m in candidates], limits=config.limits, workers=workers)
    records = [_record(p, code, "original", (), None) for p, code in kept]
    tried, verified = {}, {}
    for (problem, _, mutant), result in zip(candidates, results):
        tried[mutant.kind] = tried.get(mutant.kind, 0) + 1
        if result["all_pass"]:
            continue  # an equivalent mutant: not a bug the tests can see
        verified[mutant.kind] = verified.get(mutant.kind, 0) + 1
        records.append(_record(problem, mutant.code, mutant.kind, mutant.changed_lines, result))
    if tamper_lm is not None:
        tamper_report["verified"] = verified.get(LM_KIND, 0)
    report = {"problems": len(problems), "kept_problems": len(kept),
              "excluded": {k: {"count": len(v), "ids": v[:50]} for k, v in excluded.items()},
              "candidates": tried, "verified": verified, "tamper": tamper_report,
              "sandbox_ms_median": float(np.median([c["wall_ms"] for c in checks + results])) if checks else None}
    log.info("bug set: %d problems kept, %d verified mutants", len(kept), sum(verified.values()))
    return records, report


def _record(problem: CodeProblem, code: str, kind: str, lines: tuple[int, ...], result: dict | None) -> dict:
    failed = None if result is None or result["passed"] is None else int(sum(not p for p in result["passed"]))
    return {"problem_id": problem.problem_id, "description": problem.description, "code": code,
            "buggy": kind != "original", "kind": kind, "changed_lines": list(lines), "tests_failed": failed,
            "status": "ok" if result is None else result["status"]}


def _tamper(kept, lm, config) -> tuple[list, dict]:
    from ..lm import GenerationRequest

    requests = [GenerationRequest(messages=tamper_messages(p, code), max_tokens=config.tamper_max_tokens)
                for p, code in kept]
    replies = lm.generate(requests)
    counts = {"replies": len(replies), "unparseable": 0, "unchanged": 0, "too_many_changes": 0}
    out = []
    for (problem, code), samples in zip(kept, replies):
        mutated = code_from_reply(samples[0].text)
        if mutated is None:
            counts["unparseable"] += 1
            continue
        lines = changed_lines(code, mutated)
        if not lines or mutated == code:
            counts["unchanged"] += 1
        elif len(lines) > config.max_changed_lines:
            counts["too_many_changes"] += 1
        else:
            out.append((problem, code, Mutant(kind=LM_KIND, code=mutated, changed_lines=lines)))
    return out, counts
