"""The LM layer on real models: llama.cpp in-process, transformers, and a real llama.cpp HTTP server process."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from w2slab.errors import ConfigError, ModelNotInstalledError
from w2slab.lm import GenerationCache, GenerationRequest, ScoreRequest, generate_in_chunks, load_lm
from w2slab.lm.completions import LMServerError
from w2slab.models.zoo import join_parts

CHAT = ({"role": "user", "content": "Name a fruit."},)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """SmolLM2 on llama.cpp in-process, with a fresh generation cache of its own."""
    lm = load_lm("smollm2", backend="llamacpp", cache=tmp_path_factory.mktemp("lmcache"), parallel=2)
    yield lm
    lm.close()


def test_llamacpp_cache_counts_calls_and_reuses_samples_when_n_grows(llama):
    request = GenerationRequest(messages=CHAT, n=2, temperature=0.9, max_tokens=12, seed=7)
    first = llama.generate([request])[0]
    assert llama.backend_calls == 2 and len({g.text for g in first}) == 2
    more = llama.generate([GenerationRequest(messages=CHAT, n=4, temperature=0.9, max_tokens=12, seed=7)])[0]
    assert llama.backend_calls == 4  # only samples 2 and 3 were generated
    assert [g.text for g in more[:2]] == [g.text for g in first]
    again = llama.generate([request])[0]
    assert llama.backend_calls == 4 and again == first
    other_seed = llama.generate([GenerationRequest(messages=CHAT, n=2, temperature=0.9, max_tokens=12, seed=8)])[0]
    assert [g.text for g in other_seed] != [g.text for g in first]


def test_a_prompt_repeated_in_one_batch_is_generated_once(llama):
    request = GenerationRequest(prompt="Once upon a midnight", n=2, temperature=0.9, max_tokens=6, seed=21)
    before = llama.backend_calls
    a, b = llama.generate([request, request])
    assert a == b and len(a) == 2 and llama.backend_calls == before + 2
    before = llama.backend_calls
    pair = ScoreRequest(prompt="2 + 2 =", continuation=" 4")
    s1, s2 = llama.loglikelihood([pair, pair])
    assert s1 == s2 and llama.backend_calls <= before + 1


def test_llamacpp_same_seed_same_text_without_cache(llama):
    request = GenerationRequest(prompt="Once upon a time", n=3, temperature=1.0, max_tokens=16, seed=3)
    cached = llama.generate([request])[0]
    fresh = load_lm("smollm2", backend="llamacpp", cache=False, parallel=2)
    assert [g.text for g in fresh.generate([request])[0]] == [g.text for g in cached]
    greedy = fresh.generate([GenerationRequest(prompt="The capital of France is", n=3, max_tokens=4)])[0]
    assert len({g.text for g in greedy}) == 1 and "Paris" in greedy[0].text
    assert greedy[0].prompt_tokens > 0 and greedy[0].completion_tokens == 4 and greedy[0].finish_reason == "length"


def test_generate_in_chunks_returns_the_one_calls_samples_in_small_calls():
    sampled = GenerationRequest(prompt="Once upon a time", n=5, temperature=1.0, max_tokens=8, seed=11)
    greedy = GenerationRequest(prompt="The capital of France is", max_tokens=4)
    with load_lm("smollm2", backend="llamacpp", cache=False, parallel=1) as lm:  # one slot: batch-independent
        whole = lm.generate([sampled, greedy])
        sizes = []
        generate = lm.generate
        lm.generate = lambda requests: sizes.append(sum(r.n for r in requests)) or generate(requests)
        chunked = generate_in_chunks(lm, [sampled, greedy], chunk=2)
    assert [[g.text for g in s] for s in chunked] == [[g.text for g in s] for s in whole]
    assert sizes == [2, 2, 2]  # samples 0-1, 2-3, then sample 4 with the greedy request


def test_stop_sequences_and_context_limit(llama):
    out = llama.generate([GenerationRequest(prompt="1, 2, 3, 4,", max_tokens=20, stop=(" 7",))])[0][0]
    assert " 7" not in out.text and "6" in out.text and out.finish_reason == "stop"
    small = load_lm("smollm2", backend="llamacpp", cache=False, context=32, parallel=1)
    with pytest.raises(ConfigError, match="exceeds the context"):
        small.generate([GenerationRequest(prompt="word " * 40, max_tokens=4)])


def test_scores_agree_between_llamacpp_and_transformers(llama, cache_dir):
    pairs = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
             ("2 + 2 =", " 4"), ("2 + 2 =", " 5")]
    requests = [ScoreRequest(prompt=c, continuation=x) for c, x in pairs]
    fast = llama.loglikelihood(requests)
    hf = load_lm("smollm2", backend="transformers", cache=cache_dir)
    exact = hf.loglikelihood(requests)
    assert fast[0].logprob > fast[1].logprob and exact[0].logprob > exact[1].logprob
    assert fast[2].logprob > fast[3].logprob and exact[2].logprob > exact[3].logprob
    for a, b in zip(fast, exact):  # same model, Q4 vs dequantised fp32: close, not equal
        assert a.exact and abs(a.logprob - b.logprob) < 0.5
    calls = hf.backend_calls
    hf.loglikelihood(requests)
    assert hf.backend_calls == calls


def test_scoring_where_the_greedy_token_is_half_an_emoji(llama, cache_dir):
    """llama.cpp returns no log-probs when the token it samples starts an unfinished UTF-8 character; the score
    asks again with a forced plain token and still agrees with transformers (this crashed an oversight run)."""
    context = "I love pizza " + "\U0001F600" * 7
    prefix = llama.lm._tokenize(context)
    raw = llama.lm._complete({"prompt": prefix, "max_tokens": 1, "temperature": 0.0, "logprobs": 5})
    assert raw["choices"][0]["logprobs"] is None  # the server behaviour this test is about
    requests = [ScoreRequest(prompt=context, continuation=x) for x in ("\U0001F600", " and pasta")]
    fast = llama.loglikelihood(requests)
    exact = load_lm("smollm2", backend="transformers", cache=cache_dir).loglikelihood(requests)
    assert fast[0].logprob > fast[1].logprob
    for a, b in zip(fast, exact):
        assert a.exact and abs(a.logprob - b.logprob) < 0.5


def test_transformers_backend_generates_with_chat_template_and_seeds(cache_dir):
    hf = load_lm("smollm2", backend="transformers", cache=False)
    rendered = hf.render(GenerationRequest(messages=CHAT))
    assert rendered.startswith("<|im_start|>") and rendered.endswith("<|im_start|>assistant\n")
    request = GenerationRequest(messages=CHAT, n=3, temperature=0.9, max_tokens=10, seed=5)
    a, b = hf.generate([request])[0], hf.generate([request])[0]
    assert a == b and len({g.text for g in a}) > 1
    tail = hf.generate([GenerationRequest(messages=CHAT, n=2, temperature=0.9, max_tokens=10, seed=5, first_sample=1)])[0]
    assert tail[0] == a[1] and tail[1] == a[2]  # sample i does not depend on how many were asked for
    with pytest.raises(ConfigError, match="no chat template"):
        load_lm("gemma3", backend="transformers", cache=False).render(GenerationRequest(messages=CHAT))


def test_qwen_coder_answers_on_llamacpp(cache_dir):
    qwen = load_lm("qwen-coder-0.5b", backend="llamacpp", cache=cache_dir, parallel=1)
    answer = qwen.generate([GenerationRequest(
        messages=({"role": "user", "content": "What is 17 + 25? Reply with the number only."},), max_tokens=8)])
    assert "42" in answer[0][0].text
    a, b = qwen.loglikelihood([ScoreRequest(prompt="def add(a, b):\n    return a", continuation=" + b"),
                               ScoreRequest(prompt="def add(a, b):\n    return a", continuation=" * b")])
    assert a.logprob > b.logprob


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(cache_dir):
    """A real `w2slab serve` process (llama.cpp, SmolLM2) on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "w2slab.cli", "serve", "--model", "smollm2", "--port", str(port),
                             "--parallel", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert "serving smollm2" in line, line
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)


def test_openai_backend_against_a_real_server_matches_in_process(server, llama, tmp_path):
    remote = load_lm(None, backend="openai", base_url=server, cache=tmp_path)
    request = GenerationRequest(messages=CHAT, n=2, temperature=0.9, max_tokens=12, seed=11)
    assert [g.text for g in remote.generate([request])[0]] == [g.text for g in llama.generate([request])[0]]
    assert remote.backend_calls == 2
    remote.generate([request])
    assert remote.backend_calls == 2  # the second time from the cache
    paris, london = remote.loglikelihood([ScoreRequest(prompt="The capital of France is", continuation=" Paris"),
                                          ScoreRequest(prompt="The capital of France is", continuation=" London")])
    assert paris.logprob > london.logprob
    with pytest.raises(ConfigError, match="context"):
        load_lm(None, backend="openai", base_url=server, cache=False).generate(
            [GenerationRequest(prompt="word " * 3000, max_tokens=4)])


def test_openai_backend_errors_are_bounded_and_clear():
    start = time.perf_counter()
    with pytest.raises(LMServerError, match="cannot reach"):
        load_lm(None, backend="openai", base_url=f"http://127.0.0.1:{_free_port()}/v1", cache=False, max_retries=1,
                timeout=2)
    assert time.perf_counter() - start < 15

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):
            self._reply(b'{"data": [{"id": "m", "object": "model"}], "object": "list"}')

        def do_POST(self):
            self._reply(b"<html>not json" if "completions" in self.path else b"{}")

        def _reply(self, body):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        lm = load_lm(None, backend="openai", base_url=f"http://127.0.0.1:{httpd.server_port}/v1", cache=False,
                     max_retries=0, timeout=5)
        with pytest.raises(LMServerError, match="malformed"):
            lm.generate([GenerationRequest(prompt="hi", max_tokens=2)])
    finally:
        httpd.shutdown()


def _write_samples(args):
    path, worker = args
    from w2slab.lm import Generation

    store = GenerationCache(path)
    for batch in range(20):  # overlapping keys: every worker writes keys 0..199, in its own order
        keys = [f"k{(batch * 10 + i + worker * 50) % 200}" for i in range(10)]
        store.put_generations("m", [(k, Generation(k, 1, 1, "stop")) for k in keys])
    store.close()


def test_generation_cache_four_writers_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "gen.sqlite"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_samples, [(path, w) for w in range(4)])
    store = GenerationCache(path)
    assert store.counts()["generations"] == 200
    got = store.get_generations([f"k{i}" for i in range(200)])
    assert len(got) == 200 and all(g.text == k for k, g in got.items())


def test_joined_parts_with_a_wrong_sha256_are_refused(tmp_path):
    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(os.urandom(1000))
        parts.append(part)
    target = tmp_path / "models" / "x.gguf"
    with pytest.raises(ModelNotInstalledError, match="do not match"):
        join_parts(parts, target, sha256="0" * 64, size=2000)
    assert not target.exists() and not list(target.parent.glob(".tmp-*"))
    import hashlib

    good = hashlib.sha256(parts[0].read_bytes() + parts[1].read_bytes()).hexdigest()
    assert join_parts(parts, target, sha256=good, size=2000).stat().st_size == 2000


def run_cli(*args, cache):
    env = {**os.environ, "W2SLAB_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "w2slab.cli", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompts")
    good = folder / "good.jsonl"
    good.write_text('{"prompt": "The capital of France is"}\n{"messages": [{"role": "user", "content": "Hi"}]}\n')
    (folder / "empty.jsonl").write_text("\n")
    (folder / "bad.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    (folder / "both.jsonl").write_text('{"prompt": "a", "messages": []}\n')
    (folder / "long.jsonl").write_text(json.dumps({"prompt": "word " * 100}) + "\n")
    return folder


BAD = [
    (["--prompts", "good.jsonl", "--model", "smollm2", "--backend", "vllm"], "invalid choice"),
    (["--prompts", "good.jsonl", "--model", "nosuch"], "nosuch"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--n", "0"], "--n"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--temperature", "-1"], "--temperature"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--top-p", "0"], "--top-p"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--top-p", "1.5"], "--top-p"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--max-tokens", "-3"], "--max-tokens"),
    (["--prompts", "empty.jsonl", "--model", "smollm2"], "holds no prompt"),
    (["--prompts", "bad.jsonl", "--model", "smollm2"], "line 2"),
    (["--prompts", "both.jsonl", "--model", "smollm2"], "exactly one"),
    (["--prompts", "missing.jsonl", "--model", "smollm2"], "does not exist"),
    (["--prompts", ".", "--model", "smollm2"], "is a directory"),
    (["--prompts", "good.jsonl", "--backend", "openai"], "--base-url"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--adapter", "x"], "not a LoRA adapter folder"),
    (["--prompts", "good.jsonl", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--adapter", "x"],
     "--adapter"),
    (["--prompts", "good.jsonl", "--model", "smollm2", "--out", "."], "is a directory"),
    (["--prompts", "long.jsonl", "--model", "smollm2", "--context", "32", "--parallel", "1"], "exceeds the context"),
]


@pytest.mark.parametrize("args,says", BAD, ids=[" ".join(a[2:]) or a[1] for a, _ in BAD])
def test_generate_bad_input_is_one_line_exit_2_and_caches_nothing(args, says, prompts, tmp_path):
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "w2slab.cli", "generate", *args], capture_output=True, text=True,
                          cwd=prompts, env={**os.environ, "W2SLAB_CACHE_DIR": str(cache)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert not (cache / "lm").exists() and done.stdout == ""


def test_generate_and_score_commands_write_jsonl(prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    done = run_cli("generate", "--model", "smollm2", "--prompts", str(prompts / "good.jsonl"), "--n", "2",
                   "--temperature", "0.7", "--max-tokens", "6", "--out", str(out), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["samples"]) == 2 for r in rows) and "messages" in rows[1]
    assert "4 generated" in done.stderr
    again = run_cli("generate", "--model", "smollm2", "--prompts", str(prompts / "good.jsonl"), "--n", "2",
                    "--temperature", "0.7", "--max-tokens", "6", "--out", str(out), cache=tmp_path / "c")
    assert "0 generated" in again.stderr
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "2 + 2 =", "continuation": " 4"}\n{"prompt": "2 + 2 =", "continuation": " 5"}\n')
    scored = run_cli("score", "--model", "smollm2", "--pairs", str(pairs), cache=tmp_path / "c")
    four, five = [json.loads(line) for line in scored.stdout.splitlines()]
    assert four["logprob"] > five["logprob"] and four["n_tokens"] >= 1 and four["exact"]
    listing = run_cli("cache", "ls", cache=tmp_path / "c")
    assert "lm/generations" in listing.stdout
    trimmed = run_cli("cache", "gc", "--stage", "generations", cache=tmp_path / "c")
    assert "6 generation-cache entries" in trimmed.stdout  # 4 samples + 2 scores
