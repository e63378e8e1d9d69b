"""Generation engines behind one small interface: vLLM in-process, or an OpenAI-compatible server.

    engine = make_engine(EngineConfig(...))           # "vllm" | "openai"
    for sample in engine.generate(requests, sampling):  # yields each sample as soon as it finishes
        ...
    engine.close()

Both ``distill generate`` and ``distill eval`` use this; nothing else talks to vLLM directly.

- ``vllm`` (``engines/vllm_engine.py``): the in-process engine driven request by request, so each
  sample is handed back the step it finishes while the batch stays full (``LLM.chat`` returns only
  when its longest trace is done).
- ``openai`` (``engines/openai_engine.py``): any OpenAI-compatible server (``vllm serve``, SGLang, a
  router in front of many of them, the DeepSeek API), one request per sample, bounded concurrency,
  retries with exponential backoff.

Samples come back as completion text in which a reasoning block carries both its tags (a template's
``<think>\\n`` prefill is put back in front; a server's separate ``reasoning`` field is merged).
With ``SamplingConfig.logprobs = K`` each sample also carries ``Sample.logprobs`` (``TokenLogprobs``:
the generated token ids and the teacher's top-K ids and log-probabilities at each of them; see
``engines/logprobs.py``). Call ``engine.check_logprobs(K)`` first: it fails, before anything is
generated, where the engine cannot deliver them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from distill.config import option

ENGINES = ("vllm", "openai")
# Most top logprobs per token: vLLM's default --max-logprobs and the OpenAI API's top_logprobs limit.
MAX_LOGPROBS = 20


@dataclass
class SamplingConfig:
    n: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768  # always explicit: vLLM's own default is 16
    seed: int | None = None
    logprobs: int | None = None  # K: also return the top-K logprobs of every generated token (Sample.logprobs)


@dataclass
class Request:
    """One prompt: ``key`` is unique per prompt (the row id); ``messages`` is the chat to continue."""

    key: str
    messages: list[dict[str, str]]
    n: int | None = None  # samples still wanted for this prompt (resume); None = sampling.n
    sample_indices: list[int] | None = None  # which sample indices are still wanted (resume)


@dataclass
class TokenLogprobs:
    """The teacher's view of one completion, token by token (T generated tokens, K alternatives each).

    numpy arrays (a 32k-token trace with K = 20 is 640k values: Python lists of floats would be ~20x bigger).
    ``token_ids`` (T,) int32: the generated ids exactly as sampled (a template prefill is part of the prompt,
    not here); ``top_ids`` (T, K) int32 / ``top_logprobs`` (T, K) float32: the K most likely ids at each
    position and their log-probabilities, most likely first, from the model's distribution before
    temperature / top-p (vLLM's ``raw_logprobs``); ``sampled`` (T,) float32: each generated token's own
    logprob (in ``top_logprobs`` too where it is among the K)."""

    token_ids: Any
    top_ids: Any
    top_logprobs: Any
    sampled: Any = None


@dataclass
class Sample:
    key: str
    index: int  # sample index within the prompt, 0..n-1
    text: str  # the completion; a prefilled "<think>\n" is already put back in front
    finish_reason: str  # "stop" | "length" | ...
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)
    logprobs: TokenLogprobs | None = None  # with SamplingConfig.logprobs


@dataclass
class EngineOptions:
    """The engine options a user sets; composed into the generate and eval configs (one definition)."""

    engine: str = option("vllm", "vllm (in-process) or openai (an OpenAI-compatible server).")
    seed: int = option(0, "Engine seed (vllm): same seed, same samples.")
    tensor_parallel_size: int = option(1, "vllm: GPUs per model replica.")
    max_model_len: Optional[int] = option(None, "vllm: context length (default: the model's).")
    gpu_memory_utilization: Optional[float] = option(None, "vllm: share of GPU memory to use (default 0.9).")
    dtype: str = option("auto", "vllm: weights dtype (auto, bfloat16, float16, float32).")
    enforce_eager: bool = option(False, "vllm: no CUDA graphs / compilation; starts much faster. Always on a CPU "
                                 "(DISTILL_VLLM_COMPILE=1 compiles there).")
    max_num_seqs: Optional[int] = option(None, "vllm: sequences decoded together (default: vLLM's).")
    base_url: Optional[str] = option(None, "openai: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: Optional[str] = option(None, "openai: name of the env var holding the API key (never stored).")
    max_concurrency: int = option(64, "openai: requests in flight.")
    request_timeout_s: float = option(600.0, "openai: per-request timeout in seconds.", flag="--request-timeout")
    max_retries: int = option(6, "openai: retries (exponential backoff) on 429/5xx/timeouts.")

    def validate_engine(self) -> None:
        """Range checks of the engine options (a stage's validate() calls it); floats are already finite."""
        from distill.config import MAX_SECONDS
        from distill.errors import UserError

        if self.engine not in ENGINES:
            raise UserError(f"unknown --engine {self.engine!r}: use {' or '.join(ENGINES)}")
        # (flag, value, low, high, why the high bound); None values are unset options
        for flag, value, low, high, why in (
                ("--tensor-parallel-size", self.tensor_parallel_size, 1, None, ""),
                ("--max-model-len", self.max_model_len, 1, None, ""),
                ("--max-num-seqs", self.max_num_seqs, 1, None, ""),
                ("--max-concurrency", self.max_concurrency, 1, 4096, " (one thread per request in flight)"),
                ("--max-retries", self.max_retries, 0, 100, " (backoff is capped at 60 s: 100 retries wait "
                                                             "over an hour)"),
                ("--seed", self.seed, 0, 2**32 - 1, " (vLLM seeds numpy, which takes 32 bits)")):
            if value is not None and value < low:
                raise UserError(f"{flag} must be >= {low}, got {value}")
            if value is not None and high is not None and value > high:
                raise UserError(f"{flag} must be <= {high}{why}, got {value}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UserError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if not 0 < self.request_timeout_s <= MAX_SECONDS:
            raise UserError(f"--request-timeout must be > 0 and <= {MAX_SECONDS:g} seconds, "
                            f"got {self.request_timeout_s}")

    def engine_config(self, model: str, **details: Any) -> EngineConfig:
        """The EngineConfig of these options for ``model`` (+ per-run details: system_prompt, adapter, ...)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(EngineOptions)}
        return EngineConfig(model=model, **{**shared, **details})


@dataclass
class EngineConfig:
    """How to reach a model: in-process vLLM or an OpenAI-compatible server."""

    engine: str = "vllm"  # "vllm" | "openai"
    model: str = ""  # vllm: a local dir or Hub id; openai: the model name the server serves
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None  # on CPU: share of RAM (use VLLM_CPU_KVCACHE_SPACE instead)
    dtype: str = "auto"
    seed: int = 0
    enforce_eager: bool = False  # no CUDA graphs / compilation: fast start (CPU, tests)
    base_url: str | None = None
    api_key_env: str | None = None  # name of the env var holding the key; the key itself is never stored
    max_concurrency: int = 64
    request_timeout_s: float = 600
    max_retries: int = 6
    chat_template: str | None = None  # override: template text or a .jinja path
    system_prompt: str | None = None  # the explicit system prompt of the requests (for conversation_format)
    max_num_seqs: int | None = None  # vllm: sequences per batch (engine default when None)
    tokenizer: str | None = None  # openai: local dir / Hub id of the served model's tokenizer (template, counts)
    retry_backoff_s: float = 1.0  # openai: first backoff delay, doubled per retry (capped at 60 s)
    adapter: str | None = None  # vllm: a LoRA adapter folder applied to every request on top of `model`


def make_engine(cfg: EngineConfig) -> Engine:
    """Start the engine ``cfg.engine`` names (loading a vLLM model takes a while)."""
    from distill.errors import UserError

    if cfg.engine == "vllm":
        from distill.engines.vllm_engine import VllmEngine

        return VllmEngine(cfg)
    if cfg.engine == "openai":
        from distill.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(cfg)
    raise UserError(f"unknown engine {cfg.engine!r}: use vllm or openai")


class Engine(Protocol):
    name: str
    tokenizer: Any  # a Hugging Face tokenizer, or None when the engine cannot see one

    def generate(self, requests: Iterable[Request], sampling: SamplingConfig) -> Iterator[Sample]:
        """Yield samples in completion order (not request order), each exactly once."""

    def check_logprobs(self, k: int) -> None:
        """Raise UserError unless this engine can return the top-``k`` logprobs of every generated token."""

    def conversation_format(self) -> dict[str, Any]:
        """Chat template text + sha256, effective system prompt (incl. a template's hidden default),
        and any generation prefill (e.g. "<think>\\n")."""

    def close(self) -> None: ...
