"""How a problem becomes a conversation, and how a chat template is recorded.

    messages = build_messages(problem, system_prompt=None, prompt_template=DEFAULT_PROMPT_TEMPLATE,
                              few_shot=load_few_shot("few_shot.yaml"))
    fmt = conversation_format(tokenizer, system_prompt=None)   # template text + sha256, effective
                                                               # system prompt, generation prefill

The conversation format is part of the data: the traces manifest records it (``conversation``) so
that training and evaluation use exactly the prompt the teacher saw. Two things a template does
silently are made explicit here: a hidden default system prompt (SmolLM2's "You are a helpful AI
assistant named SmolLM…", Qwen2.5's "You are Qwen…") and a generation prefill (DeepSeek-R1 templates
end the prompt with ``<think>\\n``, so the completion starts inside the reasoning block).

A prefill of our own (``distill generate --prefill '<think>\\n'``) is a last message made by
``prefill_message(text)``: ``render`` applies the template with the generation prompt and appends the
text (what vLLM's ``continue_final_message`` does), and ``completion_with_prefill`` puts it in front of
what the model generated, so that the stored completion starts with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.think import CLOSE as THINK_CLOSE
from distill.think import OPEN as THINK_OPEN

# The DeepSeek-R1 convention. Templates hold LaTeX braces: fill with .replace("{problem}", ...).
DEFAULT_PROMPT_TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{}."
PROBLEM_SLOT = "{problem}"
ROLES = ("system", "user", "assistant")


def build_messages(problem: str, *, system_prompt: str | None = None,
                   prompt_template: str | None = DEFAULT_PROMPT_TEMPLATE,
                   few_shot: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """``[system] + few-shot + [user: template with the problem]``.

    An explicit ``system_prompt`` replaces a system message at the head of ``few_shot``.
    """
    template = prompt_template or PROBLEM_SLOT
    if PROBLEM_SLOT not in template:
        raise UserError(f"prompt template {template[:60]!r} has no {PROBLEM_SLOT} slot: add one where the "
                        "problem goes")
    shots = [dict(m) for m in (few_shot or [])]
    messages: list[dict[str, str]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
        shots = [m for m in shots if m["role"] != "system"]
    messages.extend(shots)
    messages.append({"role": "user", "content": template.replace(PROBLEM_SLOT, str(problem))})
    return messages


def load_few_shot(path: str | Path) -> list[dict[str, str]]:
    """A JSON or YAML list of ``{role, content}`` messages placed before each question."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"few-shot file {path} not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json / yaml errors
        raise UserError(f"few-shot file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: "
                        f"{str(exc).splitlines()[0][:160]}") from None
    return check_messages(data, where=f"few-shot file {path}")


def check_messages(data: Any, where: str = "messages") -> list[dict[str, str]]:
    if not isinstance(data, list):
        raise UserError(f"{where} must hold a list of {{role, content}} messages")
    out = []
    for i, message in enumerate(data):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
                message.get("content"), str):
            raise UserError(f"{where}: message {i} must be {{role: system|user|assistant, content: text}}, "
                            f"got {str(message)[:80]!r}")
        out.append({"role": message["role"], "content": message["content"]})
    return out


# ---------------------------------------------------------------------------- chat templates


def sha256_text(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None


def template_text(tokenizer, chat_template: str | None = None) -> str | None:
    """The chat template in use: an override (text or path to a .jinja file) else the tokenizer's."""
    if chat_template:
        path = Path(chat_template).expanduser()
        if "{" not in chat_template and path.is_file():
            return path.read_text()
        return chat_template
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(template, dict):  # older multi-template tokenizers
        template = template.get("default") or next(iter(template.values()), None)
    return template


def render(tokenizer, messages: list[dict[str, Any]], chat_template: str | None = None,
           add_generation_prompt: bool = True) -> str:
    """The chat template applied; a last ``prefill_message`` is continued: the conversation before it is
    rendered with the generation prompt, then the prefill text appended (less what the template's own
    generation prompt already ends with, e.g. its ``<think>\\n``)."""
    if messages and messages[-1].get(PREFILL_KEY):
        prompt = tokenizer.apply_chat_template(messages[:-1], chat_template=chat_template, tokenize=False,
                                               add_generation_prompt=True)
        prefill = messages[-1]["content"]
        return prompt + prefill[prefill_overlap(prompt, prefill):]
    return tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


# ---------------------------------------------------------------------------- a prefill of our own

PREFILL_KEY = "prefill"  # marks the last message of a request as text the assistant turn starts with


def prefill_message(text: str) -> dict[str, Any]:
    """The message that makes ``render`` start the assistant turn with ``text`` (not a turn of its own)."""
    return {"role": "assistant", "content": text, PREFILL_KEY: True}


def prefill_overlap(prompt_end: str, prefill: str) -> int:
    """How many leading characters of ``prefill`` the prompt already ends with: a template whose generation
    prompt opens ``<think>\\n`` itself must not get a second opener. Only a reasoning opener counts (a prompt
    ending in a line break says nothing about a prefill that starts with one); the line breaks after the
    template's opener stand for the prefill's own."""
    body = prompt_end.rstrip()
    if not prefill.startswith(THINK_OPEN) or not body.endswith(THINK_OPEN):
        return 0
    spacing, rest = prompt_end[len(body):], prefill[len(THINK_OPEN):]
    shared = 0
    while shared < min(len(spacing), len(rest)) and spacing[shared] == rest[shared]:
        shared += 1
    return len(THINK_OPEN) + shared


def effective_prefill(prefill: str, template_prefill: str | None) -> str:
    """What the assistant turn starts with: the template's own prefill, then the rest of ``prefill``."""
    template_prefill = template_prefill or ""
    return template_prefill + prefill[prefill_overlap(template_prefill, prefill):]


def completion_with_prefill(text: str, prefill: str, template_prefill: str | None = None) -> str:
    """The stored completion of a sample whose prompt ended with ``prefill``: the prefill, then what the model
    generated. ``text`` is what the engine returned (``assemble_completion``, which put back the template's
    own prefill, or a ``<think>\\n`` a completion closing its reasoning lacked): that lead is taken off
    first, so that a reasoning opener is never doubled."""
    started = effective_prefill(prefill, template_prefill)
    leads = [template_prefill] + ([THINK_OPEN + "\n"] if THINK_OPEN in started else [])
    for lead in leads:
        if lead and text.startswith(lead):
            text = text[len(lead):]
            break
    return started + text


def hidden_system_prompt(tokenizer, chat_template: str | None = None) -> str | None:
    """The system prompt a template inserts when the conversation has none (None if it adds none).

    Render the same user turn with a sentinel system message and without one: where the sentinel
    sits, the template's default appears (same text before and after it).
    """
    sentinel, user = "\x00SYSTEM\x00", [{"role": "user", "content": "\x00USER\x00"}]
    try:
        with_system = render(tokenizer, [{"role": "system", "content": sentinel}] + user, chat_template)
        without = render(tokenizer, user, chat_template)
    except Exception:  # noqa: BLE001 - templates that reject a system role raise jinja errors
        return None
    before, found, after = with_system.partition(sentinel)
    if not found or not without.startswith(before) or not without.endswith(after):
        return None
    default = without[len(before):len(without) - len(after)]
    return default or None


def generation_prefill(tokenizer, chat_template: str | None = None) -> str | None:
    """Text the generation prompt opens the assistant turn with (e.g. ``<think>\\n``), else None."""
    user = [{"role": "user", "content": "\x00USER\x00"}]
    try:
        prompt = render(tokenizer, user, chat_template, add_generation_prompt=True)
        plain = render(tokenizer, user, chat_template, add_generation_prompt=False)
    except Exception:  # noqa: BLE001
        return None
    suffix = prompt[len(plain):] if prompt.startswith(plain) else prompt[prompt.rfind("\x00USER\x00"):]
    at = suffix.find(THINK_OPEN)
    return suffix[at:] if at >= 0 else None


def conversation_format(tokenizer, chat_template: str | None = None,
                        system_prompt: str | None = None) -> dict[str, Any]:
    """What the manifest's ``conversation`` gets from the engine side."""
    text = template_text(tokenizer, chat_template)
    hidden = hidden_system_prompt(tokenizer, chat_template) if tokenizer is not None and text else None
    return {
        "chat_template": text,
        "chat_template_sha256": sha256_text(text),
        "system_prompt": system_prompt if system_prompt is not None else hidden,
        "system_prompt_source": "explicit" if system_prompt is not None else ("template_default" if hidden else None),
        "prefill": generation_prefill(tokenizer, chat_template) if tokenizer is not None and text else None,
    }


# ---------------------------------------------------------------------------- completions


def assemble_completion(text: str | None, *, prefill: str | None = None, reasoning: str | None = None,
                        finish_reason: str | None = None) -> str:
    """The stored completion: one text in which a reasoning block carries both its tags.

    - ``reasoning`` (servers that split it off: ``message.reasoning`` / ``reasoning_content``) becomes
      ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``; a reasoning cut off by max_tokens (no answer
      yet, finish_reason ``length``) keeps only its opening tag, as the raw text would.
    - a template prefill (``<think>\\n``) the model never saw itself generate is put back in front.
    - a ``</think>`` without its opening tag (prefilled by a template we could not see) gets one.
    """
    text = text or ""
    if reasoning is not None and reasoning != "":
        if not text and finish_reason == "length":
            return f"{THINK_OPEN}\n{reasoning.strip()}"
        return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{text.lstrip()}"
    if prefill and not text.lstrip().startswith(prefill.strip()):
        return prefill + text
    if THINK_CLOSE in text and THINK_OPEN not in text.split(THINK_CLOSE, 1)[0]:
        return f"{THINK_OPEN}\n{text}"
    return text
