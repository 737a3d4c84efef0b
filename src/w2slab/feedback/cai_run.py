"""``run_cai``: AI feedback measured against human feedback, and the CAI policy stages, from one config.

1. AI preference labels on HH-RLHF harmless-base pairs for every feedback setting (model, fine-tuning on a few
   human labels, ensemble, both orders, chain of thought, clamp, exemplars, log-probs or sampled choices):
   agreement with the human label (interval), position flips, cost per 1,000 labels.
2. The gap recovered per setting (``summaries`` rows, protocol 'cai'): floor = the AI labeller on held-out human
   labels, transfer = a preference model trained on its labels, ceiling = the same model on human labels.
3. With ``policy`` (run right after the first setting, whose labels it uses): SL-CAI (critique → revision on
   red-team prompts, LoRA SFT on the revisions), then RL-CAI as DPO on pairs of the SL model's answers labelled by
   the first feedback setting; the policy before, after SL and after DPO: harm rate by the toxicity and the
   harmlessness classifiers (raw and corrected for each one's measured error), reward under the human-trained
   preference model, refusal rate. Every critique and revision is stored in ``<results>/cai/<experiment>/``.
   Each setting's row and result.json land as soon as it is measured.
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

HARM_CLASSIFIERS = ("toxicity", "harmlessness")  # the red-team classifiers that read text alone, error measured
SETTING_KEYS = {"model", "ensemble", "both_orders", "clamp", "exemplars", "cot", "choice", "samples", "finetune",
                "base_url", "n_pairs"}
SETTING_DEFAULTS = {"ensemble": 1, "both_orders": True, "clamp": None, "exemplars": False, "cot": False,
                    "choice": "logprobs", "samples": 8, "finetune": 0, "base_url": "", "n_pairs": 0}


@dataclasses.dataclass(frozen=True)
class CaiConfig:
    """``settings``: feedback settings, each {"model", "ensemble" (comparison questions averaged), "both_orders",
    "clamp" (None or c in [0, 0.5)), "exemplars", "cot" (reason before choosing), "choice" ("logprobs", or
    "sampled" for servers without log-probs), "samples" (sampled answers per view), "finetune" (N > 0: first
    LoRA-fine-tune the model on N human-labelled pairs that are not among the measured ones), "base_url" (an
    OpenAI-compatible server; model = the served name), "n_pairs" (N > 0: only the first N of the study's pairs,
    for a model too slow to label them all; marked in its label)}; ``n_pairs`` HH-RLHF pairs (20% held out by
    conversation);
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
            s = {**SETTING_DEFAULTS, **s}
            if s["choice"] not in C.CHOICES:
                raise ConfigError(f"settings #{i}: choice must be one of {', '.join(C.CHOICES)}, got {s['choice']!r}")
            for key in ("ensemble", "samples", "finetune", "n_pairs"):
                least = int(key in ("ensemble", "samples"))
                if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < least:
                    raise ConfigError(f"settings #{i}: {key} must be an integer >= {least}, got {s[key]!r}")
            for key in ("both_orders", "exemplars", "cot"):
                if not isinstance(s[key], bool):
                    raise ConfigError(f"settings #{i}: {key} must be true or false, got {s[key]!r}")
            if s["clamp"] is not None and not (isinstance(s["clamp"], (int, float)) and 0 <= s["clamp"] < 0.5):
                raise ConfigError(f"settings #{i}: clamp must be in [0, 0.5), got {s['clamp']!r}")
            if s["base_url"] and not str(s["base_url"]).startswith(("http://", "https://")):
                raise ConfigError(f"settings #{i}: base_url must be an http(s) URL, got {s['base_url']!r}")
            if s["n_pairs"] > self.n_pairs:
                raise ConfigError(f"settings #{i}: n_pairs {s['n_pairs']} exceeds the study's n_pairs {self.n_pairs}")
            if s["finetune"] and s["base_url"]:
                raise ConfigError(f"settings #{i}: finetune trains a local model; it cannot go with base_url")
            normal.append(s)
        object.__setattr__(self, "settings", tuple(normal))
        freeze_lists(self, ("seeds",))
        for name in ("n_pairs", "n_prompts", "eval_prompts", "rounds", "max_tokens"):
            check_int_at_least(getattr(self, name), name, 1)
        constitution = C.load_constitution(self.constitution or None)  # a bad one named before anything runs
        for i, s in enumerate(self.settings, 1):
            if s["ensemble"] > len(constitution.comparisons):
                raise ConfigError(f"settings #{i}: ensemble {s['ensemble']} exceeds the constitution's "
                                  f"{len(constitution.comparisons)} comparison questions")

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "CaiConfig":
        """Read a TOML file of these fields (``[[settings]]`` tables; unknown keys refused, named)."""
        return config_from_toml(cls, path, **overrides)


def setting_label(s: dict) -> str:
    """'smollm2 ft100 ens3 swap cot clamp0.4 shots sampled8' style name of a feedback setting."""
    parts = [s["model"]] + ([f"ft{s['finetune']}"] if s["finetune"] else [])
    parts += [f"ens{s['ensemble']}", "swap" if s["both_orders"] else "one-order"] + (["cot"] if s["cot"] else [])
    if s["clamp"] is not None:
        parts.append(f"clamp{s['clamp']}")
    if s["exemplars"]:
        parts.append("shots")
    if s["choice"] == "sampled":
        parts.append(f"sampled{s['samples']}")
    if s["n_pairs"]:
        parts.append(f"first{s['n_pairs']}")
    return " ".join(parts)


def run_cai(config: CaiConfig, *, results_dir=None, data_dir=None, cache_dir=None, progress: bool = False) -> dict:
    """Run ``config``; store summaries rows; write result.json (and the SL-CAI records). Returns {"config",
    "pairs", "settings": [{label, agreement, flip_rate, unparseable_views, finetune, gap, seconds, per_1000_s,
    model_calls, cache_hits, cost}], "policy"}. ``seconds`` is this run's time (small when the labels came from the
    cache); ``cost`` is the setting's measured cost from the run that labelled it from scratch (``costs.json``),
    None if no run did."""
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
    result_path = results / "cai" / config.experiment / "result.json"
    costs_path = result_path.with_name("costs.json")  # the measured cost of each setting labelled from scratch
    costs = json.loads(costs_path.read_text(encoding="utf-8")) if costs_path.is_file() else {}
    store = ResultsStore(results / "results.sqlite")
    for i, setting in enumerate(config.settings):
        start = time.perf_counter()
        adapter, tuning = _finetuned_feedback(config, setting, constitution, pairs, data_dir, cache_dir)
        n = setting["n_pairs"] or len(pairs)  # this setting labels the first n pairs
        labels = _label(setting, adapter, [(p["context"], p["a"], p["b"]) for p in pairs[:n]], constitution, config,
                        cache_dir, progress)
        seconds = time.perf_counter() - start
        if labels["cache_hits"] == 0:  # computed whole in this run: its cost is a measurement, kept for re-reads
            costs[setting_label(setting)] = {"seconds": seconds, "per_1000_s": 1000 * seconds / n,
                                             "model_calls": labels["model_calls"],
                                             "measured_at": datetime.now(timezone.utc).isoformat()}
            write_json(costs_path, costs)
        gap = C.preference_gap(fa[:n], fb[:n], human[:n], labels["p_a"], held[:n], seeds=config.seeds)
        label = setting_label(setting)
        entry = {"label": label, "setting": setting, "n_pairs": n, "agreement": C.agreement(labels["p_a"], human[:n]),
                 "agreement_held_out": C.agreement(labels["p_a"][held[:n]], human[:n][held[:n]]),
                 "flip_rate": labels["flip_rate"], "unparseable_views": labels["unparseable"],
                 "finetune": tuning, "gap": gap, "seconds": seconds, "per_1000_s": 1000 * seconds / n,
                 "model_calls": labels["model_calls"], "cache_hits": labels["cache_hits"],
                 "cost": costs.get(label)}
        if labels["reasoning"]:
            entry["reasoning_examples"] = [{"id": p["id"], "reasoning": r, "p_a": float(q), "human": p["human"]}
                                           for p, r, q in list(zip(pairs, labels["reasoning"], labels["p_a"]))[:5]]
        out["settings"].append(entry)
        if i == 0 and config.policy:  # the policy stages use the first setting's labels: run them now, not last

            def first_setting_labels(triples, setting=setting, adapter=adapter):
                return _label(setting, adapter, triples, constitution, config, cache_dir, progress)

            out["policy"] = _policy_stages(config, constitution, results, data_dir, cache_dir, progress, featurizer,
                                           fa, fb, human, held, first_setting_labels)
        # each setting lands as soon as it is measured: a long study stopped part-way keeps what it measured
        write_json(result_path, out | {"created_at": created, "complete": False})
        store.write([], [_summary(config, created, label, gap, entry)])
    write_json(result_path, out | {"created_at": created, "complete": True})
    return out


def _label(setting: dict, adapter: str | None, triples: list[tuple[str, str, str]], constitution, config,
           cache_dir, progress) -> dict:
    """One feedback setting's AI preference labels of (context, A, B) triples (see ``cai.ai_preferences``)."""
    from ..lm import load_lm

    backend = {"backend": "openai", "base_url": setting["base_url"]} if setting["base_url"] else {}
    with load_lm(setting["model"], adapter=adapter, cache=cache_dir, progress=progress, **backend) as lm:
        labels = C.ai_preferences(lm, triples, constitution, both_orders=setting["both_orders"],
                                  ensemble=setting["ensemble"], clamp=setting["clamp"], exemplars=setting["exemplars"],
                                  cot=setting["cot"], choice=setting["choice"], samples=setting["samples"],
                                  cot_tokens=config.max_tokens)
        return labels | {"model_calls": lm.backend_calls, "cache_hits": lm.hits}


def _finetuned_feedback(config, setting, constitution, pairs, data_dir, cache_dir) -> tuple[str | None, dict | None]:
    """With ``finetune`` N: LoRA SFT of the feedback model on N human-labelled HH-RLHF pairs (both orders) drawn
    after the measured ones, outside the held-out conversations and sharing no conversation with any measured pair
    (a cached stage). Returns (adapter path, {"pairs", "seconds", "cached"}) or (None, None)."""
    from ..training.policy import PolicyTraining, train_sft

    n = setting["finetune"]
    if not n:
        return None, None
    pool = C.finetune_pool(C.hh_pairs(data_dir=data_dir), pairs)
    if len(pool) < n:
        raise ConfigError(f"finetune = {n}: only {len(pool)} human-labelled pairs lie outside the {len(pairs)} "
                          "measured ones and the held-out conversations")
    start = time.perf_counter()
    trained = train_sft(setting["model"], C.feedback_sft_rows(pool[:n], constitution), cache=cache_dir,
                        config=PolicyTraining(epochs=1.0, max_length=1024))
    return str(trained.adapter), {"pairs": n, "seconds": time.perf_counter() - start, "cached": trained.cached,
                                  "metrics": trained.metrics}


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


def _policy_stages(config, constitution, results, data_dir, cache_dir, progress, featurizer, fa, fb, human, held,
                   label_pairs) -> dict:
    """SL-CAI, then DPO on pairs of answers labelled by ``label_pairs`` (the first feedback setting); the policy
    measured before, after SL and after DPO."""
    from sklearn.linear_model import LogisticRegression

    from ..lm import GenerationRequest, load_lm
    from ..training.policy import PolicyTraining, train_dpo, train_sft
    from .harm import train_classifier
    from .redteam import corrected_rate, load_seed_pool, read_failures
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
    classifiers = {kind: train_classifier(kind, features=config.features, data_dir=data_dir, cache=cache_dir)
                   for kind in HARM_CLASSIFIERS}

    def measure(adapter: str | None) -> dict:
        with load_lm(config.policy, adapter=adapter, cache=cache_dir, progress=progress) as lm:
            replies = [g[0].text.strip() for g in lm.generate([GenerationRequest(
                messages=({"role": "user", "content": p},), n=1, temperature=0.0, max_tokens=config.max_tokens)
                for p in eval_prompts])]
        harm = {kind: corrected_rate(c.flags(replies), c.metrics) for kind, c in classifiers.items()}
        reward = featurizer.transform(replies) @ reward_model.coef_[0]
        return {"harm": harm, "harm_rate": harm["toxicity"]["raw"], "reward": float(np.mean(reward)),
                "refusal_rate": float(np.mean([r.lower().startswith(REFUSALS) for r in replies])),
                "mean_words": float(np.mean([len(r.split()) for r in replies]))}

    out = {"before": measure(None), "classifiers": {kind: c.metrics for kind, c in classifiers.items()}}
    with load_lm(config.policy, cache=cache_dir, progress=progress) as lm:
        records = C.critique_revise(lm, train_prompts, constitution, rounds=config.rounds,
                                    max_tokens=config.max_tokens)
    folder = results / "cai" / config.experiment
    with atomic_path(folder / "sl_cai.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    sl = train_sft(config.policy, C.sl_cai_rows(records), cache=cache_dir, config=PolicyTraining(epochs=2.0))
    out["after_sl"] = measure(str(sl.adapter))
    with load_lm(config.policy, adapter=str(sl.adapter), cache=cache_dir, progress=progress) as lm:
        answers = [[g.text.strip() for g in samples] for samples in lm.generate([GenerationRequest(
            messages=({"role": "user", "content": p},), n=2, temperature=1.0, max_tokens=config.max_tokens, seed=7)
            for p in train_prompts])]
    usable = [(p, a[0], a[1]) for p, a in zip(train_prompts, answers) if a[0] != a[1]]
    labels = label_pairs([(f"Human: {p}", a, b) for p, a, b in usable]) if usable else {"p_a": []}
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
