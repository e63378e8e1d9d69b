"""The two engines for real: vLLM in-process (session `vllm_engine`) and a real vLLM server (`vllm_server`)."""

from __future__ import annotations

import http.server
import sys
import threading
import time
import urllib.request
from collections import defaultdict

import pytest

from distill.engines import EngineConfig, Request, SamplingConfig, make_engine
from distill.engines.chat import build_messages
from distill.errors import UserError

pytestmark = pytest.mark.vllm

QUESTIONS = ["Write a short poem about the sea.", "Explain why the sky is blue.", "Describe a cat in detail."]


def _requests(questions=QUESTIONS) -> list[Request]:
    return [Request(key=f"q{i}", messages=build_messages(q)) for i, q in enumerate(questions)]


def _collect(engine, requests, sampling) -> dict[tuple[str, int], object]:
    samples = {}
    for sample in engine.generate(requests, sampling):
        assert (sample.key, sample.index) not in samples, "a sample came back twice"
        samples[(sample.key, sample.index)] = sample
    return samples


def test_vllm_engine_seed_n_samples_and_max_tokens(vllm_engine):
    sampling = SamplingConfig(n=3, temperature=0.8, top_p=0.95, max_tokens=24, seed=123)
    first = _collect(vllm_engine, _requests(), sampling)
    assert sorted(first) == [(f"q{i}", j) for i in range(3) for j in range(3)]
    again = _collect(vllm_engine, _requests(), sampling)
    assert {k: s.text for k, s in first.items()} == {k: s.text for k, s in again.items()}  # same seed, same samples
    other = _collect(vllm_engine, _requests(), SamplingConfig(n=3, temperature=0.8, max_tokens=24, seed=124))
    assert {k: s.text for k, s in first.items()} != {k: s.text for k, s in other.items()}
    by_prompt = defaultdict(set)
    for (key, _), sample in first.items():
        by_prompt[key].add(sample.text)
    assert all(len(texts) > 1 for texts in by_prompt.values()), by_prompt  # n samples differ at T > 0
    # resume-style requests: only the missing sample indices come back
    partial = _collect(vllm_engine, [Request(key="q0", messages=build_messages(QUESTIONS[0]), sample_indices=[1, 2])],
                       sampling)
    assert sorted(partial) == [("q0", 1), ("q0", 2)]
    # a low max_tokens cuts every sample: finish_reason length, exactly max_tokens tokens
    short = _collect(vllm_engine, _requests(), SamplingConfig(n=2, temperature=0.6, max_tokens=3, seed=0))
    assert {s.finish_reason for s in short.values()} == {"length"}
    assert {s.completion_tokens for s in short.values()} == {3}


def test_vllm_engine_token_counts_match_the_tokenizer(vllm_engine, bundled_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    requests = _requests(QUESTIONS + ["What is 2 + 3? Reply with just the number.", "What is 4 + 4? Reply with just "
                                      "the number."])
    samples = _collect(vllm_engine, requests, SamplingConfig(n=2, temperature=0.6, max_tokens=48, seed=5))
    messages = {r.key: r.messages for r in requests}
    for (key, _), sample in samples.items():
        prompt_ids = tokenizer.apply_chat_template(messages[key], add_generation_prompt=True, return_dict=True)
        assert sample.prompt_tokens == len(prompt_ids["input_ids"])
        text_ids = tokenizer(sample.text, add_special_tokens=False).input_ids
        # the eos token ends a "stop" sample but is not part of the text
        assert sample.completion_tokens == len(text_ids) + (sample.finish_reason == "stop"), sample
    assert any(s.finish_reason == "stop" for s in samples.values())
    fmt = vllm_engine.conversation_format()
    assert fmt["system_prompt"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert fmt["chat_template"] == tokenizer.chat_template and fmt["prefill"] is None


def test_openai_engine_matches_vllm_engine_at_temperature_zero(vllm_engine, vllm_server):
    engine = make_engine(EngineConfig(engine="openai", model=vllm_server.model, base_url=vllm_server.base_url,
                                      max_concurrency=4))
    try:
        sampling = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_tokens=32)
        local = _collect(vllm_engine, _requests(), sampling)
        served = _collect(engine, _requests(), sampling)
        assert sorted(local) == sorted(served)
        for key in local:
            assert served[key].text == local[key].text
            assert served[key].finish_reason == local[key].finish_reason
            assert (served[key].prompt_tokens, served[key].completion_tokens) == (
                local[key].prompt_tokens, local[key].completion_tokens)
        # the local tokenizer (the served model is a local dir) records the same conversation format
        fmt, reference = engine.conversation_format(), vllm_engine.conversation_format()
        assert {k: fmt[k] for k in ("chat_template_sha256", "system_prompt", "prefill")} == {
            k: reference[k] for k in ("chat_template_sha256", "system_prompt", "prefill")}
        with pytest.raises(UserError, match="does not serve"):
            make_engine(EngineConfig(engine="openai", model="no-such-model", base_url=vllm_server.base_url))
    finally:
        engine.close()


class _FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards to the real server, but first answers each POST with the next planned failure."""

    def __init__(self, upstream: str, plan: list[str]):
        self.upstream, self.plan, self.seen = upstream, list(plan), []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def handle_error(self, request, client_address):
        # The "slow" answer is written after the client timed out and left: a broken pipe is the plan. Printing
        # it (socketserver's default) would land, seconds later, in the stderr of whichever test runs then.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _forward(self, body: bytes | None):
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def do_GET(self):
        self._forward(None)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            action = self.server.plan.pop(0) if self.server.plan else "ok"
            self.server.seen.append(action)
        if action in ("503", "429"):
            payload = b'{"error": {"message": "planned failure"}}'
            self.send_response(int(action))
            if action == "429":
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if action == "slow":
            time.sleep(3)  # longer than the client's timeout
        self._forward(body)


def test_openai_engine_retries_429_5xx_and_timeouts(vllm_server):
    proxy = _FlakyProxy(f"http://127.0.0.1:{vllm_server.port}", ["503", "429", "slow"])
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
    try:
        engine = make_engine(EngineConfig(engine="openai", model=vllm_server.model, base_url=base_url,
                                          max_concurrency=1, request_timeout_s=1.5, max_retries=4,
                                          retry_backoff_s=0.05))
        samples = _collect(engine, _requests(QUESTIONS[:1]), SamplingConfig(n=1, temperature=0, max_tokens=8))
        assert list(samples) == [("q0", 0)] and samples[("q0", 0)].completion_tokens > 0
        assert proxy.seen[:4] == ["503", "429", "slow", "ok"]
        engine.close()
        proxy.plan = ["503"] * 5
        stubborn = make_engine(EngineConfig(engine="openai", model=vllm_server.model, base_url=base_url,
                                            max_concurrency=1, max_retries=2, retry_backoff_s=0.01))
        with pytest.raises(UserError, match="after 2 retries"):
            _collect(stubborn, _requests(QUESTIONS[:1]), SamplingConfig(n=1, temperature=0, max_tokens=8))
        stubborn.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
