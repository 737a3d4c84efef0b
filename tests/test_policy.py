"""Policy training on TRL + peft with real data: SFT, DPO and a reward model move the model the trained way."""
import pytest

from w2slab.errors import DataError
from w2slab.lm import ScoreRequest, load_lm
from w2slab.tasks.preference import hh_preference_pairs
from w2slab.training.policy import PolicyTraining, reward_scores, train_dpo, train_reward_model, train_sft

CONFIG = PolicyTraining(epochs=2, batch_size=4, max_length=128, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def pairs(data_dir):
    return hh_preference_pairs(data_dir, max_chars=300)[:8]


def _logps(model, adapter, rows, key, cache):
    lm = load_lm(model, backend="transformers", adapter=adapter, cache=cache)
    return [s.logprob for s in lm.loglikelihood([ScoreRequest(prompt=r["prompt"], continuation=r[key]) for r in rows])]


def test_sft_raises_the_log_prob_of_its_completions_and_is_cached(pairs, cache_dir):
    examples = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    trained = train_sft("smollm2", examples, config=CONFIG, cache=cache_dir)
    assert not trained.cached and (trained.adapter / "adapter_config.json").is_file()
    assert trained.metrics["examples_per_s"] > 0 and trained.metrics["steps"] == 4
    before = _logps("smollm2", None, examples, "completion", cache_dir)
    after = _logps("smollm2", trained.adapter, examples, "completion", cache_dir)
    assert sum(after) > sum(before) and sum(a > b for a, b in zip(after, before)) >= 6
    assert train_sft("smollm2", examples, config=CONFIG, cache=cache_dir).cached


def test_dpo_raises_the_implicit_reward_margin(pairs, cache_dir):
    trained = train_dpo("smollm2", pairs, config=CONFIG, cache=cache_dir)
    base_c, base_r = (_logps("smollm2", None, pairs, k, cache_dir) for k in ("chosen", "rejected"))
    new_c, new_r = (_logps("smollm2", trained.adapter, pairs, k, cache_dir) for k in ("chosen", "rejected"))
    margins = [(nc - bc) - (nr - br) for nc, bc, nr, br in zip(new_c, base_c, new_r, base_r)]
    assert sum(margins) / len(margins) > 0  # chosen gained on rejected relative to the reference policy


def test_reward_model_trains_and_scores(pairs, cache_dir):
    trained = train_reward_model("smollm2", pairs, config=CONFIG, cache=cache_dir)
    chosen = reward_scores(trained, [p["prompt"] + p["chosen"] for p in pairs], cache=cache_dir)
    rejected = reward_scores(trained, [p["prompt"] + p["rejected"] for p in pairs], cache=cache_dir)
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 6  # fits its training pairs


def test_bad_training_data_is_refused_before_any_work(pairs, cache_dir):
    with pytest.raises(DataError, match="empty"):
        train_dpo("smollm2", [], cache=cache_dir)
    with pytest.raises(DataError, match="identical"):
        train_dpo("smollm2", [{"prompt": "p", "chosen": "a", "rejected": "a"}], cache=cache_dir)
    with pytest.raises(DataError, match="keys"):
        train_sft("smollm2", [{"text": "x"}], cache=cache_dir)


def test_a_trained_adapter_samples_on_llamacpp_like_on_transformers(pairs, cache_dir):
    """The adapter exported to a llama.cpp LoRA GGUF moves llama.cpp's log-probs the way it moves the
    transformers model's: llama.cpp with the adapter is closer to transformers-with-adapter than without."""
    import numpy as np

    examples = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    trained = train_sft("smollm2", examples, config=CONFIG, cache=cache_dir)
    requests = [ScoreRequest(prompt=r["prompt"], continuation=r["completion"][:80]) for r in examples]

    def logps(backend, adapter):
        with load_lm("smollm2", backend=backend, adapter=adapter, cache=False) as lm:
            return np.array([s.logprob for s in lm.loglikelihood(requests)])

    hf_after = logps("transformers", trained.adapter)
    cpp_before, cpp_after = logps("llamacpp", None), logps("llamacpp", trained.adapter)
    assert (trained.adapter / "adapter.gguf").is_file()
    assert np.abs(cpp_after - hf_after).mean() < 0.5 * np.abs(cpp_before - hf_after).mean()
    with load_lm("smollm2", adapter=trained.adapter, cache=cache_dir) as lm, load_lm("smollm2", cache=cache_dir) as base:
        assert lm.identity != base.identity  # the adapter is part of the cache key
