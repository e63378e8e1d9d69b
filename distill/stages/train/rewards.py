"""Rewards of `distill train --method grpo`, graded by the filter's own checks (TRL GRPOTrainer reward functions).

    specs = parse_reward_specs(["accuracy:1.0", "format:0.2", "length"])      # [(name, weight)], weight 1 by default
    funcs, weights = make_reward_functions(specs, GradeConfig(), RewardColumns(), max_completion_length=1024,
                                           num_proc=4)
    GRPOConfig(reward_weights=weights, ...); GRPOTrainer(reward_funcs=funcs, ...)
    for f in funcs: f.close()                                                 # (also at exit)

TRL calls each function as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_metric=..., log_extra=...)`` and logs it under ``rewards/<f.__name__>/``. Completions
come as strings or as ``[{"role": "assistant", "content": ...}]`` (conversational prompts); prompts as strings
or message lists. Every function returns one float per completion.

* ``accuracy``  1 when ``distill.verify.grader.grade_batch`` (the grader of `distill filter` and `distill eval`)
  says ``correct``, else 0 (incorrect, unverified, timed out). Math and multiple-choice checks run in killable
  worker processes with the hard limit ``GradeConfig.timeout_s``; code runs in the sandbox with its per-test
  limit. So a hanging sympy expression or a sleeping program costs one timeout and a 0, never a hung step.
  References are read as the filter reads them (the answer column, else the last ``\\boxed{}`` of the
  solution column). One addition the filter lacks: with a ``choices`` column, a multiple-choice reference
  given as a 0-based option index or as an option's text becomes that option's letter.
* ``format``    1 when the completion passes the filter's format check (``check_format``: one ``<think>`` block
  at the start with at least ``min_reasoning_chars`` of reasoning, then a non-empty answer), else 0.
* ``tag_count`` open-r1's partial credit, 0.25 per check, adapted to our layout
  ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}`` (we have no ``<answer>`` tags; see ``tag_count_score``).
* ``language``  1 when the reasoning stays in the script of the prompt's last user message (the filter's
  language check, ``max_language_mix`` 0.05 as its ``--max-language-mix``), else 0. It runs in the worker
  pool too: its regexes are quadratic on some degenerate texts (thousands of unclosed ``\\[``).
* ``length``    DAPO's soft overlong penalty (``overlong_penalty``): 0 up to ``max_completion_length - cache``
  tokens, then linearly down to -1 at ``max_completion_length``; ``cache`` defaults to a quarter of the
  budget (DAPO used 4k of 20k; a quarter keeps the ramp wide enough to matter at the 1k budgets of small runs).
"""

from __future__ import annotations

import atexit
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from distill.config import option
from distill.errors import UserError
from distill.stages.train.rewards_shape import (
    completion_text,
    format_score,
    overlong_penalty,
    prompt_text,
    tag_count_score,
)
from distill.verify.grader import GradeConfig

__all__ = ["REWARDS", "RewardColumns", "parse_reward_specs", "make_reward_functions", "check_reward_columns",
           "completion_text", "prompt_text", "tag_count_score", "overlong_penalty"]

REWARDS = ("accuracy", "format", "language", "length", "tag_count")
_NEEDS_POOL = {"accuracy", "language"}


@dataclass
class RewardColumns:
    """Which dataset columns the rewards read (TRL passes every column of the row to each reward function)."""

    answer: str = option("answer", "Column with the reference answer (a value, a boxed solution or GSM8K's '#### N').")
    solution: str = option("solution", "Fallback column whose last \\boxed{} is the reference (as `distill filter`).")
    domain: str = option("domain", "Column naming each row's domain: math, multiple_choice or code (default math).")
    fixed_domain: str | None = option(None, "One domain for every row (overrides the domain column).")
    test_cases: str = option("test_cases", "Column with the tests of code rows.")
    fn_name: str = option("fn_name", "Column with the function a code row's tests call (LeetCode style).")
    starter_code: str = option("starter_code", "Column with a code row's starter code.")
    choices: str = option("choices", "Column with a multiple-choice row's options (a list, or letter -> text).")


# ---------------------------------------------------------------------------- specs


def parse_reward_specs(specs: Sequence[str]) -> list[tuple[str, float]]:
    """``["accuracy:1.0", "format:0.2", "length"]`` -> ``[("accuracy", 1.0), ("format", 0.2), ("length", 1.0)]``.

    An entry may hold several comma-separated specs; ``-`` in a name reads as ``_`` (``tag-count``). A weight
    must be a finite number >= 0 (0 logs a reward without training on it); each reward may appear once.
    """
    parsed: list[tuple[str, float]] = []
    for spec in (s.strip() for entry in specs for s in str(entry).split(",")):
        if not spec:
            continue
        name, sep, weight_text = spec.partition(":")
        name = name.strip().lower().replace("-", "_")
        if name not in REWARDS:
            raise UserError(f"--reward {spec!r}: {name!r} is not a reward; use one of {', '.join(REWARDS)}")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise UserError(f"--reward {spec!r}: the weight {weight_text.strip()!r} is not a number "
                                f"(write NAME:WEIGHT, e.g. {name}:0.5)") from None
        if not math.isfinite(weight) or weight < 0:
            raise UserError(f"--reward {spec!r}: the weight must be a finite number >= 0, got {weight_text.strip()}")
        if any(name == seen for seen, _ in parsed):
            raise UserError(f"--reward {name!r} is given twice: give each reward once, with one weight")
        parsed.append((name, weight))
    if not parsed:
        raise UserError(f"no --reward given: name at least one of {', '.join(REWARDS)} (NAME[:WEIGHT])")
    return parsed


def check_reward_columns(specs: Sequence[str] | Sequence[tuple[str, float]], columns: RewardColumns,
                         column_names: Sequence[str], domains: Sequence[str | None] | None = None) -> None:
    """Before training: refuse a dataset the accuracy reward cannot grade (every reward would be 0, silently).

    ``domains``: the rows' domain values, when known (default: read as math unless ``fixed_domain`` says code).
    """
    from distill.verify.grader import normalize_domain

    names = [name for name, _ in _parsed(specs)]
    if "accuracy" not in names:
        return
    available = set(column_names)
    if columns.fixed_domain is not None:
        kinds = {normalize_domain(columns.fixed_domain)}
    elif domains is not None:
        kinds = {normalize_domain(d) for d in domains}
    else:
        kinds = {"math"}
    listed = ", ".join(column_names)
    if kinds - {"code"} and not {columns.answer, columns.solution} & available:
        raise UserError(f"the accuracy reward needs reference answers: the dataset has no column {columns.answer!r} "
                        f"(nor {columns.solution!r}); available columns: {listed}; pass --answer-column")
    if "code" in kinds and columns.test_cases not in available:
        raise UserError(f"the accuracy reward needs tests for code rows: the dataset has no column "
                        f"{columns.test_cases!r}; available columns: {listed}")


def _parsed(specs) -> list[tuple[str, float]]:
    """Specs as strings or as ``(name, weight)`` pairs, checked the same way either way."""
    return parse_reward_specs([f"{s[0]}:{s[1]!r}" if isinstance(s, tuple) else s for s in specs])


# ---------------------------------------------------------------------------- the worker pool


class _LazyPool:
    """One ``grader.make_pool`` worker pool for the pooled rewards of one ``make_reward_functions`` call: started
    on first use (TRL calls every reward of a step in turn, so one pool serves them all), kept across steps, and
    closed by any of their ``close()`` (reopened if used again) or at exit. Not pickled: a copy starts its own."""

    def __init__(self, num_proc: int | None, grade_config: GradeConfig):
        self.num_proc, self.grade_config = num_proc, grade_config
        self.pool = None
        self._registered = False

    def get(self):
        from distill.verify.grader import make_pool

        if self.pool is None:
            self.pool = make_pool(self.num_proc, self.grade_config)
            if not self._registered:
                atexit.register(self.close)
                self._registered = True
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "pool": None, "_registered": False}


# ---------------------------------------------------------------------------- reward functions


def _column(kwargs: dict, name: str | None, n: int) -> list | None:
    """The values of dataset column ``name`` for the ``n`` completions, or None when the rows lack it."""
    values = kwargs.get(name) if name else None
    if values is None:
        return None
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


class _Reward(ABC):
    """A TRL reward function: ``__name__`` is what TRL logs; ``close()`` frees its worker pool, if any."""

    def __init__(self, name: str, grade_config: GradeConfig, columns: RewardColumns, pool: _LazyPool | None = None):
        self.__name__ = name
        self.grade_config, self.columns, self.pool = grade_config, columns, pool

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in (completions or [])]
        prompts = list(prompts) if prompts is not None else [None] * len(texts)
        return self.score(texts, prompts, completion_ids, kwargs)

    @abstractmethod
    def score(self, texts: list[str], prompts: list, completion_ids, kwargs: dict) -> list[float]:
        """One reward per completion text (each subclass is one named reward)."""

    def domains(self, kwargs: dict, n: int) -> list[str]:
        from distill.verify.grader import normalize_domain

        if self.columns.fixed_domain is not None:
            return [normalize_domain(self.columns.fixed_domain)] * n
        return [normalize_domain(d) for d in (_column(kwargs, self.columns.domain, n) or [None] * n)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def __repr__(self) -> str:
        return f"<reward {self.__name__}>"


class _Accuracy(_Reward):
    def score(self, texts, prompts, completion_ids, kwargs):
        from distill.verify.grader import CORRECT, GradeItem, grade_batch

        n, columns = len(texts), self.columns
        if not n:
            return []
        domains = self.domains(kwargs, n)
        answers, solutions = _column(kwargs, columns.answer, n), _column(kwargs, columns.solution, n)
        tests = _column(kwargs, columns.test_cases, n)
        if answers is None and solutions is None and any(d != "code" for d in domains):
            raise UserError(f"the accuracy reward got no reference answers: the rows have no column "
                            f"{columns.answer!r} (nor {columns.solution!r}); pass --answer-column")
        if tests is None and "code" in domains:
            raise UserError(f"the accuracy reward got code rows without tests: no column {columns.test_cases!r}")
        references = _references(answers or [None] * n, solutions or [None] * n, domains,
                                 _column(kwargs, columns.choices, n) or [None] * n)
        fn_names = _column(kwargs, columns.fn_name, n) or [None] * n
        starters = _column(kwargs, columns.starter_code, n) or [None] * n
        items = [GradeItem(completion=text, domain=domain, reference=reference, finish_reason=None,
                           problem=prompt_text(prompt), test_cases=test, fn_name=fn, starter_code=starter)
                 for text, domain, reference, prompt, test, fn, starter
                 in zip(texts, domains, references, prompts, tests or [None] * n, fn_names, starters, strict=True)]
        pool = self.pool.get() if any(d != "code" for d in domains) else None
        results = grade_batch(items, self.grade_config, num_proc=self.pool.num_proc, pool=pool)
        verdicts = [r.verdict for r in results]
        if callable(kwargs.get("log_metric")):  # TRL averages these over the logging step
            kwargs["log_metric"](f"{self.__name__}/timeouts", sum(bool(v.details.get("timeout")) for v in verdicts) / n)
            kwargs["log_metric"](f"{self.__name__}/unverified", sum(v.status == "unverified" for v in verdicts) / n)
        if callable(kwargs.get("log_extra")):  # the completions table shows why each got its reward
            kwargs["log_extra"](f"{self.__name__}_verdict", [f"{v.status}: {v.reason}"[:200] for v in verdicts])
        return [1.0 if v.status == CORRECT else 0.0 for v in verdicts]


def _references(answers: list, solutions: list, domains: list[str], choices: list) -> list[str | None]:
    """Each row's reference as `distill filter` reads it (answer column, else the solution's last box),
    with a multiple-choice option index / option text turned into its letter when the row lists its options."""
    from distill.verify.choice import LETTERS, reference_choice
    from distill.verify.extraction import reference_answer
    from distill.verify.math import normalize_text

    references = []
    for answer, solution, domain, options in zip(answers, solutions, domains, choices, strict=True):
        reference = reference_answer(answer)
        reference = reference if reference is not None else reference_answer(solution)
        if domain == "multiple_choice" and options and (reference is None or reference_choice(reference) is None):
            pairs = list(options.items()) if isinstance(options, dict) else list(zip(LETTERS, options, strict=False))  # A-J: the verifier's letters
            if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(pairs):
                reference = str(pairs[answer][0])  # a 0-based index (MMLU's ClassLabel)
            elif reference is not None:
                wanted = normalize_text(reference)
                reference = next((str(letter) for letter, text in pairs if normalize_text(str(text)) == wanted),
                                 reference)
        references.append(reference)
    return references


class _Format(_Reward):
    def score(self, texts, prompts, completion_ids, kwargs):
        config = self.grade_config
        return [format_score(t, config.min_reasoning_chars, config.assume_prefilled_think) for t in texts]


class _TagCount(_Reward):
    def score(self, texts, prompts, completion_ids, kwargs):
        domains = self.domains(kwargs, len(texts))
        return [tag_count_score(t, d, self.grade_config.assume_prefilled_think) for t, d in zip(texts, domains,
                                                                                                strict=True)]


class _Language(_Reward):
    def __init__(self, *args, max_mix: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_mix = max_mix

    def score(self, texts, prompts, completion_ids, kwargs):
        from distill.stages.filter.features import row_features

        if not texts:
            return []
        payloads = [(text, prompt_text(prompt), self.grade_config.assume_prefilled_think, self.max_mix)
                    for text, prompt in zip(texts, prompts, strict=True)]
        features = self.pool.get().map(row_features, payloads, timeout_s=self.grade_config.timeout_s,
                                       on_timeout=lambda _: (False, 1.0, "timeout"),
                                       on_error=lambda _, message: (False, 1.0, "error"))
        return [1.0 if ok else 0.0 for ok, _mix, _script in features]


class _Length(_Reward):
    def __init__(self, *args, max_completion_length: int, cache: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_completion_length, self.cache = max_completion_length, cache

    def score(self, texts, prompts, completion_ids, kwargs):
        from distill.verify.length import estimate_tokens

        # TRL passes the sampled token ids; without them (a direct call) the filter's chars/4 estimate stands in
        lengths = ([len(ids) for ids in completion_ids] if completion_ids is not None
                   else [estimate_tokens(t) for t in texts])
        return [overlong_penalty(n, self.max_completion_length, self.cache) for n in lengths]


def make_reward_functions(specs: Sequence[str] | Sequence[tuple[str, float]], grade_config: GradeConfig,
                          columns: RewardColumns, max_completion_length: int, num_proc: int | None, *,
                          max_language_mix: float = 0.05,
                          overlong_cache: int | None = None) -> tuple[list[Callable], list[float]]:
    """``(reward functions, weights)`` in the order of ``specs`` (strings as for ``parse_reward_specs``, or
    parsed ``(name, weight)`` pairs), for ``GRPOTrainer(reward_funcs=...)`` and ``GRPOConfig(reward_weights=...)``.

    ``num_proc`` check workers (default: all cores) serve the accuracy and language rewards; they start on the
    first call and stay up until ``close()`` (or exit). ``overlong_cache``: the length reward's ramp, in tokens
    (default ``max_completion_length // 4``).
    """
    parsed = _parsed(specs)
    if max_completion_length < 1:
        raise UserError(f"--max-completion-length must be >= 1, got {max_completion_length}")
    cache = max(1, max_completion_length // 4) if overlong_cache is None else overlong_cache
    if not 1 <= cache <= max_completion_length:
        raise UserError(f"the overlong cache must be in [1, {max_completion_length}] tokens, got {cache}")
    if not 0 <= max_language_mix <= 1:
        raise UserError(f"--max-language-mix must be in [0, 1], got {max_language_mix}")
    pool = _LazyPool(num_proc, grade_config)
    if _NEEDS_POOL & {name for name, _ in parsed}:
        from distill.verify.grader import prestart_pool

        prestart_pool()  # the fork server imports math-verify while the trainer loads the model
    functions: list[Callable] = []
    for name, _weight in parsed:
        if name == "accuracy":
            functions.append(_Accuracy(name, grade_config, columns, pool))
        elif name == "language":
            functions.append(_Language(name, grade_config, columns, pool, max_mix=max_language_mix))
        elif name == "length":
            functions.append(_Length(name, grade_config, columns, max_completion_length=max_completion_length,
                                     cache=cache))
        elif name == "format":
            functions.append(_Format(name, grade_config, columns))
        else:
            functions.append(_TagCount(name, grade_config, columns))
    return functions, [weight for _, weight in parsed]
