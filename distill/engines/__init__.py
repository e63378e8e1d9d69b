"""Generation engines behind one small interface: vLLM in-process, or an OpenAI-compatible server.

    engine = make_engine(EngineConfig(...))           # "vllm" | "openai"
    for sample in engine.generate(requests, sampling):  # yields each sample as soon as it finishes
        ...
    engine.close()

Both ``distill generate`` and ``distill eval`` use this; nothing else talks to vLLM directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol


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


class Engine(Protocol):
    name: str

    def generate(self, requests: Iterable[Request], sampling: SamplingConfig) -> Iterator[Sample]:
        """Yield samples in completion order (not request order), each exactly once."""

    def conversation_format(self) -> dict[str, Any]:
        """Chat template text + sha256, effective system prompt (incl. a template's hidden default),
        and any generation prefill (e.g. "<think>\\n")."""

    def close(self) -> None: ...
