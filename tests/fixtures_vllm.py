"""vLLM fixtures shared by the whole test session (each engine takes ~25-40 s to start on CPU).

Fixtures (names are stable: the eval tests use them too):

- ``vllm_engine`` (session): ONE in-process engine, ``distill.engines.vllm_engine.VllmEngine``, on the
  bundled SmolLM2-135M-Instruct (``bundled_model_dir``) with ``enforce_eager=True``, engine seed 0,
  ``max_model_len=2048``. Do not close it. ``engine.generate(requests, SamplingConfig(seed=S, ...))``
  reseeds it first, so a test's samples do not depend on what other tests ran before.
- ``vllm_server`` (session): ONE real ``python -m vllm.entrypoints.openai.api_server`` on the bundled
  model, bound to 127.0.0.1 on a free port, started on first use and stopped at the end of the session
  (SIGTERM to its process group, SIGKILL after 30 s). It yields a ``VllmServer``: ``base_url``
  (``http://127.0.0.1:PORT/v1``), ``model`` (the served model name = ``str(bundled_model_dir)``),
  ``port``, ``log`` (its output file, deleted afterwards). Flags: ``--enforce-eager --max-model-len 2048 --seed 0``, no
  reasoning parser.
- ``r1_model_dir`` (session): an R1-style teacher made from the bundled model: ``<think>`` and
  ``</think>`` added to the vocabulary, a ChatML template whose generation prompt prefills
  ``<think>\\n`` (as DeepSeek-R1 distills do), ``<think>`` embedded like a line break and ``</think>``
  given the embedding of "." scaled by 1.05, so that (greedy) the model closes its reasoning where it
  would have written a period. A real model that writes R1-format text (prefill and reasoning parser).

Helper (not a fixture): ``start_vllm_server(model_dir, *extra_args)``, a context manager yielding a
``VllmServer`` (e.g. ``start_vllm_server(r1_model_dir, "--reasoning-parser", "deepseek_r1")``).

A test that uses ``vllm_engine``, ``vllm_server`` or ``start_vllm_server`` must be marked ``vllm`` (it fails
otherwise: see tests/tiers.py, which checks every requesting test, since a session fixture's body runs once).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiers import require

R1_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)


@dataclass
class VllmServer:
    base_url: str
    model: str
    port: int
    log: Path
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # the server and its engine-core child
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def start_vllm_server(model_dir: str | Path, *extra_args: str, timeout: float = 400) -> Iterator[VllmServer]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1:<free port>, stopped on exit."""
    require("vllm", "starts a vLLM server (start_vllm_server)")
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", "2048",
               "--seed", "0", *extra_args]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(1.0)
        yield VllmServer(base_url=f"http://127.0.0.1:{port}/v1", model=str(model_dir), port=port, log=log,
                         process=process)
    finally:
        _stop(process)
        log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def vllm_engine(bundled_model_dir):
    """One in-process vLLM engine on the bundled model for the whole session (see the module docstring)."""
    require("vllm", "uses the fixture `vllm_engine` (it starts vLLM)")
    from distill.engines import EngineConfig, make_engine

    engine = make_engine(EngineConfig(engine="vllm", model=str(bundled_model_dir), enforce_eager=True, seed=0,
                                      max_model_len=2048))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vllm_server(bundled_model_dir):
    """One real vLLM OpenAI-compatible server on the bundled model (see the module docstring)."""
    require("vllm", "uses the fixture `vllm_server` (it starts vLLM)")
    with start_vllm_server(bundled_model_dir) as server:
        yield server


@pytest.fixture(scope="session")
def r1_model_dir(tmp_path_factory, bundled_model_dir) -> Path:
    """The bundled model as an R1-style teacher: think tokens, a `<think>\\n` prefill, `</think>` ~ '.'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("r1-teacher")
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    tokenizer.add_tokens(["<think>", "</think>"], special_tokens=False)
    tokenizer.chat_template = R1_CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weights = model.get_input_embeddings().weight  # tied to the output layer
    with torch.no_grad():
        newline = tokenizer("\n", add_special_tokens=False).input_ids[0]
        weights[tokenizer.convert_tokens_to_ids("<think>")] = 0.9 * weights[newline]  # reads like a line break
        weights[tokenizer.convert_tokens_to_ids("</think>")] = 1.05 * weights[tokenizer.convert_tokens_to_ids(".")]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
