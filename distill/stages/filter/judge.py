"""An LLM judge for what the rule grader cannot decide, and an audit of the rule grader against it.

    distill filter --judge Qwen/Qwen2.5-7B-Instruct                       # vLLM in-process
    distill filter --judge gpt-4o --judge-engine openai --judge-base-url https://api.openai.com/v1 \\
        --judge-api-key-env OPENAI_API_KEY
    distill filter --judge bundled --audit 50                             # rule vs judge on 50 sampled rows

Who is asked (``candidates``): a math or multiple-choice row that passed the earlier checks (complete,
well-formed), has a reference answer, and that the rules could not decide: ``unverified`` (a check killed at
``--timeout``, a reference math-verify cannot parse) or no final answer found / an answer that does not parse
(prose such as "so she pays seven dollars and 78 cents"). OpenR1-Math recovered answers this way with
Llama-3.3-70B; OpenThoughts judged math with GPT-4o. A row whose parsed answer the rules compared and found
different is never asked: a judge verdict never overrides a rule-based "wrong".

The judge sees the problem, the reference answer and the completion's answer part (not its reasoning), greedy,
and must end with ``VERDICT: CORRECT`` or ``VERDICT: INCORRECT`` after one sentence of rationale; anything else is
``unclear`` and changes nothing. A ``correct`` from the judge makes the row's verdict ``correct``
(``verdict_reason`` "judge: ..."). Every row carries ``judge_verdict`` and ``judge_rationale`` (None when not
asked); the manifest's ``judge`` key records the model, engine, prompt template (+ sha256) and the counts.

``--audit N`` asks the judge about N rows (seeded sample) that the rules did decide, changes nothing, and reports
the agreement: rule correct / incorrect against judge correct / incorrect / unclear — the verifier audit that
tells you how far to trust either.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from distill import log
from distill.errors import UserError

JUDGE_PROMPT = """You are checking a student's final answer against the reference answer of a problem.

Problem:
{problem}

Reference answer:
{reference}

Student's final answer (the end of the student's response):
{answer}

Is the student's final answer mathematically equivalent to the reference answer (ignore formatting, units
written out, and rounding only where the problem asks for an approximation)? Write one short sentence of
rationale, then a last line that is exactly "VERDICT: CORRECT" or "VERDICT: INCORRECT"."""
_VERDICT = re.compile(r"VERDICT:\s*\**\s*(CORRECT|INCORRECT)\b", re.I)
UNDECIDED_REASONS = ("no final answer found", "answer not parseable", "no choice found")
ANSWER_CHARS = 2000  # the end of the answer part the judge sees (a long answer's last 2000 characters)
PROBLEM_CHARS = 4000


@dataclass
class JudgeReport:
    """What the judge did in one filter run (the manifest's ``judge`` key)."""

    model: str
    engine: str
    prompt_sha256: str = hashlib.sha256(JUDGE_PROMPT.encode()).hexdigest()
    asked: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    recovered: int = 0  # rows the judge turned correct
    audit: dict | None = None

    def record(self) -> dict:
        return {"model": self.model, "engine": self.engine, "prompt_template": JUDGE_PROMPT,
                "prompt_sha256": self.prompt_sha256, "asked": self.asked, "verdicts": self.verdicts,
                "recovered": self.recovered, "audit": self.audit}


def parse_verdict(text: str) -> tuple[str, str]:
    """``(verdict, rationale)``: correct | incorrect from the last ``VERDICT:`` line, else unclear."""
    text = (text or "").strip()
    found = list(_VERDICT.finditer(text))
    if not found:
        return "unclear", text[-300:]
    rationale = text[:found[-1].start()].strip()
    return found[-1].group(1).lower(), rationale[-300:]


def candidates(graded: list, domains: list[str], references: list) -> list[int]:
    """Rows the rules could not decide and a judge may (see the module docstring)."""
    picked = []
    for i, result in enumerate(graded):
        verdict = result.verdict
        undecided = verdict.status == "unverified" or (verdict.status == "incorrect"
                                                       and verdict.reason in UNDECIDED_REASONS)
        if (undecided and domains[i] in ("math", "multiple_choice") and references[i] is not None
                and result.complete and result.well_formed):
            picked.append(i)
    return picked


def audit_rows(graded: list, references: list, n: int, seed: int, exclude: set[int]) -> list[int]:
    """``n`` rows (seeded) the rules decided (correct / incorrect with a parsed answer), for ``--audit``."""
    decided = [i for i, r in enumerate(graded) if i not in exclude and references[i] is not None
               and (r.verdict.status == "correct"
                    or (r.verdict.status == "incorrect" and r.verdict.reason not in UNDECIDED_REASONS))]
    return sorted(random.Random(seed).sample(decided, min(n, len(decided))))


def ask(cfg, rows: list[int], problems: list, references: list, graded: list) -> dict[int, tuple[str, str]]:
    """Ask the judge about ``rows``: ``{row: (verdict, rationale)}``. One engine session, greedy."""
    from distill.engines import Request, SamplingConfig, make_engine

    if not rows:
        return {}
    requests = [Request(key=str(i), messages=[{"role": "user", "content": JUDGE_PROMPT.format(
        problem=str(problems[i] or "")[:PROBLEM_CHARS], reference=references[i],
        answer=graded[i].answer_text[-ANSWER_CHARS:])}], n=1) for i in rows]
    log.say(f"asking the judge {cfg.judge} about {len(rows)} rows")
    engine = make_engine(_engine_config(cfg))
    try:
        sampling = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.judge_max_tokens, seed=cfg.seed)
        return {int(sample.key): parse_verdict(sample.text) for sample in engine.generate(requests, sampling)}
    finally:
        engine.close()


def judge_model(cfg) -> str:
    """The judge to load: a resolved local path / Hub id for vllm, the served name for openai."""
    if cfg.judge_engine == "openai":
        return cfg.judge
    from distill.models import resolve_model

    return resolve_model(cfg.judge)


def validate(cfg) -> None:
    """One error line, before any row is read, for a judge that cannot be reached or loaded."""
    if cfg.judge is None:
        if cfg.audit:
            raise UserError("--audit N needs --judge MODEL: the audit compares the rule grader with the judge")
        return
    if cfg.judge_engine not in ("vllm", "openai"):
        raise UserError(f"--judge-engine must be vllm or openai, got {cfg.judge_engine!r}")
    if cfg.audit < 0 or cfg.judge_max_tokens < 16:
        raise UserError("--audit must be >= 0 and --judge-max-tokens >= 16")
    if cfg.judge_engine == "openai" and not cfg.judge_base_url:
        raise UserError("--judge-engine openai needs --judge-base-url (the server's /v1 URL)")
    if cfg.judge_engine == "vllm":
        judge_model(cfg)  # raises UserError for a model that is not there (a missing dir, an unknown ref)


def preflight(cfg) -> None:
    """Reach an openai judge's server before any row is graded (one request: its model list), so a wrong URL or
    key is one error line up front, not after the grading."""
    if cfg.judge and cfg.judge_engine == "openai":
        from distill.engines import make_engine

        make_engine(_engine_config(cfg)).close()


def _engine_config(cfg):
    from distill.engines import EngineConfig

    return EngineConfig(engine=cfg.judge_engine, model=judge_model(cfg), base_url=cfg.judge_base_url,
                        api_key_env=cfg.judge_api_key_env, seed=cfg.seed, enforce_eager=True,
                        max_model_len=cfg.judge_max_model_len)


def apply(cfg, graded: list, domains: list[str], references: list, problems: list) -> tuple[JudgeReport, dict]:
    """Judge the undecided rows (their verdicts updated in place) and audit others; returns the report and
    ``{row: (verdict, rationale)}`` for the output columns (audited rows included)."""
    from distill.verify import CORRECT, Verdict

    report = JudgeReport(model=cfg.judge, engine=cfg.judge_engine)
    asked = candidates(graded, domains, references)
    audited = audit_rows(graded, references, cfg.audit, cfg.seed, set(asked)) if cfg.audit else []
    answers = ask(cfg, asked + audited, problems, references, graded)
    report.asked = len(asked)
    for i in asked:
        verdict, rationale = answers[i]
        report.verdicts[verdict] = report.verdicts.get(verdict, 0) + 1
        if verdict == "correct":
            old = graded[i].verdict
            graded[i].verdict = Verdict(CORRECT, old.predicted, f"judge: {rationale[:200]}",
                                        {**old.details, "rule_status": old.status, "rule_reason": old.reason})
            report.recovered += 1
    if cfg.audit:
        report.audit = audit_table([(graded[i].verdict.status, answers[i][0]) for i in audited])
        print_audit(report.audit, cfg.judge)
    return report, answers


def audit_table(pairs: list[tuple[str, str]]) -> dict:
    """Rule verdict x judge verdict counts and the agreement share among rows the judge decided."""
    counts: dict[str, int] = {}
    for rule, judge in pairs:
        counts[f"{rule}/{judge}"] = counts.get(f"{rule}/{judge}", 0) + 1
    decided = [(r, j) for r, j in pairs if j != "unclear"]
    agree = sum(r == j for r, j in decided)
    return {"rows": len(pairs), "judge_decided": len(decided), "agree": agree,
            "agreement": round(agree / len(decided), 4) if decided else None, "counts": counts}


def print_audit(audit: dict, judge: str) -> None:
    rows = []
    for rule in ("correct", "incorrect"):
        rows.append((rule, *(str(audit["counts"].get(f"{rule}/{j}", 0)) for j in ("correct", "incorrect", "unclear"))))
    share = "n/a" if audit["agreement"] is None else f"{audit['agreement']:.1%}"
    log.table(f"audit: rule grader vs judge {judge} on {audit['rows']} rows",
              ("rule \\ judge", "correct", "incorrect", "unclear"), rows,
              footer=f"agreement {audit['agree']}/{audit['judge_decided']} rows the judge decided ({share})")
