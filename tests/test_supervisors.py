"""Supervisors on real components: the prompted LM (GGUF-loaded SmolLM2), the confident filter on real
MiniLM features with planted label errors, self-training pseudo-labels, and supervisor specs."""
import numpy as np
import pytest

from w2slab.errors import ConfigError
from w2slab.runner.protocol import cross_fitted
from w2slab.supervisors.prompted import PromptedLM, check_prompt
from w2slab.supervisors.refine import confident_keep, entropy_keep, parse_method, pseudo_labels
from w2slab.supervisors.spec import parse_supervisor
from w2slab.tasks import get_spec


def test_prompted_lm_scores_real_texts(sst2_small, cache_dir):
    template, words = get_spec("sst2").prompt
    lm = PromptedLM(model="smollm2", template=template, label_words=words, cache=cache_dir, progress=False)
    texts = sst2_small.texts[:24]
    raw = lm.raw_log_odds(texts)
    assert raw.shape == (24,) and np.isfinite(raw).all() and raw.std() > 0
    p = lm.predict_proba(texts)
    assert p.shape == (24, 2) and np.allclose(p.sum(1), 1)
    assert abs(np.mean(p[:, 1] > 0.5) - 0.5) <= 1 / 24 + 1e-9  # median-centred: half on each side
    np.testing.assert_allclose(lm.raw_log_odds(texts[:4]), raw[:4], rtol=1e-4, atol=1e-4)  # batch-independent


def test_prompt_template_must_name_its_label_words():
    with pytest.raises(ConfigError, match="does not contain the label word"):
        check_prompt("Review: {text}\nAnswer:", ("negative", "positive"))
    with pytest.raises(ConfigError, match="no '{text}' placeholder"):
        check_prompt("positive or negative?", ("negative", "positive"))


def test_confident_filter_removes_planted_errors(minilm_sst2):
    X, y = minilm_sst2
    rng = np.random.default_rng(0)
    planted = rng.random(len(y)) < 0.2
    weak = np.where(planted, 1 - y, y).astype(np.float32)
    cf = cross_fitted(X, weak, head="logistic", head_params={}, loss="xent", seed=0)
    keep = confident_keep(cf, weak)
    removed = ~keep
    precision = planted[removed].mean()  # share of removed labels that were planted errors
    recall = removed[planted].mean()     # share of planted errors removed
    print(f"removed {removed.sum()} of {len(y)}: precision {precision:.3f}, recall {recall:.3f}")
    assert removed.sum() > 20
    assert precision > 0.3, precision   # 1.5x the base rate of planted errors (0.2); measured 0.36
    assert recall > 0.3, recall


def test_entropy_filter_and_pseudo_labels():
    weak = np.array([0.5, 0.9, 0.1, 0.55, 0.8])
    assert entropy_keep(weak, drop_fraction=0.4).tolist() == [False, True, True, False, True]
    student = np.array([0.95, 0.6, 0.05, 0.45, 0.7, 0.3])
    targets, train, _ = pseudo_labels(student, np.full(6, 0.5), seed=0, keep=0.5, supervised_share=0.0)
    assert train.tolist() == [True, False, True, False, True, True]  # most confident half (rounded up) per class
    assert targets[train].tolist() == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ConfigError):
        pseudo_labels(student, student, seed=0, keep=0.0)


def test_specs_and_methods_parse():
    assert parse_supervisor("tfidf+minilm+smollm2@ds").models == ("tfidf", "minilm", "smollm2")
    assert parse_supervisor("prompt:gemma3").kind == "prompt"
    assert parse_method("logconf+filter+self3").self_rounds == 3
    with pytest.raises(ConfigError, match="at least two models"):
        parse_supervisor("minilm@mean")


def test_few_shot_prompt_and_soft_self_training_parse(sst2_small, cache_dir):
    spec = parse_supervisor("prompt4:smollm2")
    assert spec.kind == "prompt" and spec.shots == 4
    with pytest.raises(ConfigError, match="must be even"):
        parse_supervisor("prompt3:smollm2")
    method = parse_method("xent+softself2")
    assert method.self_rounds == 2 and method.soft_pseudo_labels
    targets, train, _ = pseudo_labels(np.array([0.9, 0.2, 0.7, 0.4]), np.full(4, 0.5), seed=0, keep=1.0,
                                   supervised_share=0.0, soft=True)
    np.testing.assert_allclose(targets, [0.9, 0.2, 0.7, 0.4], rtol=1e-6)
    template, words = get_spec("sst2").prompt
    few = PromptedLM(model="smollm2", template=template, label_words=words, cache=cache_dir, progress=False,
                     examples=((sst2_small.texts[100], int(sst2_small.labels[100])),
                               (sst2_small.texts[101], int(sst2_small.labels[101]))))
    assert few.raw_log_odds(sst2_small.texts[:4]).shape == (4,)


def test_anchored_batches_hold_the_minimum_share_of_supervisor_labels():
    from w2slab.training.heads import epoch_batches

    anchor = np.zeros(400, dtype=bool)
    anchor[:20] = True  # 5% supervisor-labelled: too few for a 30% minimum, so they are oversampled
    batches = epoch_batches(np.random.default_rng(0), 400, 64, anchor, 0.3)
    shares = [anchor[b].mean() for b in batches]
    assert min(shares) >= 0.3 - 1 / 64
    assert set(np.concatenate(batches)[~anchor[np.concatenate(batches)]]) == set(range(20, 400))  # all others once
    plain = epoch_batches(np.random.default_rng(0), 400, 64)
    assert sorted(np.concatenate(plain)) == list(range(400)) and min(anchor[b].mean() for b in plain) < 0.3
    with pytest.raises(ConfigError, match="no example is an anchor"):
        epoch_batches(np.random.default_rng(0), 10, 4, np.zeros(10, dtype=bool), 0.2)


def test_mixup_trains_a_real_probe_deterministically(minilm_sst2):
    from w2slab.training import HEADS

    X, y = minilm_sst2
    train, test = slice(0, 400), slice(400, 600)
    fit = lambda mixup, seed: HEADS.get("logistic")(epochs=15, mixup=mixup, seed=seed).fit(X[train], y[train])
    mixed = fit(0.4, 0).predict_proba(X[test])[:, 1]
    assert np.array_equal(mixed, fit(0.4, 0).predict_proba(X[test])[:, 1])  # same seed, same numbers
    assert not np.array_equal(mixed, fit(0.0, 0).predict_proba(X[test])[:, 1])  # mixup changes training
    assert ((mixed >= 0.5) == y[test]).mean() > 0.7


def test_method_tables_carry_parameters_and_reject_bad_ones():
    from w2slab.supervisors.refine import make_method

    m = make_method({"name": "lc", "method": "logconf+softself2+mixup", "aux_coef": 0.75,
                     "min_supervised_per_batch": 0.3})
    assert (m.name, m.loss, m.loss_kwargs, m.self_rounds, m.soft_pseudo_labels) == ("lc", "logconf",
                                                                                     {"aux_coef": 0.75}, 2, True)
    assert m.mixup > 0 and m.min_supervised_per_batch == 0.3
    assert make_method({"method": "xent", "self_keep": 0.4}).name == "xent,self_keep=0.4"
    assert m.key() != make_method("logconf+softself2+mixup").key()
    for bad, message in (({"method": "logconf", "aux_coef": 2}, "aux_coef"), ({"method": "xent", "gamma": 1},
                         "no parameter"), ({"method": "xent", "self_keep": 0}, "out of range"), ({"name": "x"}, "needs")):
        with pytest.raises(ConfigError, match=message):
            make_method(bad)
