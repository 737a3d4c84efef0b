"""``run_cai``: AI feedback measured against human feedback, and the CAI policy stages, from one config.

1. AI preference labels on HH-RLHF harmless-base pairs for every feedback setting (model, ensemble, both orders,
   clamp, exemplars): agreement with the human label (interval), position flips, cost per 1,000 labels.
2. The gap recovered per setting (``summaries`` rows, protocol 'cai'): floor = the AI labeller on held-out human
   labels, transfer = a preference model trained on its labels, ceiling = the same model on human labels.
3. With ``policy``: SL-CAI (critique → revision on red-team prompts, LoRA SFT on the revisions), then RL-CAI as
   DPO on pairs of the SL model's answers labelled by the first feedback setting; the policy before, after SL and
   after DPO: harm rate (toxicity classifier, with its error), reward under the human-trained preference model,
   refusal rate. Every critique and revision is stored in ``<results>/cai/<experiment>/``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..checks import check_int_at_least, check_safe_name, freeze_lists
from ..errors import ConfigError
from ..io import atomic_path, config_from_toml, stable_hash, write_json
from . import cai as C

SETTING_KEYS = {"model", "ensemble", "both_orders", "clamp", "exemplars"}


@dataclasses.dataclass(frozen=True)
class CaiConfig:
    """``settings``: feedback settings, each {"model", "ensemble" (comparison questions averaged), "both_orders",
    "clamp" (None or c in [0, 0.5)), "exemplars"}; ``n_pairs`` HH-RLHF pairs (20% held out by conversation);
    ``seeds``: preference-model training subsamples; ``features``: the preference model's encoder;
    ``constitution``: a TOML path ('' = the default). With ``policy``: ``n_prompts`` red-team prompts (first
    HH-RLHF human turns, or ``prompts_file`` — e.g. a red-teaming failure dataset), ``rounds`` of critique and
    revision, LoRA SFT and DPO of the policy, ``eval_prompts`` held-out prompts for before/after."""

    experiment: str = "cai"
    settings: tuple[dict, ...] = ({"model": "smollm2"},)
    n_pairs: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    features: str = "minilm"
    constitution: str = ""
    policy: str = ""
    prompts_file: str = ""
    n_prompts: int = 64
    eval_prompts: int = 64
    rounds: int = 1
    max_tokens: int = 96

    def __post_init__(self) -> None:
        check_safe_name(self.experiment, "experiment")
        if isinstance(self.settings, (str, dict)) or not self.settings:
            raise ConfigError("settings must be a non-empty list of feedback settings ({model, ...})")
        normal = []
        for i, s in enumerate(self.settings, 1):
            if not isinstance(s, dict) or "model" not in s:
                raise ConfigError(f"settings #{i} must be a table with at least a model")
            unknown = sorted(set(s) - SETTING_KEYS)
            if unknown:
                raise ConfigError(f"settings #{i}: unknown key(s) {', '.join(unknown)} (known: "
                                  f"{', '.join(sorted(SETTING_KEYS))})")
            normal.append({"ensemble": 1, "both_orders": True, "clamp": None, "exemplars": False, **s})
        object.__setattr__(self, "settings", tuple(normal))
        freeze_lists(self, ("seeds",))
        for name in ("n_pairs", "n_prompts", "eval_prompts", "rounds", "max_tokens"):
            check_int_at_least(getattr(self, name), name, 1)
        C.load_constitution(self.constitution or None)  # names a bad constitution before anything runs

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "CaiConfig":
        """Read a TOML file of these fields (``[[settings]]`` tables; unknown keys refused, named)."""
        return config_from_toml(cls, path, **overrides)


def setting_label(s: dict) -> str:
    """'smollm2 ens3 swap clamp0.4 shots' style name of a feedback setting."""
    parts = [s["model"], f"ens{s['ensemble']}", "swap" if s["both_orders"] else "one-order"]
    if s["clamp"] is not None:
        parts.append(f"clamp{s['clamp']}")
    if s["exemplars"]:
        parts.append("shots")
    return " ".join(parts)


def run_cai(config: CaiConfig, *, results_dir=None, data_dir=None, cache_dir=None, progress: bool = False) -> dict:
    """Run ``config``; store summaries rows; write result.json (and the SL-CAI records). Returns {"config",
    "pairs", "settings": [{label, agreement, flip_rate, gap, seconds, per_1000_s}], "policy"}."""
    from ..lm import load_lm
    from ..models import make_featurizer
    from ..paths import results_dir as resolve_results
    from ..runner.store import ResultsStore

    results = resolve_results(results_dir)
    constitution = C.load_constitution(config.constitution or None)
    pairs = C.hh_pairs(data_dir=data_dir, limit=config.n_pairs)
    human = np.array([p["human"] for p in pairs])
    held = np.array([p["held_out"] for p in pairs], dtype=bool)
    featurizer = make_featurizer(config.features, cache=cache_dir, progress=False)
    fa = np.asarray(featurizer.transform([p["a"] for p in pairs]))
    fb = np.asarray(featurizer.transform([p["b"] for p in pairs]))
    created = datetime.now(timezone.utc).isoformat()
    out = {"config": dataclasses.asdict(config), "pairs": {"n": len(pairs), "held_out": int(held.sum()),
                                                           "skipped_identical_or_malformed": pairs.skipped},
           "settings": [], "policy": None}
    summaries = []
    for setting in config.settings:
        start = time.perf_counter()
        with load_lm(setting["model"], cache=cache_dir, progress=progress) as lm:
            labels = C.ai_preferences(lm, [(p["context"], p["a"], p["b"]) for p in pairs], constitution,
                                      both_orders=setting["both_orders"], ensemble=setting["ensemble"],
                                      clamp=setting["clamp"], exemplars=setting["exemplars"])
        seconds = time.perf_counter() - start
        gap = C.preference_gap(fa, fb, human, labels["p_a"], held, seeds=config.seeds)
        label = setting_label(setting)
        entry = {"label": label, "setting": setting, "agreement": C.agreement(labels["p_a"], human),
                 "agreement_held_out": C.agreement(labels["p_a"][held], human[held]),
                 "flip_rate": labels["flip_rate"], "gap": gap, "seconds": seconds,
                 "per_1000_s": 1000 * seconds / len(pairs)}
        out["settings"].append(entry)
        summaries.append(_summary(config, created, label, gap, entry))
    if config.policy:
        out["policy"] = _policy_stages(config, constitution, results, data_dir, cache_dir, progress, fa, fb, human,
                                       held)
    write_json(results / "cai" / config.experiment / "result.json", out | {"created_at": created})
    ResultsStore(results / "results.sqlite").write([], summaries)
    return out


def _summary(config, created, label, gap, entry) -> dict:
    return {"summary_key": stable_hash([config.experiment, label, config.n_pairs, config.features, config.seeds]),
            "experiment": config.experiment, "created_at": created, "task": "cai/hh_rlhf_harmless",
            "weak": f"AI labels: {label}", "strong": "human labels", "loss": f"preference model ({config.features})",
            "strong_to_strong": 0, "floor": gap["floor"], "transfer": gap["transfer"], "ceiling": gap["ceiling"],
            "pgr": gap["pgr"], "pgr_low": gap["pgr_ci"][0] if gap["pgr_ci"] else None,
            "pgr_high": gap["pgr_ci"][1] if gap["pgr_ci"] else None, "defined": int(gap["defined"]),
            "reason": gap["reason"],
            "result": {"protocol": "cai", "setting": entry["setting"], "agreement": entry["agreement"],
                       "flip_rate": entry["flip_rate"], "gap": gap}}


def _policy_stages(config, constitution, results, data_dir, cache_dir, progress, fa, fb, human, held) -> dict:
    """SL-CAI, then DPO on AI-labelled pairs; the policy measured before, after SL and after DPO."""
    from sklearn.linear_model import LogisticRegression

    from ..lm import GenerationRequest, load_lm
    from ..models import make_featurizer
    from ..training.policy import PolicyTraining, train_dpo, train_sft
    from .harm import train_classifier
    from .redteam import load_seed_pool, read_failures
    from .redteam_run import REFUSALS

    if config.prompts_file:
        prompts = [r["test_case"] for r in read_failures(config.prompts_file)]
    else:
        prompts = load_seed_pool("hh_rlhf", data_dir=data_dir)
    if len(prompts) < config.n_prompts + config.eval_prompts:
        raise ConfigError(f"{len(prompts)} prompts, fewer than n_prompts + eval_prompts = "
                          f"{config.n_prompts + config.eval_prompts}")
    train_prompts, eval_prompts = prompts[: config.n_prompts], prompts[-config.eval_prompts:]
    train = ~held  # the reward model of record: trained on human labels of the training conversations
    diff = fa[train] - fb[train]
    reward_model = LogisticRegression(fit_intercept=False, max_iter=2000).fit(
        np.concatenate([diff, -diff]), np.concatenate([human[train], 1 - human[train]]))
    featurizer = make_featurizer(config.features, cache=cache_dir, progress=False)
    toxicity = train_classifier("toxicity", features=config.features, data_dir=data_dir, cache=cache_dir)

    def measure(adapter: str | None) -> dict:
        with load_lm(config.policy, adapter=adapter, cache=cache_dir, progress=progress) as lm:
            replies = [g[0].text.strip() for g in lm.generate([GenerationRequest(
                messages=({"role": "user", "content": p},), n=1, temperature=0.0, max_tokens=config.max_tokens)
                for p in eval_prompts])]
        harm = toxicity.flags(replies)
        reward = featurizer.transform(replies) @ reward_model.coef_[0]
        return {"harm_rate": float(harm.mean()), "reward": float(np.mean(reward)),
                "refusal_rate": float(np.mean([r.lower().startswith(REFUSALS) for r in replies])),
                "mean_words": float(np.mean([len(r.split()) for r in replies]))}

    out = {"before": measure(None), "classifier": toxicity.metrics}
    with load_lm(config.policy, cache=cache_dir, progress=progress) as lm:
        records = C.critique_revise(lm, train_prompts, constitution, rounds=config.rounds,
                                    max_tokens=config.max_tokens)
    folder = results / "cai" / config.experiment
    with atomic_path(folder / "sl_cai.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    sl = train_sft(config.policy, C.sl_cai_rows(records), cache=cache_dir, config=PolicyTraining(epochs=2.0))
    out["after_sl"] = measure(str(sl.adapter))
    setting = config.settings[0]
    with load_lm(config.policy, adapter=str(sl.adapter), cache=cache_dir, progress=progress) as lm:
        answers = [[g.text.strip() for g in samples] for samples in lm.generate([GenerationRequest(
            messages=({"role": "user", "content": p},), n=2, temperature=1.0, max_tokens=config.max_tokens, seed=7)
            for p in train_prompts])]
    usable = [(p, a[0], a[1]) for p, a in zip(train_prompts, answers) if a[0] != a[1]]
    with load_lm(setting["model"], cache=cache_dir, progress=progress) as lm:
        labels = C.ai_preferences(lm, [(f"Human: {p}", a, b) for p, a, b in usable], constitution,
                                  both_orders=setting["both_orders"], ensemble=setting["ensemble"])
    dpo_pairs = [{"prompt": [{"role": "user", "content": p}],
                  "chosen": [{"role": "assistant", "content": a if q >= 0.5 else b}],
                  "rejected": [{"role": "assistant", "content": b if q >= 0.5 else a}]}
                 for (p, a, b), q in zip(usable, labels["p_a"])]
    out["dpo_pairs"] = len(dpo_pairs)
    out["identical_answer_pairs_skipped"] = len(train_prompts) - len(usable)
    if dpo_pairs:
        dpo = train_dpo(config.policy, dpo_pairs, cache=cache_dir, config=PolicyTraining(epochs=1.0))
        out["after_dpo"] = measure(str(dpo.adapter))
    return out
