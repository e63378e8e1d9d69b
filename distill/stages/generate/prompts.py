"""The prompts of a `distill generate` run: which dataset rows are sampled, as which conversations.

    prompts = build_prompts(data, cfg, few_shot, exclude_problems)   # ids, source rows, problems, messages

A row's id is the data's ``id`` column (or --id-column), else a hash of its prompt; rows repeating a prompt
are sampled once (counted in ``duplicates``); rows showing a few-shot example's problem are left out
(``excluded``) before --limit applies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from distill.engines import chat as prompting
from distill.errors import UserError

ANSWER_COLUMNS = ("answer", "final_answer", "solution", "reference")


@dataclass
class Prompts:
    """The dataset rows to sample: ids, source positions, problems, messages."""

    ids: list[str]
    rows: list[int]  # position of each prompt's row in the source dataset
    problems: list[str]
    messages: list[list[dict[str, str]]]
    answer_column: str | None
    duplicates: int  # rows that repeat a prompt already taken (sampled once)
    conversations: bool = False  # the prompt column held chat messages (no prompt template applied)
    id_column: str | None = None  # the column the ids came from (None: a hash of the prompt)
    excluded: int = 0  # rows left out because a few-shot example shows their problem

    def __len__(self) -> int:
        return len(self.ids)


def build_prompts(data, cfg, few_shot, exclude_problems: frozenset[str] = frozenset()) -> Prompts:
    """The prompts of ``data`` (``cfg``: the GenerateConfig); rows whose problem text is in
    ``exclude_problems`` (the few-shot examples' own) are left out before --limit applies."""
    from distill.artifacts.sources import require_columns

    id_column = effective_id_column(cfg, data.column_names)
    require_columns(data, {"--problem-column": cfg.problem_column, "--answer-column": cfg.answer_column,
                           "--id-column": id_column}, what=f"dataset {cfg.dataset}")
    answer_column = cfg.answer_column or next((c for c in ANSWER_COLUMNS if c in data.column_names), None)
    positions = list(range(len(data)))
    excluded = 0
    if exclude_problems:
        shown = {p.strip() for p in exclude_problems}
        kept = [i for i, v in enumerate(data[cfg.problem_column]) if not (isinstance(v, str) and v.strip() in shown)]
        excluded, positions = len(positions) - len(kept), kept
    if cfg.limit:
        positions = positions[:cfg.limit]
    if len(positions) < len(data):
        data = data.select(positions)
    if len(data) == 0:
        raise UserError(f"dataset {cfg.dataset} has no rows" + (
            f" besides the {excluded} shown as few-shot examples" if excluded else "") + ": nothing to generate")
    values = data[cfg.problem_column]
    given_ids = [None if v is None else str(v) for v in data[id_column]] if id_column else None
    out = Prompts([], [], [], [], answer_column, 0, id_column=id_column, excluded=excluded)
    seen: dict[str, str] = {}  # id -> what its prompt was
    for local, value in enumerate(values):
        position = positions[local]  # the row's place in the source (error messages, build_dataset)
        if isinstance(value, list):  # a conversation: used as is (an explicit system prompt goes first)
            messages = prompting.check_messages(value, where=f"row {position} of --problem-column")
            if cfg.system_prompt is not None and not (messages and messages[0]["role"] == "system"):
                messages = [{"role": "system", "content": cfg.system_prompt}] + messages
            problem = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            digest_of = json.dumps(messages, sort_keys=True)
            out.conversations = True
        elif isinstance(value, str) and value.strip():
            problem, digest_of = value, value
            messages = prompting.build_messages(value, system_prompt=cfg.system_prompt,
                                                prompt_template=cfg.prompt_template, few_shot=few_shot)
        else:
            raise UserError(f"row {position} of --problem-column {cfg.problem_column!r} is empty or not text "
                            f"({str(value)[:40]!r}): clean the dataset or pick another column")
        key = given_ids[local] if given_ids else hashlib.sha256(digest_of.encode()).hexdigest()[:16]
        if key is None:
            raise UserError(f"row {position} has no value in the id column {id_column!r}: fill it, or pass "
                            "--id-column none to key prompts by their text")
        if key in seen:
            if given_ids and (cfg.id_column or seen[key] != digest_of):
                raise UserError(f"id column {id_column!r} repeats the id {key!r}" + (
                    "" if cfg.id_column else " for different prompts") + ": ids must be unique (or pass "
                    "--id-column none to key prompts by their text)")
            out.duplicates += 1  # the same prompt twice: sampled once, n times
            continue
        seen[key] = digest_of
        out.ids.append(key)
        out.rows.append(position)
        out.problems.append(problem)
        out.messages.append(messages)
    return out


def effective_id_column(cfg, columns: list[str]) -> str | None:
    """--id-column, else the data's own 'id' column, else None (prompts keyed by a hash of their text)."""
    if cfg.id_column and cfg.id_column.lower() == "none":
        return None
    return cfg.id_column or ("id" if "id" in columns else None)
