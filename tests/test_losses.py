"""Losses against values computed by hand."""
import math

import numpy as np

import pytest
import torch

from w2slab.errors import ConfigError
from w2slab.training.losses import AuxiliaryConfidence, ProductLoss, SoftCrossEntropy, make_loss


def bce(p, t):
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_soft_xent_matches_hand_computation():
    logits = torch.tensor([0.0, 2.0, -1.0])
    targets = torch.tensor([0.5, 0.9, 0.2])
    got = SoftCrossEntropy()(logits, targets, progress=0.0, prior=0.5)
    want = [bce(0.5, 0.5), bce(sigmoid(2.0), 0.9), bce(sigmoid(-1.0), 0.2)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)


def test_logconf_warmup_is_linear_and_reaches_target():
    loss = AuxiliaryConfidence(aux_coef=0.5, warmup_frac=0.2)
    assert [loss.coefficient(p) for p in (0.0, 0.05, 0.1, 0.2, 0.7, 1.0)] == pytest.approx(
        [0.0, 0.125, 0.25, 0.5, 0.5, 0.5])


def test_logconf_hand_computed_with_balance_threshold():
    # 4 items, prior 0.5 -> threshold at the median of student probs: the two largest become 1.
    logits = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    targets = torch.tensor([0.8, 0.8, 0.2, 0.2])  # weak labels disagree with the student
    loss = AuxiliaryConfidence(aux_coef=0.5, warmup_frac=0.2)
    got = loss(logits, targets, progress=0.1, prior=0.5)  # coefficient 0.25
    hardened = [0, 0, 1, 1]
    want = [bce(sigmoid(z), 0.75 * t + 0.25 * h) for z, t, h in zip([-2, -0.5, 0.5, 2], [0.8, 0.8, 0.2, 0.2], hardened)]
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_logconf_threshold_follows_weak_class_balance():
    # soft weak labels with batch mean 0.25 -> only the top quarter of student predictions is hardened to 1
    logits = torch.tensor([-3.0, -1.0, 1.0, 3.0])
    loss = AuxiliaryConfidence(aux_coef=1.0, warmup_frac=0.0)
    got = loss(logits, torch.tensor([0.1, 0.2, 0.3, 0.4]), progress=1.0, prior=0.9)
    want = [bce(sigmoid(z), h) for z, h in zip([-3, -1, 1, 3], [0, 0, 0, 1])]
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_product_loss_hand_computed():
    logits = torch.tensor([1.0])
    targets = torch.tensor([0.3])
    got = ProductLoss(alpha=1.0, beta=1.0, warmup_frac=0.0)(logits, targets, progress=0.5, prior=0.5)
    s = sigmoid(1.0)
    t = 0.3 * s / (0.3 * s + 0.7 * (1 - s))
    assert got.item() == pytest.approx(bce(s, t), rel=1e-5)
    # at the start of a warm-up the product loss is plain imitation
    start = ProductLoss(warmup_frac=0.2)(logits, targets, progress=0.0, prior=0.5)
    assert start.item() == pytest.approx(bce(s, 0.3), rel=1e-5)


def test_make_loss_rejects_unknown_params_and_bad_values():
    with pytest.raises(ConfigError, match="no parameter"):
        make_loss("logconf", {"aux": 0.3})
    with pytest.raises(ConfigError, match="aux_coef"):
        make_loss("logconf", {"aux_coef": 1.5})
    assert make_loss("product", {"beta": 0.5}).beta == 0.5


def test_logconf_thresholds_at_the_batch_mean_of_soft_weak_labels():
    import torch

    from w2slab.training.losses import AuxiliaryConfidence, AuxiliaryConfidenceGlobalPrior

    g = torch.Generator().manual_seed(0)
    targets = (0.45 + 0.2 * torch.rand(400, generator=g))  # biased and unconfident: hardened share >> mean
    assert abs(float(targets.mean()) - 0.55) < 0.02 and float((targets >= 0.5).float().mean()) > 0.7
    logits = torch.randn(400, generator=g)
    hard_prior = float((targets >= 0.5).float().mean())
    reference, variant = AuxiliaryConfidence(aux_coef=1.0, warmup_frac=0.0), AuxiliaryConfidenceGlobalPrior(
        aux_coef=1.0, warmup_frac=0.0)

    def hardened_share(loss):  # with a = 1 the target is the hardened prediction: recover its class-1 share
        per_example = loss(logits, targets, progress=1.0, prior=hard_prior)
        as_one = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(400), reduction="none")
        return float(torch.isclose(per_example, as_one).float().mean())

    assert abs(hardened_share(reference) - float(targets.mean())) < 0.01   # the reference rule
    assert abs(hardened_share(variant) - hard_prior) < 0.01                 # the earlier rule, under its own name


def test_logconf_refuses_micro_batches(data_dir):
    from w2slab.errors import ConfigError
    from w2slab.runner.config import ExperimentConfig
    from w2slab.training.finetune import FineTuner

    with pytest.raises(ConfigError, match="ft_grad_accum"):
        ExperimentConfig(student_mode="lora", ft_batch_size=16, ft_grad_accum=4, losses=("logconf",)).validate()
    texts = [f"text {i}" for i in range(32)]
    with pytest.raises(ConfigError, match="whole batch"):
        FineTuner("minilm", loss="logconf", batch_size=16, grad_accum=4, epochs=1).fit(texts, np.full(32, 0.6))
