"""``run_selfimprove_study``: the self-improvement study from one config — every (model, task) cell, every filter
and seed, round by round — stored as ``rounds`` rows and gap-recovered ``summaries`` rows in the results store,
plus one JSON per cell under ``<results>/selfimprove/<experiment>/``.

Every generation sits in the generation cache and every trained adapter is a cached policy stage, so a rerun with
one more round, one more seed or a larger k computes only what is new; a study stopped part-way (killed, or out of
time) resumes where it stopped, and the rows of each finished cell are stored as soon as it finishes.

Gap recovered, in the W2S schema: floor = the base model's greedy test accuracy, transfer = after r rounds of a
filter, ceiling = the reference that reads gold — SFT on gold rationales where the task has them (GSM8K), else
the oracle filter after the same number of rounds. Same paired bootstrap (questions and seeds jointly) and the
same 'undefined' rule as PGR.
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
from ..io import config_from_toml, stable_hash, write_json
from ..tasks.reasoning import TASKS, TASKS_WITH_RATIONALES
from .selfimprove import FILTERS, SelfImproveConfig, run_self_improvement

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SelfImproveStudy:
    """A grid of self-improvement cells: every model × task, each with the fields of
    :class:`SelfImproveConfig`. ``max_tokens_per_task`` overrides ``max_tokens`` for named tasks (GSM8K needs
    longer answers than yes/no). The 'gold' filter runs only where the task has gold rationales."""

    experiment: str = "selfimprove"
    models: tuple[str, ...] = ("smollm2", "qwen-coder-0.5b")
    tasks: tuple[str, ...] = ("strategyqa", "piqa")
    n_train: int = 32
    n_test: int = 40
    k: int = 4
    temperature: float = 0.7
    max_tokens: int = 96
    max_tokens_per_task: dict = dataclasses.field(default_factory=dict)
    tau: float = 0.6
    rounds: int = 2
    filters: tuple[str, ...] = ("majority", "oracle", "none", "gold")
    seeds: tuple[int, ...] = (0, 1, 2)
    train_epochs: float = 1.0
    lr: float = 2e-4
    high_agreement: float = 0.6
    parallel: int = 4

    def __post_init__(self) -> None:
        check_safe_name(self.experiment, "experiment")
        freeze_lists(self, ("models", "tasks", "filters", "seeds"))
        from ..models import MODELS

        decoders = [n for n in MODELS.names() if MODELS.get(n).gguf]
        strangers = [m for m in self.models if m not in decoders]
        if strangers:  # trained with transformers, sampled on llama.cpp through a LoRA GGUF: zoo decoders only
            raise ConfigError(f"unknown model(s) {', '.join(strangers)}: self-improvement runs zoo decoders "
                              f"({', '.join(decoders)})")
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"unknown reasoning task(s) {', '.join(unknown)} (known: {', '.join(TASKS)})")
        if not isinstance(self.max_tokens_per_task, dict) or set(self.max_tokens_per_task) - set(TASKS):
            raise ConfigError(f"max_tokens_per_task must map task names ({', '.join(TASKS)}) to token counts, "
                              f"got {self.max_tokens_per_task!r}")
        for task, tokens in self.max_tokens_per_task.items():
            check_int_at_least(tokens, f"max_tokens_per_task.{task}", 1)
        self.cells()  # every cell validates its own fields (k, tau, rounds, seeds, filters)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "SelfImproveStudy":
        """Read a TOML file of these fields (unknown keys refused, named); ``overrides`` that are not None win."""
        return config_from_toml(cls, path, **overrides)

    def cells(self) -> list[SelfImproveConfig]:
        """One :class:`SelfImproveConfig` per (model, task), models outer."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(SelfImproveConfig)
                  if f.name not in ("task", "model", "max_tokens", "filters")}
        return [SelfImproveConfig(**shared, model=model, task=task,
                                  max_tokens=self.max_tokens_per_task.get(task, self.max_tokens),
                                  filters=tuple(f for f in self.filters
                                                if f != "gold" or task in TASKS_WITH_RATIONALES) or ("majority",))
                for model in self.models for task in self.tasks]


def run_selfimprove_study(study: SelfImproveStudy, *, results_dir=None, data_dir=None, cache_dir=None,
                          progress: bool = False) -> list[dict]:
    """Run every cell of ``study`` in order, storing each cell's rows when it finishes. Returns the cells'
    results (see :func:`run_self_improvement`), each with its ``summaries`` rows and ``seconds``."""
    from ..paths import results_dir as resolve_results
    from ..runner.store import ResultsStore

    results = resolve_results(results_dir)
    store = ResultsStore(results / "results.sqlite")
    out = []
    for cell in study.cells():
        start = time.perf_counter()
        log.info("self-improvement: %s on %s", cell.model, cell.task)
        result = run_self_improvement(cell, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
        path = results / "selfimprove" / cell.experiment / f"{cell.model}__{cell.task}.json"
        result = merge_earlier_seeds(result, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None)
        created = datetime.now(timezone.utc).isoformat()
        rounds, summaries = round_rows(result, created), gap_summaries(result, created)
        result.update(seconds=time.perf_counter() - start, created_at=created, summaries=summaries)
        write_json(path, result)
        store.write([], summaries, rounds=rounds)
        out.append(result)
    return out


def merge_earlier_seeds(result: dict, earlier: dict | None) -> dict:
    """``result`` plus the chains of ``earlier`` (the same cell's stored result) for (filter, seed)s it lacks, so a
    study run one seed at a time adds up to the study run at once: its gap summaries are over every seed stored,
    not only the last run's. An earlier result of other settings (another cell identity) is ignored. Chains are
    ordered seed-major, filters in config order, as a run of all seeds orders them."""
    if not earlier or _cell_identity(earlier["config"]) != _cell_identity(result["config"]):
        return result
    filters = list(result["config"]["filters"])
    have = {(c["filter"], c["seed"]) for c in result["chains"]}
    chains = result["chains"] + [c for c in earlier["chains"]
                                 if (c["filter"], c["seed"]) not in have and c["filter"] in filters]
    chains.sort(key=lambda c: (c["seed"], filters.index(c["filter"])))
    return {**result, "config": {**result["config"], "seeds": sorted({c["seed"] for c in chains})}, "chains": chains,
            "base": {**earlier.get("base", {}), **result["base"]}}


def round_rows(result: dict, created: str) -> list[dict]:
    """One ``rounds`` row per (filter, seed, round) of a cell's result; round 0 (the base model) once per filter
    so each chain reads whole."""
    config = result["config"]
    rows = []
    for chain in result["chains"]:
        for r in chain["rounds"]:
            test, kept = r["test"], r.get("kept") or {}
            rows.append({
                "round_key": stable_hash([config["experiment"], config["task"], config["model"], chain["filter"],
                                          chain["seed"], r["round"], _cell_identity(config)]),
                "experiment": config["experiment"], "created_at": created, "task": config["task"],
                "model": config["model"], "filter": chain["filter"], "seed": chain["seed"], "round": r["round"],
                "n_test": test["n"], "greedy_acc": test["greedy_acc"], "maj_acc": test["maj_acc"],
                "greedy_unextractable": test["greedy_unextractable"],
                "sample_unextractable": test["sample_unextractable"],
                "kept": len(kept["kept_qids"]) if "kept_qids" in kept else None,
                "kept_wrong_share": kept.get("kept_wrong_share"),
                "metrics": {"test": test, "kept": {k: v for k, v in kept.items() if k not in ("majorities",)},
                            "train": r.get("train_metrics"), "stopped": chain["stopped"], "config": config}})
    return rows


def _cell_identity(config: dict) -> str:
    """Fields that change a cell's numbers: rows of two differently sized runs never replace each other, while
    more rounds, filters or seeds, or another number of llama.cpp slots, leave the earlier rows' keys as they were."""
    ignored = ("experiment", "filters", "seeds", "rounds", "parallel")
    return stable_hash({k: v for k, v in config.items() if k not in ignored}, length=12)


def gap_summaries(result: dict, created: str) -> list[dict]:
    """``summaries`` rows (W2S schema) per (label-free filter, round ≥ 1): floor = base greedy accuracy (each
    seed's round 0, paired with that seed's later rounds), transfer = the filter's, ceiling = gold SFT (where run)
    else the oracle filter at the same round; pgr = the self-improvement gap recovered, with the paired bootstrap
    over questions and seeds. The accuracy change (transfer − floor) and its interval go in ``result``, with the
    share of questions the trained model and the reference each give their most common answer (``one_answer``):
    where both are near 1 the gap compares two constant answers, not what was learned."""
    from ..evaluation.pgr import pgr_with_ci

    config = result["config"]
    chains = {(c["filter"], c["seed"]): c for c in result["chains"]}
    seeds = sorted({c["seed"] for c in result["chains"]})
    # each seed's own round 0: seeds run in different sessions decode the base afresh, and llama.cpp with several
    # slots is not batch-invariant, so their greedy answers can differ (docs/lm.md)
    base = _correct(chains, next(iter(chains))[0], seeds, 0)  # (n_seeds, n)
    ones = np.ones(base.shape[1], dtype=int)
    rows = []
    for filter_name in ("majority", "none"):
        for r in range(1, config["rounds"] + 1):
            transfer = _correct(chains, filter_name, seeds, r)
            reference = "gold" if ("gold", seeds[0]) in chains else "oracle"
            reference_round = 1 if reference == "gold" else r
            ceiling = _correct(chains, reference, seeds, reference_round)
            if transfer is None or ceiling is None:
                continue  # a chain stopped before round r (its reason is in the rounds rows)
            one_answer = {"trained": _top_answer_share(chains, filter_name, seeds, r),
                          "reference": _top_answer_share(chains, reference, seeds, reference_round)}
            gap = pgr_with_ci(ones, base, transfer, ceiling, seed=0)
            change = pgr_with_ci(ones, base, base, transfer, seed=0)  # gap_ci of (transfer − floor)
            rows.append({
                "summary_key": stable_hash([config["experiment"], config["task"], config["model"], filter_name, r,
                                            _cell_identity(config)]),
                "experiment": config["experiment"], "created_at": created, "task": config["task"],
                "weak": config["model"], "strong": f"{reference}-trained", "loss": f"selfimprove:{filter_name}:r{r}",
                "strong_to_strong": 0, "floor": gap.floor, "transfer": gap.transfer, "ceiling": gap.ceiling,
                "pgr": gap.pgr, "pgr_low": gap.pgr_ci[0] if gap.pgr_ci else None,
                "pgr_high": gap.pgr_ci[1] if gap.pgr_ci else None, "defined": int(gap.defined), "reason": gap.reason,
                "result": {"protocol": "selfimprove", "model": config["model"], "filter": filter_name, "round": r,
                           "reference": reference, "gap": gap.as_dict(),
                           "change": {"mean": change.gap, "ci": list(change.gap_ci)}, "one_answer": one_answer,
                           "n_test": gap.n_test, "n_seeds": gap.n_seeds}})
    return rows


def _top_answer_share(chains: dict, filter_name: str, seeds: list[int], round_index: int) -> float | None:
    """Mean over seeds of the share of test questions given the most common greedy answer after ``round_index``
    rounds of ``filter_name`` (collapse); None where a cell stored before this measure lacks it."""
    tests = [chains[(filter_name, seed)]["rounds"][round_index]["test"] for seed in seeds]
    shares = [t.get("top_answer_share") for t in tests]
    return None if None in shares else float(np.mean(shares))


def _correct(chains: dict, filter_name: str, seeds: list[int], round_index: int) -> np.ndarray | None:
    """(n_seeds, n) greedy correctness of ``filter_name`` after ``round_index`` rounds, None if any seed's chain
    is missing or stopped before it."""
    rows = []
    for seed in seeds:
        chain = chains.get((filter_name, seed))
        if chain is None or len(chain["rounds"]) <= round_index:
            return None
        rows.append(chain["rounds"][round_index]["test"]["greedy_correct"])
    return np.array(rows, dtype=float)


__all__ = ["FILTERS", "SelfImproveStudy", "gap_summaries", "merge_earlier_seeds", "round_rows",
           "run_selfimprove_study"]
