"""The GRPO rewards that only look at a completion's shape (format, tag_count, length), and how a TRL completion
or prompt becomes text. Pure functions, linear in the text, run in the trainer's process (``rewards.py``).
"""

from __future__ import annotations

from typing import Any

from distill.think import CLOSE, OPEN, normalize_markers, think_completion
from distill.verify.format import OK, check_format

# Message keys under which a chat-template response parser (transformers >= 5 ``parse_response``, used by TRL
# for conversational prompts) puts the reasoning it cut out of ``content``.
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def _content_text(content: Any) -> str:
    """A message's ``content``: a string, or a list of parts (``{"type": "text", "text": ...}``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _message_text(message: dict) -> str:
    """The message as the model wrote it: a reasoning field split off by a response parser goes back into
    ``<think>…</think>`` (the graders read the tags, as for a plain-text completion)."""
    content = _content_text(message.get("content"))
    reasoning = next((message[k] for k in _REASONING_KEYS if isinstance(message.get(k), str) and message[k].strip()),
                     None)
    if reasoning is not None and CLOSE not in content:
        return think_completion(reasoning, content)
    return content


def completion_text(completion: Any) -> str:
    """TRL's completion as text: a string as is; for a message list, the last assistant message (the final turn
    after any tool calls; the last message when none is marked assistant)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _message_text(completion)
    messages = [m for m in completion if isinstance(m, dict)]
    replies = [m for m in messages if m.get("role") == "assistant"] or messages
    return _message_text(replies[-1]) if replies else ""


def prompt_text(prompt: Any) -> str | None:
    """The problem a prompt asks: a string as is; for a message list, the last user message (the problem after
    any system prompt and few-shot turns); None when there is none."""
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return _content_text(prompt.get("content"))
    users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return _content_text(users[-1].get("content")) if users else None


def format_score(text: str, min_reasoning_chars: int, assume_prefilled_think: bool) -> float:
    """1.0 when ``distill filter``'s format check passes (``check_format`` with the grading options), else 0.0."""
    return 1.0 if check_format(text, min_reasoning_chars, assume_prefilled_think)[0] == OK else 0.0


def tag_count_score(text: str, domain: str = "math", assume_prefilled_think: bool = True) -> float:
    """open-r1's ``tag_count_reward`` (0.25 per check) for our layout ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``.

    open-r1 checks ``<think>\\n``, ``\\n</think>\\n``, ``\\n<answer>\\n`` and ``\\n</answer>`` once each. We have no
    ``<answer>`` tags (the answer is what follows ``</think>``, its final value in ``\\boxed{}``), so the four are:

    1. the block opens once, at the start, on its own line (``<think>\\n``); with ``assume_prefilled_think``, no
       ``<think>`` but a ``</think>`` also counts (the chat template wrote the opening tag, as R1's does);
    2. it closes once, on its own line (``\\n</think>\\n``);
    3. a non-empty answer follows the close, with no ``<think>`` in it (one block, not a second one);
    4. the answer marks its final answer, our counterpart of ``<answer>…</answer>``: a ``\\boxed{}`` (math and
       other domains), a choice letter the multiple-choice verifier reads, or a fenced code block (code).

    Unlike ``format``, it gives partial credit, so a policy that has not found the layout yet still gets a gradient.
    """
    from distill.verify.choice import extract_choice
    from distill.verify.extraction import extract_boxed

    text = normalize_markers(text or "")
    n_open, n_close = text.count(OPEN), text.count(CLOSE)
    opened = ((n_open == 1 and text.lstrip().startswith(OPEN + "\n"))
              or (n_open == 0 and n_close > 0 and assume_prefilled_think))
    closed = n_close == 1 and f"\n{CLOSE}\n" in text
    answer = text[text.rfind(CLOSE) + len(CLOSE):] if n_close else ""
    answered = bool(answer.strip()) and OPEN not in answer
    if domain == "code":
        marked = answer.count("```") >= 2  # an opening and a closing fence; the sandbox runs the last block
    elif domain == "multiple_choice":
        marked = extract_choice(answer)[0] is not None
    else:
        marked = bool(extract_boxed(answer))
    return 0.25 * (opened + closed + answered + (bool(answer.strip()) and marked))


def overlong_penalty(num_tokens: int, max_completion_length: int, cache: int) -> float:
    """DAPO's soft overlong punishment: 0 up to ``max_completion_length - cache`` tokens, then linearly down to -1
    at ``max_completion_length`` (and -1 beyond: TRL cuts completions there, so beyond means a longer budget)."""
    start = max_completion_length - cache
    if num_tokens <= start:
        return 0.0
    if num_tokens >= max_completion_length:
        return -1.0
    return (start - num_tokens) / cache
