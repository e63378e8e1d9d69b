"""The one grader: format, completeness and correctness of completions, for `distill filter` and `distill eval`.

    from distill.verify.grader import GradeConfig, GradeItem, grade_batch
    results = grade_batch([GradeItem(completion, domain="math", reference="18")], GradeConfig(), num_proc=4)
    results[0].verdict.status   # correct | incorrect | unverified

A completion is split into its reasoning (the ``<think>`` block, other markers normalized) and
its answer part; only the answer part is graded. Math and multiple-choice checks run in killable
worker processes with a hard wall-clock limit (``timeout_s``): an overrun is ``unverified``,
never a hang. Code answers go to the sandbox (``distill.verify.code``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

from distill.config import option
from distill.errors import UserError
from distill.verify import CORRECT, INCORRECT, UNVERIFIED, Verdict
from distill.verify.choice import verify_choice
from distill.verify.extraction import clean_number, reference_answer
from distill.verify.format import OK, check_format, normalize_markers, split_reasoning
from distill.verify.math import timeout_verdict, verify_math

__all__ = ["GradeItem", "GradeConfig", "GradeResult", "grade_batch", "split_reasoning", "normalize_markers",
           "reference_answer", "lenient_correct", "normalize_domain", "is_complete", "make_pool", "prestart_pool",
           "DOMAINS", "CORRECT", "INCORRECT", "UNVERIFIED"]

DOMAINS = ("math", "multiple_choice", "code")
# --code-disk-mb bounds: under 16 MiB a program's ordinary temporary files may not fit; the sandbox's /tmp is a
# tmpfs, held in the host's memory, so the cap (64 GiB) bounds what one test can take from it
MIN_CODE_DISK_MB, MAX_CODE_DISK_MB = 16, 65_536
_DOMAIN_ALIASES = {"mathematics": "math", "mcq": "multiple_choice", "mc": "multiple_choice",
                   "multiple_choice": "multiple_choice", "multiplechoice": "multiple_choice", "gpqa": "multiple_choice",
                   "coding": "code", "programming": "code"}
# Imported once in the fork server, so a worker (or its replacement) starts in milliseconds; the last
# module holds the filter's own row checks (language, dedup fingerprints: numpy).
PRELOAD = ("math_verify", "distill.verify.extraction", "distill.verify.math", "distill.verify.choice",
           "distill.verify.grader", "distill.stages.filter.features")


@dataclass
class GradeItem:
    """One completion to grade (``reference`` may be a raw cell: ``#### 18`` or a boxed solution works)."""

    completion: str
    domain: str = "math"
    reference: str | None = None
    finish_reason: str | None = None
    problem: str | None = None
    test_cases: Any = None
    fn_name: str | None = None
    starter_code: str | None = None


@dataclass
class GradeConfig:
    """How completions are graded (shared by `distill filter` and `distill eval`)."""

    timeout_s: float = option(5.0, "Hard wall-clock limit per answer check, in seconds; a check that runs "
                                   "over is killed and counts as unverified.")
    min_reasoning_chars: int = option(20, "A well-formed completion has at least this many characters of reasoning.")
    assume_prefilled_think: bool = option(True, "Accept a completion that has </think> but no <think> (the chat "
                                                "template prefilled the opening tag, as R1's does).")
    unsafe_code_exec: bool = option(False, "Run code answers without the sandbox (only for trusted models, "
                                           "in a throwaway container).")
    code_timeout: float = option(6.0, "Wall-clock limit per code test, in seconds.")
    min_pass_fraction: float = option(1.0, "A code answer is correct when at least this share of its tests pass.")
    worker_memory_mb: int = option(4096, "Address-space limit of each check worker (MiB); a check that needs more "
                                         "fails instead of swapping the machine.")
    code_disk_mb: int = option(256, "Size in MiB of a code answer's writable /tmp in the sandbox (its working "
                                    "directory): all files one test writes together.")
    answer_extraction: str = option("standard", "Which answer forms count: strict | standard | lenient "
                                                "(see distill.verify.extraction).")


@dataclass
class GradeOptions:
    """The grading options a user sets; composed into the filter and eval configs (one definition)."""

    timeout: float = option(5.0, "Hard wall-clock limit per answer check (s); an overrun is killed: unverified.")
    min_reasoning_chars: int = option(20, "Minimum characters of reasoning inside <think>.")
    assume_prefilled_think: bool = option(True, "Accept '</think>' without '<think>' (template-prefilled tag).")
    unsafe_code_exec: bool = option(False, "Run code answers without namespace isolation (rlimits only).")
    code_timeout: float = option(6.0, "Wall-clock limit per code test (s).")
    min_pass_fraction: float = option(1.0, "Share of a code row's tests that must pass.")
    code_disk_mb: int = option(256, f"Disk space (MiB, {MIN_CODE_DISK_MB}-{MAX_CODE_DISK_MB}) a code test may write: "
                                    "the size of its sandbox's /tmp.")
    num_proc: Optional[int] = option(None, "Grading worker processes (default: all cores; capped at the cores "
                                           "available, never more than the rows).")
    answer_extraction: str = option("standard", "Where the final answer is read: strict (the last \\boxed{} only), "
                                                "standard (+ answer phrases, Minerva's 'Final Answer: The final answer "
                                                "is X', letters, math spans), lenient (+ the last number for a numeric "
                                                "reference, non-English anchors such as 答案 / Réponse).")

    def validate_grading(self) -> None:
        """Range checks of the grading options (a stage's validate() calls it); floats are already finite.

        ``num_proc`` is capped here at the cores available (checks are CPU-bound; a huge value would be a
        fork storm), so every pool and the code sandbox's threads get the capped count.
        """
        from distill.config import MAX_SECONDS
        from distill.verify.pool import available_cpus

        checks = [("--timeout", 0 < self.timeout <= MAX_SECONDS, f"> 0 and <= {MAX_SECONDS:g} seconds", self.timeout),
                  ("--code-timeout", 0 < self.code_timeout <= MAX_SECONDS, f"> 0 and <= {MAX_SECONDS:g} seconds",
                   self.code_timeout),
                  ("--min-pass-fraction", 0 < self.min_pass_fraction <= 1, "in (0, 1]", self.min_pass_fraction),
                  ("--code-disk-mb", MIN_CODE_DISK_MB <= self.code_disk_mb <= MAX_CODE_DISK_MB,
                   f">= {MIN_CODE_DISK_MB} and <= {MAX_CODE_DISK_MB} MiB", self.code_disk_mb),
                  ("--num-proc", self.num_proc is None or self.num_proc >= 1, ">= 1", self.num_proc),
                  ("--min-reasoning-chars", self.min_reasoning_chars >= 0, ">= 0", self.min_reasoning_chars)]
        for flag, ok, wanted, value in checks:
            if not ok:  # nan fails every comparison, so it lands here too
                raise UserError(f"{flag} is out of range: must be {wanted}, got {value}")
        from distill.verify.extraction import MODES

        if self.answer_extraction not in MODES:
            raise UserError(f"--answer-extraction must be one of {', '.join(MODES)}, got {self.answer_extraction!r}")
        if self.num_proc is not None:
            self.num_proc = min(self.num_proc, available_cpus())

    def grade_config(self) -> GradeConfig:
        return GradeConfig(timeout_s=self.timeout, min_reasoning_chars=self.min_reasoning_chars,
                           assume_prefilled_think=self.assume_prefilled_think, unsafe_code_exec=self.unsafe_code_exec,
                           code_timeout=self.code_timeout, min_pass_fraction=self.min_pass_fraction,
                           code_disk_mb=self.code_disk_mb, answer_extraction=self.answer_extraction)


@dataclass
class GradeResult:
    well_formed: bool
    format_reason: str  # "ok" or why not (see distill.verify.format)
    reasoning: str  # "" when there is no reasoning block
    answer_text: str  # the text that was graded
    complete: bool  # False when the generation was cut off (finish_reason "length")
    verdict: Verdict = field(default_factory=lambda: Verdict(UNVERIFIED))


def normalize_domain(value: str | None, default: str = "math") -> str:
    """``math`` | ``multiple_choice`` | ``code`` for common spellings; unknown values come back lower-cased."""
    if value is None or not str(value).strip():
        return default
    key = re.sub(r"[\s-]+", "_", str(value).strip().lower())
    return _DOMAIN_ALIASES.get(key, key)


def is_complete(finish_reason: str | None) -> bool:
    return (finish_reason or "").strip().lower() not in ("length", "max_tokens", "max_length")


def internal_timeout(timeout_s: float) -> int:
    """math-verify's own per-operation alarm: below the hard limit, so most slow checks end gracefully."""
    return max(1, int(float(timeout_s) * 0.4))


# ---------------------------------------------------------------------------- worker side


def answer_task(payload: tuple) -> Verdict:
    """Runs in a worker: grade one answer part (math or multiple choice)."""
    domain, answer_text, reference, alarm_s, mode = payload
    if domain == "multiple_choice":
        return verify_choice(answer_text, reference, mode)
    return verify_math(answer_text, reference, alarm_s, mode)


def prestart_pool() -> None:
    """Let the check workers' fork server import math-verify in the background (call early)."""
    from distill.verify.pool import prestart

    prestart(PRELOAD)


def make_pool(num_proc: int | None, config: GradeConfig):
    from distill.verify.pool import WorkerPool

    return WorkerPool(num_proc, preload=PRELOAD, memory_limit_mb=config.worker_memory_mb)


# ---------------------------------------------------------------------------- parent side


def grade_batch(items: list[GradeItem], config: GradeConfig | None = None, num_proc: int | None = None,
                progress: Callable[[int], None] | None = None, pool=None) -> list[GradeResult]:
    """Grade completions; results in item order. ``progress(n)`` is called as checks finish.

    ``num_proc`` worker processes (default: all cores) run the math / multiple-choice checks;
    pass an open ``pool`` (``make_pool``) to reuse workers across calls.
    """
    config = config or GradeConfig()
    results: list[GradeResult] = []
    domains = []
    for item in items:
        reason, reasoning, answer = check_format(item.completion or "", config.min_reasoning_chars,
                                                 config.assume_prefilled_think)
        results.append(GradeResult(well_formed=reason == OK, format_reason=reason, reasoning=reasoning or "",
                                   answer_text=answer, complete=is_complete(item.finish_reason)))
        domains.append(normalize_domain(item.domain))
    references = [reference_answer(item.reference) for item in items]

    to_check = []
    for i, (result, domain) in enumerate(zip(results, domains, strict=True)):
        if domain in ("math", "multiple_choice"):
            if result.answer_text.strip():
                to_check.append(i)
            elif references[i] is None:
                result.verdict = Verdict(UNVERIFIED, None, "no reference answer")
            else:
                result.verdict = Verdict(INCORRECT, None, "no final answer found")
        elif domain != "code":
            result.verdict = Verdict(UNVERIFIED, None, f"no verifier for domain {domain!r}")
    if progress is not None and len(items) - len(to_check) - domains.count("code"):
        progress(len(items) - len(to_check) - domains.count("code"))

    if to_check:
        alarm_s = internal_timeout(config.timeout_s)
        payloads = [(domains[i], results[i].answer_text, references[i], alarm_s, config.answer_extraction)
                    for i in to_check]
        own = pool is None
        pool = pool or make_pool(num_proc, config)
        try:
            verdicts = pool.map(answer_task, payloads, timeout_s=config.timeout_s,
                                on_timeout=lambda _: timeout_verdict(f"killed after {config.timeout_s:g}s"),
                                on_error=lambda _, message: Verdict(UNVERIFIED, None, f"check failed: {message}",
                                                                    {"error": True}),
                                progress=progress)
        finally:
            if own:
                pool.close()
        for i, verdict in zip(to_check, verdicts, strict=True):
            results[i].verdict = verdict

    code_rows = [i for i, d in enumerate(domains) if d == "code"]
    if code_rows:
        verdicts = _verify_code([items[i] for i in code_rows], [results[i].answer_text for i in code_rows], config,
                                num_proc)
        for i, verdict in zip(code_rows, verdicts, strict=True):
            results[i].verdict = verdict
        if progress is not None:
            progress(len(code_rows))
    return results


def sandbox_config(config: GradeConfig, max_workers: int | None = None):
    """The code verifier's ``SandboxConfig`` for these grading options."""
    from distill.verify import code as code_verifier

    return code_verifier.SandboxConfig(per_test_timeout_s=config.code_timeout, unsafe_code_exec=config.unsafe_code_exec,
                                       min_pass_fraction=config.min_pass_fraction, max_workers=max_workers,
                                       disk_mb=config.code_disk_mb)


def _verify_code(items: list[GradeItem], answers: list[str], config: GradeConfig,
                 max_workers: int | None = None) -> list[Verdict]:
    from distill.verify import code as code_verifier

    batch = [dict(answer_text=answer, test_cases=item.test_cases, fn_name=item.fn_name,
                  starter_code=item.starter_code) for item, answer in zip(items, answers, strict=True)]
    try:
        return code_verifier.verify_code_batch(batch, sandbox_config(config, max_workers))
    except code_verifier.SandboxUnavailable as exc:
        raise UserError(f"cannot run code checks: {exc}") from None


# ---------------------------------------------------------------------------- lenient accuracy

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")


def _as_fraction(text: str) -> Fraction | None:
    text = clean_number(text).strip().strip("$").replace("\\$", "").replace("\\%", "").rstrip(".").strip()
    text = text.replace(",", "")
    frac = _FRAC.match(text)
    try:
        if frac:
            return Fraction(int(frac.group(2)), int(frac.group(3))) * (-1 if frac.group(1) else 1)
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def lenient_correct(text: str, reference) -> bool:
    """The last number anywhere in ``text`` equals the reference numerically (the demo's lenient accuracy).

    Counts a right number even without ``<think>`` tags or a box; a non-numeric reference is never matched.
    """
    gold = reference_answer(reference)
    target = _as_fraction(gold) if gold is not None else None
    if target is None:
        return False
    numbers = _NUMBER.findall(text or "")
    if not numbers:
        return False
    value = _as_fraction(numbers[-1])
    return value is not None and value == target

