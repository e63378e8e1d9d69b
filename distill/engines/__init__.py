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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class SamplingConfig:
    n: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768  # always explicit: vLLM's own default is 16
    seed: int | None = None


@dataclass
class Request:
    """One prompt: ``key`` is unique per prompt (the row id); ``messages`` is the chat to continue."""

    key: str
    messages: list[dict[str, str]]
    n: int | None = None  # samples still wanted for this prompt (resume); None = sampling.n
    sample_indices: list[int] | None = None  # which sample indices are still wanted (resume)


@dataclass
class Sample:
    key: str
    index: int  # sample index within the prompt, 0..n-1
    text: str  # the completion; a prefilled "<think>\n" is already put back in front
    finish_reason: str  # "stop" | "length" | ...
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


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

    def conversation_format(self) -> dict[str, Any]:
        """Chat template text + sha256, effective system prompt (incl. a template's hidden default),
        and any generation prefill (e.g. "<think>\\n")."""

    def close(self) -> None: ...
