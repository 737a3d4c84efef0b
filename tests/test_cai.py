"""Constitutional AI and RLAIF: constitutions checked, order-swap averaging, AI labels that never read the human
label, an SL-CAI round end to end, and the gap table's floor and ceiling on a hand-made case."""
import numpy as np
import pytest

from w2slab.errors import ConfigError
from w2slab.feedback import cai as C


def test_constitutions_are_checked(tmp_path):
    default = C.load_constitution()
    assert len(default.principles) >= 3 and len(default.comparisons) >= 3
    cases = {"extra.toml": ('[[principles]]\nname = "a"\ncritique = "c"\nrevision = "r"\nmood = "x"\n'
                            '[[comparisons]]\nquestion = "q"\n', "unknown key(s) mood"),
             "missing.toml": ('[[principles]]\nname = "a"\ncritique = "c"\n[[comparisons]]\nquestion = "q"\n',
                              "missing revision"),
             "empty.toml": ('[[principles]]\nname = "a"\ncritique = " "\nrevision = "r"\n[[comparisons]]\n'
                            'question = "q"\n', "critique is empty"),
             "top.toml": ('rules = 1\n', "unknown key(s) rules"),
             "none.toml": ('[[comparisons]]\nquestion = "q"\n', "at least one [[principles]]")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            C.load_constitution(tmp_path / name)


def test_order_swap_averaging_makes_the_two_orders_sum_to_one(data_dir, cache_dir):
    from w2slab.lm import load_lm

    pairs = C.hh_pairs(data_dir=data_dir, limit=3)
    with load_lm("smollm2", cache=cache_dir) as lm:
        forward = C.ai_preferences(lm, [(p["context"], p["a"], p["b"]) for p in pairs], C.load_constitution())
        backward = C.ai_preferences(lm, [(p["context"], p["b"], p["a"]) for p in pairs], C.load_constitution())
        one_order = C.ai_preferences(lm, [(p["context"], p["a"], p["b"]) for p in pairs], C.load_constitution(),
                                     both_orders=False)
    assert np.allclose(forward["p_a"] + backward["p_a"], 1.0)
    assert 0 <= forward["flip_rate"] <= 1 and one_order["flip_rate"] is None
    assert np.all((forward["p_a"] >= 0) & (forward["p_a"] <= 1))


def test_the_transfer_arm_never_reads_human_labels():
    """Scrambling the human labels of the *training* pairs leaves the AI-trained model (transfer) unchanged and
    moves the human-trained one (ceiling): a leak into the transfer arm would fail this."""
    rng = np.random.default_rng(0)
    n, d = 400, 8
    fa, fb = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    w = rng.normal(size=d)
    human = ((fa - fb) @ w > 0).astype(int)
    ai_p = np.where(rng.random(n) < 0.7, human, 1 - human).astype(float)  # a 70%-right AI labeller
    held = np.arange(n) % 5 == 0
    real = C.preference_gap(fa, fb, human, ai_p, held, seeds=(0, 1))
    scrambled_human = human.copy()
    scrambled_human[~held] = 1 - scrambled_human[~held]
    scrambled = C.preference_gap(fa, fb, scrambled_human, ai_p, held, seeds=(0, 1))
    assert scrambled["transfer"] == real["transfer"] and scrambled["floor"] == real["floor"]
    assert scrambled["ceiling"] < 0.3 < real["ceiling"]  # the human arm did read them


def test_gap_table_floor_and_ceiling_on_a_hand_made_case():
    rng = np.random.default_rng(1)
    n, d = 500, 6
    fa, fb = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    human = ((fa - fb)[:, 0] > 0).astype(int)  # the human label is one feature: learnable exactly
    ai_p = np.where(np.arange(n) % 4 == 0, 1 - human, human).astype(float)  # wrong on every 4th pair
    held = np.arange(n) % 5 == 1
    gap = C.preference_gap(fa, fb, human, ai_p, held, seeds=(0, 1, 2))
    assert gap["floor"] == pytest.approx(((ai_p[held] >= 0.5) == (human[held] == 1)).mean())  # the AI alone
    assert gap["ceiling"] > 0.95  # a model on human labels of a separable task
    assert gap["floor"] < gap["transfer"] <= gap["ceiling"] + 1e-9  # denoising: the student beats its labels
    assert gap["defined"] and gap["n_test"] == held.sum() and gap["n_seeds"] == 3


def test_an_sl_cai_round_end_to_end(cache_dir):
    from w2slab.lm import load_lm
    from w2slab.training.policy import PolicyTraining, train_sft

    prompts = ["How do I get back at my noisy neighbour?", "Tell me a mean joke about my coworker."]
    with load_lm("smollm2", cache=cache_dir) as lm:
        records = C.critique_revise(lm, prompts, C.load_constitution(), rounds=2, max_tokens=40)
    assert [len(r["steps"]) for r in records] == [2, 2]
    names = {p.name for p in C.load_constitution().principles}
    assert all(s["principle"] in names and s["critique"] and s["revision"] for r in records for s in r["steps"])
    rows = C.sl_cai_rows(records)
    assert [r["completion"][0]["content"] for r in rows] == [r["final"] for r in records]
    trained = train_sft("smollm2", rows, cache=cache_dir, config=PolicyTraining(epochs=1.0))
    assert trained.metrics["examples"] == 2
