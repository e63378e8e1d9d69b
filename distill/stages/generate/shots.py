"""`distill generate --few-shot-from DATASET:K`: K worked solutions of a dataset as `<think>` examples.

    dataset, k = parse_spec("gsm8k_train.jsonl:4")
    shots = load_shots(cfg, data, source)       # Shots: messages, the problems they show, where they came from

A non-reasoning teacher (an instruct model, the bundled one) writes no ``<think>`` block unless it is shown
one. Each of the first K rows of DATASET (deterministic) becomes a user turn (the prompt template applied to
its problem) and an assistant turn ``<think>\\n{worked solution}\\n</think>\\n\\nThe answer is \\boxed{N}``:

- the worked solution is the ``solution`` or ``completion`` column, or GSM8K's ``answer`` (a solution whose
  last line is ``#### N``); a completion that already holds a ``<think>`` block gives its reasoning;
- N is the ``#### N`` value, else the last ``\\boxed{}`` of the solution, else a separate ``answer`` column.

Prompts whose problem is one of the shots' problems are left out of the generation (the teacher would be
shown the answer): ``run`` drops them from --dataset before --limit applies, and says how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from distill.errors import UserError

MAX_SHOTS = 64  # every shot is a whole worked solution in every prompt's context
SOLUTION_COLUMNS = ("solution", "completion")
PROBLEM_COLUMNS = ("problem", "question", "prompt")
# GSM8K's calculator annotations ("48/2 = <<48/2=24>>24"): tool markup of its annotators, not reasoning a
# teacher should imitate.
CALCULATOR = re.compile(r"<<[^<>\n]*>>")


@dataclass
class Shots:
    messages: list[dict[str, str]]          # user / assistant turns, K pairs
    problems: list[str]                     # the problems they show (left out of the prompts)
    record: dict[str, Any] = field(default_factory=dict)  # what the manifest records: spec, k, source, columns


def parse_spec(spec: str) -> tuple[str, int]:
    """``DATASET:K`` -> (DATASET, K); a one-line error for anything else."""
    dataset, sep, count = spec.rpartition(":")
    if not sep or not dataset.strip():
        raise UserError(f"--few-shot-from {spec!r}: use DATASET:K, e.g. gsm8k_train.jsonl:4 (K worked solutions "
                        "of DATASET as <think> examples)")
    try:
        k = int(count)
    except ValueError:
        raise UserError(f"--few-shot-from {spec!r}: K must be a whole number of examples, got {count!r}") from None
    if not 1 <= k <= MAX_SHOTS:
        raise UserError(f"--few-shot-from {spec!r}: K must be between 1 and {MAX_SHOTS} (each example is a whole "
                        f"worked solution in every prompt), got {k}")
    return dataset.strip(), k


def same_source(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two inputs' ``Source.info`` name the same rows (a file by content, an artifact by ref, a Hub split)."""
    if a.get("type") != b.get("type"):
        return False
    if a.get("type") == "hub":
        return all(a.get(k) == b.get(k) for k in ("id", "config", "split"))
    return bool(a.get("sha256")) and a.get("sha256") == b.get("sha256")


def load_shots(cfg, data, source) -> Shots:
    """The shots of ``cfg.few_shot_from``; ``data``/``source``: the --dataset rows, reused when it is the same."""
    from distill.artifacts.sources import load_input

    spec, k = parse_spec(cfg.few_shot_from)
    if spec == cfg.dataset:
        rows, shot_source = data, source
    else:
        rows, shot_source = load_input(spec, limit=k)
    if len(rows) < k:
        raise UserError(f"--few-shot-from {cfg.few_shot_from}: {spec} has only {len(rows)} row(s), {k} wanted")
    columns = rows.column_names
    problem_column = cfg.problem_column if cfg.problem_column in columns else next(
        (c for c in PROBLEM_COLUMNS if c in columns), None)
    solution_column = next((c for c in SOLUTION_COLUMNS if c in columns), None)
    if solution_column is None and "answer" in columns and _is_gsm8k_solution(rows[0]["answer"]):
        solution_column = "answer"
    if problem_column is None or solution_column is None:
        what = "problem column (--problem-column, or one of " + ", ".join(PROBLEM_COLUMNS) + ")" \
            if problem_column is None else ("worked solutions (a 'solution' or 'completion' column, or GSM8K's "
                                            "'answer' ending in '#### N')")
        raise UserError(f"--few-shot-from {spec} has no {what}; its columns: {', '.join(columns)}")
    answer_column = "answer" if "answer" in columns and solution_column != "answer" else None
    messages: list[dict[str, str]] = []
    problems: list[str] = []
    for position in range(k):
        row = rows[position]
        problem = row[problem_column]
        if not isinstance(problem, str) or not problem.strip():
            raise UserError(f"--few-shot-from {spec}: row {position} has no problem text in {problem_column!r}")
        worked, final = worked_solution(row[solution_column], row.get(answer_column) if answer_column else None)
        if not worked or final is None:
            raise UserError(f"--few-shot-from {spec}: row {position} has no worked solution with a final answer "
                            f"in {solution_column!r} (a solution ending in '#### N' or holding \\boxed{{N}}"
                            + (f", or an {answer_column!r} value" if answer_column else "") + ")")
        messages.append({"role": "user", "content": cfg.prompt_template.replace("{problem}", problem)})
        messages.append({"role": "assistant", "content": shot_answer(worked, final)})
        problems.append(problem)
    record = {"spec": cfg.few_shot_from, "k": k, "source": dict(shot_source.info),
              "problem_column": problem_column, "solution_column": solution_column, "rows": list(range(k)),
              "same_source_as_dataset": spec == cfg.dataset or same_source(shot_source.info, source.info)}
    return Shots(messages=messages, problems=problems, record=record)


def worked_solution(solution: Any, answer: Any = None) -> tuple[str | None, str | None]:
    """(reasoning text, final answer) of a worked solution cell (None where there is none)."""
    from distill.think import split_think
    from distill.verify.extraction import extract_boxed, reference_answer

    if not isinstance(solution, str) or not solution.strip():
        return None, None
    reasoning, answer_text, closed = split_think(solution)
    if closed and reasoning:  # a completion with its own <think> block: its reasoning, its boxed answer
        boxes = extract_boxed(answer_text)
        final = boxes[-1] if boxes else reference_answer(answer)
        return reasoning, final
    text, final = solution, None
    if "####" in solution:  # GSM8K: the steps, then "#### N"
        text, final = solution.rsplit("####", 1)
        final = final.strip().replace(",", "").rstrip(".") or None
    else:
        boxes = extract_boxed(solution)
        final = boxes[-1] if boxes else None
    if final is None and answer is not None:
        final = reference_answer(answer)
    text = CALCULATOR.sub("", text).strip()
    return text or None, final


def shot_answer(worked: str, final: str) -> str:
    """The assistant turn of one shot, in the layout `distill filter` keeps."""
    from distill.think import CLOSE, OPEN

    return f"{OPEN}\n{worked.strip()}\n{CLOSE}\n\nThe answer is \\boxed{{{final}}}"


def _is_gsm8k_solution(value: Any) -> bool:
    return isinstance(value, str) and "####" in value and "\n" in value.strip()
