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


def test_a_sampled_answer_is_read_for_its_stated_letter_and_never_guessed():
    cases = {"Answer: A": "A", "B": "B", "(B) because it is kind": "B", "Response A is better.": "A",
             "I choose Option B.": "B", "The answer is **B**": "B", "Answer: A ... no. Answer: B": "B",
             "A man walked into a bar": None, "the answer is a tricky one": None, "Neither is good": None}
    assert {text: C.read_choice(text) for text in cases} == cases


def test_chain_of_thought_labels_still_sum_to_one_over_the_two_orders(data_dir, cache_dir):
    from w2slab.lm import load_lm

    pairs = C.hh_pairs(data_dir=data_dir, limit=2)
    with load_lm("smollm2", cache=cache_dir) as lm:
        forward = C.ai_preferences(lm, [(p["context"], p["a"], p["b"]) for p in pairs], C.load_constitution(),
                                   cot=True, cot_tokens=24)
        backward = C.ai_preferences(lm, [(p["context"], p["b"], p["a"]) for p in pairs], C.load_constitution(),
                                    cot=True, cot_tokens=24)
        plain = C.ai_preferences(lm, [(p["context"], p["a"], p["b"]) for p in pairs], C.load_constitution())
    assert np.allclose(forward["p_a"] + backward["p_a"], 1.0)  # the same four views, reasoned once each (greedy)
    assert len(forward["reasoning"]) == 2 and all(isinstance(r, str) for r in forward["reasoning"])
    assert not np.allclose(forward["p_a"], plain["p_a"])  # the letter is read after the reasoning, not before
    assert plain["reasoning"] is None and plain["unparseable"] is None


def test_sampled_choices_give_shares_of_answers_and_count_the_unreadable(data_dir, cache_dir):
    from w2slab.lm import load_lm

    pairs = C.hh_pairs(data_dir=data_dir, limit=2)
    triples = [(p["context"], p["a"], p["b"]) for p in pairs]
    with load_lm("qwen-coder-0.5b", cache=cache_dir) as lm:
        first = C.ai_preferences(lm, triples, C.load_constitution(), choice="sampled", samples=4, seed=3)
        again = C.ai_preferences(lm, triples, C.load_constitution(), choice="sampled", samples=4, seed=3)
    assert np.array_equal(first["p_a"], again["p_a"])  # same seed, same labels
    assert 0 <= first["unparseable"] <= 4  # views (2 pairs x 2 orders) without one readable letter
    # every view is a share of 4 answers (or 0.5 when none was readable); a pair averages its two views
    assert np.all(np.isin(np.round(first["p_a"] * 8), np.arange(9)))


def test_a_server_without_log_probs_is_named_and_the_sampled_fallback_works():
    """A real HTTP server that, like some OpenAI-compatible servers (older Ollama), renders chat only inside its
    chat endpoint and returns no log-probs; it always answers "Answer: A"."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from w2slab.lm import load_lm

    class NoLogprobs(BaseHTTPRequestHandler):
        def do_GET(self):
            self._reply(200, {"object": "list", "data": [{"id": "judge", "object": "model", "created": 0,
                                                           "owned_by": "me"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/chat/completions":
                return self._reply(404, {"error": {"message": "not found"}})
            self._reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "judge",
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": "Answer: A"}}],
                              "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), NoLogprobs)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    triples = [("Human: hi", "Hello! How can I help?", "Go away.")]
    try:
        with load_lm(None, backend="openai", base_url=f"http://127.0.0.1:{httpd.server_port}/v1", cache=False,
                     max_retries=0, timeout=10) as lm:
            with pytest.raises(ConfigError, match='cannot score; use the sampled-choice fallback .choice = "sampled"'):
                C.ai_preferences(lm, triples, C.load_constitution())
            sampled = C.ai_preferences(lm, triples, C.load_constitution(), choice="sampled", samples=2)
    finally:
        httpd.shutdown()
    # "A" in both orders: P(A) = 1 shown first, 0 shown second → 0.5, and a position flip on the pair
    assert sampled["p_a"].tolist() == [0.5] and sampled["flip_rate"] == 1.0 and sampled["unparseable"] == 0


def test_the_finetune_pool_holds_no_measured_or_held_out_conversation(data_dir):
    everything = C.hh_pairs(data_dir=data_dir)
    measured = everything[:300]
    pool = C.finetune_pool(everything, measured)
    assert len(pool) > 1000
    assert not {p["context"] for p in pool} & {p["context"] for p in measured}
    assert not any(p["held_out"] for p in pool)
    rows = C.feedback_sft_rows(pool[:5], C.load_constitution())
    for pair, forward, swapped in zip(pool[:5], rows[::2], rows[1::2]):
        chosen = pair["a"] if pair["human"] == 1 else pair["b"]
        for row in (forward, swapped):  # the letter names the slot that holds the human-chosen reply
            letter = row["completion"][0]["content"]
            assert f"Response {letter}: {chosen}\n" in row["prompt"][0]["content"] + "\n"


def test_a_feedback_model_fine_tuned_on_human_labels_runs_end_to_end(data_dir, cache_dir, tmp_path):
    from w2slab.feedback.cai_run import CaiConfig, run_cai
    from w2slab.runner.store import ResultsStore

    config = CaiConfig(experiment="cai-ft", settings=({"model": "smollm2", "finetune": 4},
                                                      {"model": "smollm2", "n_pairs": 20}), n_pairs=30, seeds=(0, 1, 2))
    out = run_cai(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=cache_dir)
    tuned, first = out["settings"]
    assert tuned["label"] == "smollm2 ft4 ens1 swap" and tuned["finetune"]["pairs"] == 4
    assert tuned["finetune"]["metrics"]["examples"] == 8  # 4 pairs in both orders
    assert tuned["gap"]["n_test"] == out["pairs"]["held_out"] > 0
    assert first["label"] == "smollm2 ens1 swap first20" and first["agreement"]["n"] == 20
    assert first["gap"]["n_test"] < tuned["gap"]["n_test"]  # the held-out pairs among the first 20
    rows = ResultsStore(tmp_path / "results.sqlite").dataframe("summaries")
    assert sorted(rows["weak"]) == ["AI labels: smollm2 ens1 swap first20", "AI labels: smollm2 ft4 ens1 swap"]
    with pytest.raises(ConfigError, match="finetune = 5000: only"):
        run_cai(CaiConfig(settings=({"model": "smollm2", "finetune": 5000},), n_pairs=30), results_dir=tmp_path,
                data_dir=data_dir, cache_dir=cache_dir)
