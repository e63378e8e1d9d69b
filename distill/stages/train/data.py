"""Training data: rows -> conversations -> token ids + labels.

    datasets = load_inputs(["filtered@v3:0.7", "openthoughts@v1:0.3"], split=None)
    train, evaluation, info = build_conversations(datasets, cfg, system_prompt)
    train_tok, stats = tokenize(train, tokenizer, plan, cfg)

Row formats, first match wins:
  * `completion` (+ `prompt` messages as `distill generate` wrote them, or `problem`): the prompt turns
    (optional `system`), then the assistant turn `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`;
  * `messages`: full conversations ({role, content}), e.g. imported chat data;
  * `conversations`: ShareGPT turns ({from, value}) with an optional `system` column (OpenThoughts).
Mixture weights are the fraction of a dataset used (open-r1's `dataset_mixture`; 2.0 repeats it twice).
The validation rows are held out of each dataset before weighting, so no duplicate crosses the split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from distill import artifacts
from distill.artifacts import sources
from distill.errors import UserError
from distill.think import CLOSE, OT_THOUGHT_CLOSE, normalize_markers, split_think, think_completion

ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                "model": "assistant", "bot": "assistant", "tool": "tool"}


def CONVERSATION_FEATURES():  # noqa: N802 - a constant built lazily (datasets is a heavy import)
    import datasets

    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    return datasets.Features({"messages": datasets.List(message), "usable": datasets.Value("bool"),
                              "reasoned": datasets.Value("bool")})


@dataclass
class Input:
    spec: str
    weight: float
    data: Any                      # datasets.Dataset
    source: sources.Source
    conversation: dict | None      # the traces' conversation format, from the manifests
    fmt: str = ""


def parse_spec(text: str) -> tuple[str, float]:
    """`REF[:WEIGHT]` -> (ref, weight)."""
    ref, sep, weight = text.rpartition(":")
    if sep and ref and weight.replace(".", "", 1).isdigit():
        value = float(weight)
        if value <= 0:
            raise UserError(f"dataset weight must be > 0 in {text!r}")
        return ref, value
    return text, 1.0


def find_conversation(artifact: artifacts.Artifact | None) -> dict | None:
    """The `conversation` manifest key of an artifact or, failing that, of its nearest ancestor."""
    from distill.conversation import recorded_conversation

    found = recorded_conversation(artifact)
    return found.record if found else None


def load_inputs(specs: list[str], split: str | None, cfg) -> list[Input]:
    inputs = []
    for text in specs:
        ref, weight = parse_spec(text)
        data, source = sources.load_input(ref, split=split)
        item = Input(text, weight, data, source, find_conversation(source.artifact))
        item.fmt = detect_format(data, cfg, ref) if getattr(cfg, "method", "sft") == "sft" else ""
        inputs.append(item)
    return inputs


def detect_format(data, cfg, ref: str = "input") -> str:
    columns = set(data.column_names)
    if cfg.completion_column in columns and ({"prompt", cfg.problem_column} & columns):
        return "completion"
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "conversations"
    raise UserError(f"dataset {ref} has no training columns: it needs '{cfg.completion_column}' with "
                    f"'prompt' or '{cfg.problem_column}', or a 'messages' / 'conversations' column of full "
                    f"conversations; available columns: {', '.join(sorted(columns))}")


# ---------------------------------------------------------------------------- rows -> conversations


def format_completion(text: str) -> tuple[str, bool]:
    """`<think>\\n{reasoning}\\n</think>\\n\\n{answer}` and whether there was reasoning.

    Accepts `<think>...</think>` (also without the opening tag, when the prompt prefilled it) and
    OpenThoughts' `<|begin_of_thought|>...<|end_of_thought|>` / `<|begin_of_solution|>...` markers.
    """
    if OT_THOUGHT_CLOSE in text or CLOSE in text:
        reasoning, answer, _ = split_think(normalize_markers(text))
        return think_completion(reasoning, answer), bool(reasoning)
    return text.strip(), False


def _clean(messages: Any) -> list[dict]:
    """{role, content} dicts only (arrow structs add None-valued keys that some templates trip on)."""
    out = []
    for message in messages or []:
        role = message.get("role") or message.get("from")
        content = message.get("content", message.get("value"))
        role = ROLE_ALIASES.get(str(role).lower(), str(role)) if role is not None else None
        if role is None or content is None:
            continue
        out.append({"role": role, "content": str(content)})
    return out


def _with_system(messages: list[dict], system: str | None, replace: bool) -> list[dict]:
    has = bool(messages) and messages[0]["role"] == "system"
    if system is None or (has and not replace):
        return messages
    rest = messages[1:] if has else messages
    return ([{"role": "system", "content": system}] if system else []) + rest


def prompt_column_turns(prompt, cfg) -> list[dict] | None:
    """The turns of a `prompt` cell (messages as `distill generate` wrote them, or a string); few-shot turns
    dropped unless --keep-few-shot. None when the cell holds no prompt."""
    if isinstance(prompt, list) and prompt:
        messages = _clean(prompt)
        if not cfg.keep_few_shot:
            users = [m for m in messages if m["role"] == "user"]
            messages = [m for m in messages if m["role"] == "system"][:1] + users[-1:]
        return messages
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    return None


def problem_turns(row: dict, cfg, prompt_template: str | None) -> list[dict] | None:
    """One user turn: the problem column through the prompt template; None without a problem."""
    problem = row.get(cfg.problem_column)
    if not isinstance(problem, str) or not problem.strip():
        return None
    return [{"role": "user", "content": prompt_template.replace("{problem}", problem) if prompt_template else problem}]


def apply_system(messages: list[dict], row: dict, cfg, default_system: str | None) -> list[dict]:
    """--system-prompt, else the row's own `system` column, else the traces' system prompt (kept if present)."""
    row_system = row.get("system") if isinstance(row.get("system"), str) and row.get("system").strip() else None
    if cfg.system_prompt is not None:
        return _with_system(messages, cfg.system_prompt, replace=True)
    if row_system:
        return _with_system(messages, row_system, replace=True)
    return _with_system(messages, default_system, replace=False)


def row_messages(row: dict, fmt: str, cfg, default_system: str | None, prompt_template: str | None
                 ) -> tuple[list[dict] | None, bool]:
    """One row -> (conversation or None when unusable, had reasoning). Pure."""
    if fmt == "completion":
        completion = row.get(cfg.completion_column)
        if not isinstance(completion, str) or not completion.strip():
            return None, False
        messages = prompt_column_turns(row.get("prompt"), cfg) or problem_turns(row, cfg, prompt_template)
        if messages is None:
            return None, False
        content, reasoned = format_completion(completion) if cfg.reformat_reasoning else (completion, True)
        messages = messages + [{"role": "assistant", "content": content}]
    else:
        messages = _clean(row.get(fmt))
        while messages and messages[-1]["role"] != "assistant":
            messages.pop()
        reasoned = False
        for message in messages:
            if message["role"] == "assistant" and cfg.reformat_reasoning:
                message["content"], had = format_completion(message["content"])
                reasoned = reasoned or had
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            return None, False
    return apply_system(messages, row, cfg, default_system), reasoned


def build_conversations(inputs: list[Input], cfg, default_system: str | None, prompt_template: str | None,
                        num_proc: int | None = None):
    """(train, eval or None, info): conversations mixed by weight, validation rows held out first."""
    import datasets

    trains, evals, info = [], [], {"datasets": [], "rows_unusable": 0, "rows_without_reasoning": 0}
    total = sum(len(i.data) for i in inputs)
    eval_budget = min(cfg.eval_max_rows, math.floor(total * cfg.eval_fraction))
    empty = [item.spec for item in inputs if len(item.data) == 0]
    if empty:  # (datasets' map adds no columns to zero rows: without this, a KeyError deep in datasets)
        raise UserError(f"{', '.join(empty)} has no rows to train on (a filter that kept 0 rows? see "
                        "`distill artifacts show` for its funnel)")
    for index, item in enumerate(inputs):
        def convert(row, fmt=item.fmt):
            messages, reasoned = row_messages(row, fmt, cfg, default_system, prompt_template)
            return {"messages": messages or [], "usable": messages is not None, "reasoned": reasoned}

        converted = item.data.map(convert, remove_columns=item.data.column_names, num_proc=num_proc,
                                  features=CONVERSATION_FEATURES(), desc=f"Building conversations ({item.spec})")
        usable = converted.filter(lambda r: r["usable"], num_proc=num_proc)
        info["rows_unusable"] += len(converted) - len(usable)
        info["rows_without_reasoning"] += sum(1 for r in usable["reasoned"] if not r)
        usable = usable.remove_columns(["usable", "reasoned"]).shuffle(seed=cfg.seed + index)
        n_eval = round(eval_budget * len(item.data) / total) if total else 0
        n_eval = min(n_eval, max(len(usable) - 1, 0))
        if n_eval:
            evals.append(usable.select(range(n_eval)))
        pool = usable.select(range(n_eval, len(usable)))
        picked = _weighted(pool, item.weight)
        trains.append(picked)
        info["datasets"].append({"spec": item.spec, "weight": item.weight, "format": item.fmt,
                                 "rows": len(item.data), "usable": len(usable), "eval_rows": n_eval,
                                 "train_rows": len(picked), "source": item.source.info})
    if not any(len(t) for t in trains):
        raise UserError("no usable training rows: every row lacks a completion / assistant turn "
                        f"(inputs: {', '.join(i.spec for i in inputs)})")
    train = datasets.concatenate_datasets(trains).shuffle(seed=cfg.seed)
    evaluation = datasets.concatenate_datasets(evals) if evals else None
    if cfg.limit:  # a quick trial: fewer training rows and a validation split in proportion (at least one row)
        train = train.select(range(min(cfg.limit, len(train))))
        if evaluation is not None:
            evaluation = evaluation.select(range(min(len(evaluation), max(1, math.ceil(cfg.limit * cfg.eval_fraction)))))
    return train, evaluation, info


def _weighted(data, weight: float):
    """`weight` times the rows: whole copies, then the first part of the (already shuffled) rows."""
    import datasets

    whole, part = int(weight), weight - int(weight)
    pieces = [data] * whole
    if part > 0:
        pieces.append(data.select(range(round(len(data) * part))))
    pieces = [p for p in pieces if len(p)]
    return datasets.concatenate_datasets(pieces) if pieces else data.select([])


# ---------------------------------------------------------------------------- conversations -> tokens


def tokenize(data, tokenizer, plan, cfg, num_proc: int | None = None, what: str = "train"):
    """`input_ids` + `labels` per conversation; too-long rows dropped (or cut with cfg.truncate)."""
    from distill.stages.train.templates import tokenize_messages

    def encode(row):
        try:
            ids, labels = tokenize_messages(tokenizer, row["messages"], plan, cfg.assistant_only_loss)
            error = ""
        except Exception as exc:  # noqa: BLE001 - one bad row must not hide the others; counted below
            ids, labels, error = [], [], f"{type(exc).__name__}: {str(exc)[:160]}"
        full_length = len(ids) if not error else -1
        if cfg.truncate and len(ids) > cfg.max_length:
            ids, labels = ids[: cfg.max_length], labels[: cfg.max_length]
        return {"input_ids": ids, "labels": labels, "length": len(ids), "full_length": full_length,
                "error": error, "trained": sum(x != -100 for x in labels)}

    encoded = data.map(encode, remove_columns=data.column_names, num_proc=num_proc, desc=f"Tokenizing {what}")
    errors = [e for e in encoded["error"] if e]
    if errors and len(errors) == len(encoded):
        raise UserError(f"the chat template could not render any {what} conversation ({errors[0]})")
    stats = {"rows": len(encoded), "render_errors": len(errors), "max_length": cfg.max_length}
    keep_long = cfg.truncate

    def keep(row):
        return not row["error"] and row["trained"] > 0 and (keep_long or row["length"] <= cfg.max_length)

    lengths = [n for n in encoded["full_length"] if n >= 0]
    too_long = sum(1 for n in lengths if n > cfg.max_length)
    stats["truncated" if cfg.truncate else "dropped_too_long"] = too_long
    kept = encoded.filter(keep, num_proc=num_proc)
    stats["dropped_no_target"] = len(encoded) - len(errors) - len(kept) - (0 if cfg.truncate else too_long)
    stats["kept"] = len(kept)
    stats["tokens"] = int(sum(kept["length"])) if len(kept) else 0
    stats["trained_tokens"] = int(sum(kept["trained"])) if len(kept) else 0
    stats["longest"] = max(lengths) if lengths else 0
    return kept.remove_columns(["length", "error", "full_length", "trained"]), stats
