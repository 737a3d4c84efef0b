"""``run_critiques``: the whole critiques experiment from one config — verified bugs, critiques by each critic and
seed, each judge with and without each critic's critique, the strong references, optional critic training —
stored as judgement rows and gap-recovered summaries in the results store, plus the items file the human-judging
page reads.

Every expensive step is cached: the bug set is a StageCache stage, every critique and judge score sits in the
generation cache, a trained critic is a policy stage. Rerunning with another judge or one more seed computes only
what is new.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..checks import check_int_at_least, check_safe_name, freeze_lists
from ..errors import ConfigError
from ..io import atomic_path, config_from_toml, stable_hash, write_json
from . import critiques as C
from .bugs import KINDS, BugSetConfig, build_bug_set

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CritiquesConfig:
    """One critiques experiment.

    sources: 'mbpp', 'humaneval' or JSONL paths; limit: the first ``limit`` problems of each (None = all); n_problems: problems in the judged set (each gives one correct
    and one buggy program); kinds / per_kind: AST mutations tried; tamper_model / tamper_problems: LM-written
    bugs on that many problems ('' = none); critics / judges: models (zoo names, .gguf or served names);
    seeds: one critique per item and seed at ``temperature``, at most ``max_tokens``; item_seed: which problems
    and which buggy variant; calibration: 'median' or 'none' (see critiques.calibrate); backend / base_url: as
    in ``load_lm``; train_critic: a critic to LoRA-train on problems outside the judged set ('' = none), with
    train_problems training problems, train_epochs epochs, and eval_problems judged problems for the
    before/after localisation; mismatched_seeds: for the first that many critique seeds, every judge also sees
    each program with the same critic's critique of another problem's program — the content control (0 = none)."""

    experiment: str = "critiques"
    sources: tuple[str, ...] = ("mbpp", "humaneval")
    limit: int | None = None
    n_problems: int = 150
    kinds: tuple[str, ...] = KINDS
    per_kind: int = 1
    tamper_model: str = ""
    tamper_problems: int = 0
    critics: tuple[str, ...] = ("smollm2", "qwen-coder-0.5b")
    judges: tuple[str, ...] = ("smollm2", "gemma3")
    seeds: tuple[int, ...] = (0, 1, 2)
    item_seed: int = 0
    temperature: float = 0.7
    max_tokens: int = 96
    calibration: str = "median"
    backend: str = "llamacpp"
    base_url: str = ""
    train_critic: str = ""
    train_problems: int = 150
    train_epochs: float = 2.0
    eval_problems: int = 50
    mismatched_seeds: int = 1

    def __post_init__(self) -> None:
        check_safe_name(self.experiment, "experiment")
        freeze_lists(self, ("sources", "kinds", "critics", "judges", "seeds"))
        if self.limit is not None:
            check_int_at_least(self.limit, "limit", 1)
        for name in ("n_problems", "train_problems", "eval_problems", "max_tokens"):
            check_int_at_least(getattr(self, name), name, 1)
        check_int_at_least(self.tamper_problems, "tamper_problems", 0)
        check_int_at_least(self.mismatched_seeds, "mismatched_seeds", 0)
        if self.mismatched_seeds > len(self.seeds):
            raise ConfigError(f"mismatched_seeds ({self.mismatched_seeds}) cannot exceed the {len(self.seeds)} seeds")
        if self.calibration not in ("median", "none"):
            raise ConfigError(f"calibration must be 'median' or 'none', got {self.calibration!r}")
        if not self.train_epochs > 0:
            raise ConfigError(f"train_epochs must be > 0, got {self.train_epochs!r}")
        BugSetConfig(kinds=self.kinds, per_kind=self.per_kind)  # validates kinds

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "CritiquesConfig":
        """Read a TOML file of these fields (unknown keys refused, named); ``overrides`` that are not None win."""
        return config_from_toml(cls, path, **overrides)


def run_critiques(config: CritiquesConfig, *, results_dir: str | Path | None = None, data_dir=None,
                  cache_dir=None, progress: bool = False) -> dict:
    """Run ``config``; store its rows; write ``<results>/critiques/<experiment>/{items.jsonl, result.json}``.
    Returns the result dict (bug report, critique quality per critic, judge summaries, critic training, costs)."""
    from ..lm import load_lm
    from ..paths import cache_dir as resolve_cache
    from ..paths import results_dir as resolve_results
    from ..runner.cache import StageCache
    from ..runner.store import ResultsStore
    from ..tasks.code import load_code_problems

    results = resolve_results(results_dir)
    cache_root = resolve_cache(cache_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    problems = [p for source in config.sources for p in load_code_problems(source, data_dir=data_dir, limit=config.limit)]
    bug_config = BugSetConfig(kinds=config.kinds, per_kind=config.per_kind, seed=config.item_seed)
    tamper_lm = load_lm(config.tamper_model, **_lm_options(config, progress)) if config.tamper_model else None
    stage_cache = StageCache(cache_root / "stages")
    tampered = problems[: config.tamper_problems] if tamper_lm else []
    records, report = build_bug_set(problems, config=bug_config, cache=stage_cache)
    if tampered:
        extra, tamper_report = build_bug_set(tampered, config=dataclasses.replace(bug_config, kinds=(), per_kind=0),
                                             tamper_lm=tamper_lm, cache=stage_cache)
        records += [r for r in extra if r["buggy"]]
        report["tamper"] = tamper_report["tamper"]
        report["verified"]["lm_tamper"] = tamper_report["verified"].get("lm_tamper", 0)
        report["candidates"]["lm_tamper"] = tamper_report["candidates"].get("lm_tamper", 0)
        tamper_lm.close()
    timings["bugs_s"] = time.perf_counter() - clock

    items = C.balanced_items(records, n_problems=config.n_problems, seed=config.item_seed)
    if not items:
        raise ConfigError("no problem has both a passing original and a verified bug: nothing to judge")
    y = np.array([int(i["buggy"]) for i in items])
    groups = np.array([i["problem_id"] for i in items])
    lms: dict[str, object] = {}

    def lm_for(name: str):
        if name not in lms:
            lms[name] = load_lm(name, **_lm_options(config, progress))
        return lms[name]

    critiques: dict[str, list[list[str]]] = {}
    quality: dict[str, dict] = {}
    costs: dict[str, dict] = {}

    def lm_calls() -> np.ndarray:
        """[computed, read back from the generation cache], summed over the LMs loaded so far."""
        return np.array([[getattr(lm, "backend_calls", 0), getattr(lm, "hits", 0)] for lm in lms.values()]
                        ).reshape(-1, 2).sum(0)

    def cost(start: float, calls_before: np.ndarray, **count) -> dict:
        computed, read_back = (int(n) for n in lm_calls() - calls_before)
        return {"s": time.perf_counter() - start, **count, "computed": computed, "read_back": read_back}

    try:
        for critic in config.critics:
            start, calls = time.perf_counter(), lm_calls()
            critiques[critic] = C.critique_items(lm_for(critic), items, seeds=config.seeds,
                                                 temperature=config.temperature, max_tokens=config.max_tokens)
            per_seed = [C.critique_quality(items, texts) for texts in critiques[critic]]
            quality[critic] = {k: float(np.mean([q[k] for q in per_seed])) for k in
                               ("localised", "claims_on_buggy", "hallucinated")}
            quality[critic]["per_seed"] = [{k: q[k] for k in ("localised", "claims_on_buggy", "hallucinated")}
                                           for q in per_seed]
            costs[f"critic:{critic}"] = cost(start, calls, critiques=len(items) * len(config.seeds))
        judgement_rows, summaries, judge_results = [], [], {}
        created = datetime.now(timezone.utc).isoformat()
        # (condition, critic, seed index): each critique as written, then the content control's swapped critiques
        conditions = [("critique", critic, k) for critic in config.critics for k in range(len(config.seeds))] + \
                     [("mismatched", critic, k) for critic in config.critics for k in range(config.mismatched_seeds)]
        other = C.mismatched_index(groups, config.item_seed) if config.mismatched_seeds else None

        def rows_shown(condition: str, critic: str) -> list[int]:
            """Rows of ``odds_all`` (below) that show ``critic``'s critiques under ``condition``, one per seed."""
            return [1 + j for j, (c, name, _) in enumerate(conditions) if c == condition and name == critic]

        for judge in config.judges:
            start, calls = time.perf_counter(), lm_calls()
            judge_lm = lm_for(judge)
            # item-major order: an item's prompts (alone, then each critique) share their prefix, which
            # llama.cpp keeps in its KV cache, so each later prompt costs only its own critique's tokens
            shown = [None] + conditions
            texts = [None if cond is None else critiques[cond[1]][cond[2]][i if cond[0] == "critique" else other[i]]
                     for i in range(len(items)) for cond in shown]
            odds_all = C.judge_log_odds(judge_lm, [item for item in items for _ in shown], texts)
            odds_all = odds_all.reshape(len(items), len(shown)).T  # (1 + conditions, n)
            alone_odds = odds_all[0]
            alone = C.calibrate(alone_odds, config.calibration)
            judgement_rows += _rows(config, created, items, judge, "alone", "", [0], alone[None, :], alone_odds[None, :])
            judge_results[judge] = {"alone": C.decision_metrics(y, alone),
                                    "alone_raw": C.decision_metrics(y, C.calibrate(alone_odds, "none")), "critics": {}}
            for critic in config.critics:
                odds = odds_all[rows_shown("critique", critic)]  # (n_seeds, n)
                swapped = odds_all[rows_shown("mismatched", critic)]  # (mismatched_seeds, n)
                assisted = C.calibrate(odds, config.calibration)
                judgement_rows += _rows(config, created, items, judge, "critique", critic, list(config.seeds),
                                        assisted, odds)
                mismatched = C.calibrate(swapped, config.calibration) if len(swapped) else None
                if mismatched is not None:
                    judgement_rows += _rows(config, created, items, judge, "mismatched", critic,
                                            list(config.seeds[: config.mismatched_seeds]), mismatched, swapped)
                critic_alone = C.calibrate(C.judge_log_odds(lm_for(critic), items), config.calibration)
                summary = C.judge_summary(y, alone, assisted, {"tests": y.astype(float), "critic_alone": critic_alone},
                                          groups=groups, mismatched=mismatched, seed=config.item_seed)
                summary["critic_alone"] = C.decision_metrics(y, critic_alone)
                summary["assisted_raw"] = C.decision_metrics(y, C.calibrate(odds, "none").mean(0))
                judge_results[judge]["critics"][critic] = summary
                summaries += _summaries(config, created, judge, critic, summary)
            costs[f"judge:{judge}"] = cost(start, calls, judgements=len(texts))
    finally:
        for lm in lms.values():
            lm.close()
    training = _train_and_compare(config, records, items, cache_root, progress) if config.train_critic else None

    out_dir = results / "critiques" / config.experiment
    _write_items(out_dir / "items.jsonl", items, {c: t[0] for c, t in critiques.items()})
    result = {"config": dataclasses.asdict(config), "bugs": report, "n_items": len(items),
              "n_problems": len(set(groups)), "quality": quality, "judges": judge_results, "training": training,
              "costs": costs, "timings": timings, "created_at": created}
    write_json(out_dir / "result.json", result)
    ResultsStore(results / "results.sqlite").write([], summaries, judgements=judgement_rows)
    return result


def _lm_options(config: CritiquesConfig, progress: bool) -> dict:
    options = {"backend": config.backend, "progress": progress}
    if config.base_url:
        options["base_url"] = config.base_url
    return options


def _rows(config, created, items, judge, condition, critic, seeds, p_buggy, log_odds) -> list[dict]:
    """One judgement row per (seed, item); p_buggy and log_odds are (n_seeds, n)."""
    rows = []
    for s, seed in enumerate(seeds):
        for i, item in enumerate(items):
            rows.append({
                "judgement_key": stable_hash([config.experiment, item["item_id"], judge, condition, critic, seed,
                                              config.calibration]),
                "experiment": config.experiment, "created_at": created, "item_id": item["item_id"],
                "problem_id": item["problem_id"], "judge": judge, "judge_kind": "model", "condition": condition,
                "critic": critic, "seed": int(seed), "buggy": int(item["buggy"]), "p_buggy": float(p_buggy[s, i]),
                "decision": int(p_buggy[s, i] >= 0.5), "seconds": None,
                "meta": {"log_odds": float(log_odds[s, i]), "calibration": config.calibration, "kind": item["kind"]}})
    return rows


def _summaries(config, created, judge, critic, summary) -> list[dict]:
    """One summaries row per strong reference, in the W2S schema: floor = judge alone, transfer = judge with the
    critique, ceiling = the reference, pgr = gap recovered."""
    rows = []
    task = "critiques/" + "+".join(Path(s).stem if s.endswith(".jsonl") else s for s in config.sources)
    for reference, gap in summary["gap_recovered"].items():
        strong = "tests" if reference == "tests" else f"{critic}-alone"
        rows.append({
            "summary_key": stable_hash([config.experiment, task, judge, strong, critic]),
            "experiment": config.experiment, "created_at": created, "task": task, "weak": judge, "strong": strong,
            "loss": f"critique:{critic}", "strong_to_strong": 0, "floor": gap["floor"], "transfer": gap["transfer"],
            "ceiling": gap["ceiling"], "pgr": gap["pgr"], "pgr_low": gap["pgr_ci"][0] if gap["pgr_ci"] else None,
            "pgr_high": gap["pgr_ci"][1] if gap["pgr_ci"] else None, "defined": int(gap["defined"]),
            "reason": gap["reason"],
            "result": {"protocol": "critiques", "judge": judge, "critic": critic, "reference": reference,
                       "gap": gap, "uplift": summary["uplift"], "alone": summary["alone"],
                       "assisted": summary["assisted"], "calibration": config.calibration}})
    return rows


def _write_items(path: Path, items: list[dict], critiques: dict[str, list[str]]) -> None:
    """The judged items with each critic's first-seed critique: what the human-judging page serves."""
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            for i, item in enumerate(items):
                row = {k: item[k] for k in ("item_id", "problem_id", "description", "code", "buggy", "kind",
                                            "changed_lines")}
                row["critiques"] = {critic: texts[i] for critic, texts in critiques.items()}
                f.write(json.dumps(row, sort_keys=True) + "\n")


def _train_and_compare(config: CritiquesConfig, records, items, cache_root, progress) -> dict:
    """LoRA-train ``config.train_critic`` on verified bugs of problems *outside* the judged set, then compare its
    critiques before and after training on ``eval_problems`` judged problems (transformers backend both times)."""
    from ..lm import load_lm
    from ..training.policy import PolicyTraining

    judged = {i["problem_id"] for i in items}
    pool = sorted({r["problem_id"] for r in records} - judged)
    train_items = C.balanced_items(records, problems=set(pool), n_problems=config.train_problems,
                                   seed=config.item_seed + 1)
    train_ids = {i["problem_id"] for i in train_items}
    if train_ids & judged:
        raise ConfigError("internal: a judged problem reached the critic's training set")
    train_set = train_items  # one correct and one buggy program per training problem
    eval_ids = sorted(judged)[: config.eval_problems]
    eval_items = [i for i in items if i["problem_id"] in set(eval_ids)]
    start = time.perf_counter()
    trained = C.train_critic(config.train_critic, train_set,
                             config=PolicyTraining(epochs=config.train_epochs, max_length=512, seed=config.item_seed),
                             cache=cache_root)
    train_s = time.perf_counter() - start
    out = {"critic": config.train_critic, "train_problems": len(train_ids), "train_examples": len(train_set),
           "train_kinds": sorted({i["kind"] for i in train_set}),
           "eval_items": len(eval_items), "eval_problems": len(set(eval_ids)), "metrics": trained.metrics,
           "train_s": train_s}
    for label, adapter in (("before", None), ("after", str(trained.adapter))):
        start = time.perf_counter()
        with load_lm(config.train_critic, backend="transformers", adapter=adapter, progress=progress) as lm:
            texts = C.critique_items(lm, eval_items, seeds=(0,), temperature=0.0, max_tokens=config.max_tokens)[0]
        quality = C.critique_quality(eval_items, texts)
        out[label] = {k: quality[k] for k in ("localised", "claims_on_buggy", "hallucinated")}
        out[label]["s"] = time.perf_counter() - start
        out[label]["examples"] = [{"item_id": i["item_id"], "buggy": i["buggy"], "critique": t}
                                  for i, t in list(zip(eval_items, texts))[:4]]
    return out
