"""`distill filter`: keep only well-formed, correct, clean traces.

    distill filter                                    # traces@latest -> filtered@vNNNN
    distill filter --input traces@v2 --name filtered-gsm8k --max-per-prompt 4 --per-prompt-policy shortest \\
        --decontaminate math500 --decontaminate aime24 --plot
    distill filter --input my-org/r1-traces --split train --completion-column response --answer-column gold \\
        --domain math --keep-unverified
    distill filter --input traces.jsonl --domain-column domain --unsafe-code-exec   # math + MCQ + code rows
    distill filter --pass-rate-range 0.1,0.9 --answer-extraction lenient   # drop too-easy / hopeless prompts
    distill filter --correctness annotate --name unverified   # keep wrong answers too (an A/B of verification)
    distill filter --judge Qwen/Qwen2.5-7B-Instruct --audit 100   # a judge for undecided rows + an audit

Checks, in this order (a row's ``reject_reason`` is the first that fails; ``--skip NAME`` turns one off):
complete (not cut off: finish_reason ``length``), format (one ``<think>`` block at the start and a
non-empty answer; OpenThoughts / ``<reasoning_process>`` markers normalized), tail (over
``--max-tail-chars`` of text after the final ``\\boxed{}`` / "answer:" line), repetition (a loop: a word
n-gram more than ``--repetition-max-count`` times, or a unit of 1-50 words repeated
``--repetition-loop-repeats`` times in a row over ``--repetition-loop-share`` of the completion; numbers
are compared as written, so a long calculation is no loop; ``distill.verify.shape``), correct (math via
math-verify on the answer part — read as ``--answer-extraction`` says —, multiple choice, code in the
sandbox; ``unverified`` rows — no reference, or a check killed at ``--timeout`` — are dropped unless
``--keep-unverified``; ``--correctness annotate`` keeps every verdict; ``--judge MODEL`` asks an LLM about the
rows the rules leave undecided, ``stages/filter/judge.py``), pass_rate (with ``--pass-rate-range
LO,HI``: the prompt's teacher pass rate, ``distill.stages.filter.decisions``), language
(reasoning in the prompt's script), length (completion tokens), decontamination (word n-gram / fuzzy
overlap with benchmarks), dedup (identical / near-identical completions of one prompt), max_per_prompt.

Output: a ``filtered`` artifact, split ``train`` (kept rows) and ``rejected``, both with every check's
result as columns (``verdict``; ``pass_rate`` and ``samples`` of the row's prompt; ...); stats (counts per
reason, funnel, kept per prompt, yield, the prompts' pass rates, reasoning/answer length ratio of the kept
rows: median and p95) in the manifest. Same input and config give the same content hash, whatever
``--num-proc``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from distill.config import option, to_dict
from distill.errors import UserError
from distill.verify.grader import GradeOptions


@dataclass
class FilterConfig(GradeOptions):
    """Keep only well-formed, correct, clean traces (see `distill filter --help`)."""

    input: str = option("traces@latest", "Artifact reference, local jsonl/json/parquet file, or Hub dataset id.")
    split: str | None = option(None, "Split of a Hub dataset or of a multi-split artifact (default: train).")
    dataset_config: str | None = option(None, "Hub dataset config name.", flag="--config")
    name: str = option("filtered", "Name of the output artifact.")
    completion_column: str = option("completion", "Column holding the full completion (reasoning + answer).")
    problem_column: str = option("problem", "Column holding the problem text (language + decontamination checks).")
    answer_column: str = option("answer", "Column holding the reference answer (a value, a boxed solution or "
                                          "GSM8K's '#### N').")
    solution_column: str = option("solution", "Fallback column with a worked solution whose last \\boxed{} is "
                                              "the reference.")
    domain_column: str = option("domain", "Column naming each row's domain: math, multiple_choice or code.")
    domain: str | None = option(None, "One domain for all rows (overrides --domain-column).")
    id_column: str = option("id", "Column identifying the prompt (rows sharing it are samples of one prompt); "
                                  "without it, the problem text is used.")
    test_cases_column: str = option("test_cases", "Column with the tests of code rows.")
    skip: list[str] = option([], "Checks to turn off (repeatable): complete, format, tail, repetition, correct, "
                                 "language, length, decontamination, dedup.")
    keep_unverified: bool = option(False, "Keep rows whose answer could not be verified (no reference, timeout).")
    correctness: str = option("require", "require: drop incorrect (and unverified) rows; annotate: keep them, their "
                                         "verdict in the 'verdict' column (train on both and compare with "
                                         "`distill eval --compare` to measure what verification buys).")
    pass_rate_range: str | None = option(None, "LO,HI: keep only rows whose prompt's teacher pass rate (correct / "
                                               "graded samples, the 'pass_rate' column) is within [LO, HI], e.g. "
                                               "0.1,0.9 drops trivially easy and hopeless prompts.")
    require_reference: bool = option(False, "Fail when a math or multiple-choice row has no reference answer.")
    max_language_mix: float = option(0.05, "Largest share of reasoning words in another script than the prompt's.")
    max_tail_chars: int = option(500, "Reject a row whose answer part runs on for more characters than this after "
                                      "its final \\boxed{} (or 'answer:' line): one or two closing sentences fit; "
                                      "'I hope this helps!' said 30 times (~570) does not. Code rows are not measured.")
    repetition_ngram: int = option(20, "Word n-gram size of the repetition check (digits and case kept, so "
                                       "'3+4=7' and '7+4=11' differ; CJK and other scripts without spaces: one "
                                       "character a word).")
    repetition_max_count: int = option(20, "Reject a row in which one --repetition-ngram n-gram occurs more than "
                                           "this many times (AM-Thinking's filter: a 20-gram more than 20 times).")
    repetition_loop_repeats: int = option(8, "Reject a row in which a unit of 1-50 words is repeated this many times "
                                             "in a row, covering at least --repetition-loop-share of the completion "
                                             "(short loops the n-gram count misses).")
    repetition_loop_share: float = option(0.3, "Share of the completion's words a consecutive loop must cover to "
                                               "reject the row (see --repetition-loop-repeats).")
    min_tokens: int = option(0, "Minimum completion tokens.")
    max_tokens: Optional[int] = option(None, "Maximum completion tokens.")
    tokenizer: str | None = option(None, "Tokenizer (model dir, checkpoint ref or Hub id) to count tokens when the "
                                         "rows have no completion_tokens; default: chars/4 estimate.")
    near_duplicate_threshold: float = option(0.9, "MinHash Jaccard similarity at which two completions of one "
                                                  "prompt are near-duplicates (1.0: exact duplicates only).")
    max_per_prompt: Optional[int] = option(None, "Keep at most K completions per prompt.")
    per_prompt_policy: str = option("shortest", "Which K to keep: shortest, random (seeded) or all (no cap).")
    seed: int = option(0, "Seed of the random per-prompt policy.")
    decontaminate: list[str] = option([], "Benchmarks to decontaminate against (repeatable or comma-separated): "
                                          "a built-in of `distill eval` (gsm8k, math500, aime24, aime25, gpqa-diamond, "
                                          "livecodebench, or NAME=FILE for a local copy), a Hub id "
                                          "(ID[:CONFIG]:SPLIT) or a local file.")
    ngram: int = option(8, "Word n-gram size of the decontamination overlap.")
    fuzzy_decontamination: bool = option(False, "Also drop problems with character similarity >= "
                                                "--fuzzy-threshold to a benchmark problem.")
    fuzzy_threshold: float = option(0.9, "Similarity threshold of fuzzy decontamination.")
    judge: str | None = option(None, "An LLM judge (model ref; with --judge-engine openai the served name) asked "
                                     "about rows the rules leave undecided: unverified, or no parseable answer. "
                                     "Its 'correct' keeps a row; it never overrides a rule-based 'incorrect'.")
    judge_engine: str = option("vllm", "Engine of the judge: vllm (in-process) or openai (a server).")
    judge_base_url: str | None = option(None, "openai judge: the server's URL, e.g. http://127.0.0.1:8000/v1.")
    judge_api_key_env: str | None = option(None, "openai judge: env var holding the API key (never stored).")
    judge_max_tokens: int = option(256, "Tokens the judge may write (a sentence of rationale and the verdict).")
    judge_max_model_len: Optional[int] = option(None, "vllm judge: context length (default: the model's).")
    audit: int = option(0, "Also ask the judge about N rows the rules decided (seeded sample) and print the "
                           "agreement of rule and judge; changes no verdict. Needs --judge.")
    plot: bool = option(False, "Write the funnel as funnel.png in the artifact directory.")
    push_to_hub: str | None = option(None, "Push the artifact to this Hub dataset repo after writing it.")

    def validate(self) -> None:
        from distill.stages.filter.features import CHECK_NAMES
        from distill.verify.dedup import POLICIES
        from distill.verify.grader import DOMAINS, normalize_domain

        self.skip = [s.strip().replace("-", "_") for v in self.skip for s in str(v).split(",") if s.strip()]
        self.decontaminate = [s.strip() for v in self.decontaminate for s in str(v).split(",") if s.strip()]
        unknown = [s for s in self.skip if s not in CHECK_NAMES[:-1]]
        if unknown:
            raise UserError(f"--skip {unknown[0]!r} is not a check; use one of {', '.join(CHECK_NAMES[:-1])}")
        if self.domain is not None and normalize_domain(self.domain) not in DOMAINS:
            raise UserError(f"--domain {self.domain!r} is unknown; use one of {', '.join(DOMAINS)}")
        if self.per_prompt_policy not in POLICIES:
            raise UserError(f"--per-prompt-policy {self.per_prompt_policy!r}: use one of {', '.join(POLICIES)}")
        self.validate_grading()
        if self.correctness not in ("require", "annotate"):
            raise UserError(f"--correctness must be require or annotate, got {self.correctness!r}")
        self.pass_rate_band()
        from distill.stages.filter import judge

        judge.validate(self)
        # floats are finite by now (distill.config.coerce refuses nan / inf where they enter)
        checks = [("--max-language-mix", 0 <= self.max_language_mix <= 1),
                  ("--near-duplicate-threshold", 0 < self.near_duplicate_threshold <= 1),
                  ("--fuzzy-threshold", 0 < self.fuzzy_threshold <= 1), ("--ngram", self.ngram >= 1),
                  ("--max-tail-chars", self.max_tail_chars >= 1), ("--repetition-ngram", self.repetition_ngram >= 1),
                  ("--repetition-max-count", self.repetition_max_count >= 1),
                  ("--repetition-loop-repeats", self.repetition_loop_repeats >= 1),
                  ("--repetition-loop-share", 0 < self.repetition_loop_share <= 1),
                  ("--max-per-prompt", self.max_per_prompt is None or self.max_per_prompt >= 1),
                  ("--min-tokens", self.min_tokens >= 0),
                  ("--max-tokens", self.max_tokens is None or self.max_tokens >= self.min_tokens)]
        local = self.tokenizer and self.tokenizer.startswith((".", "/", "~"))
        if local and not Path(self.tokenizer).expanduser().exists():
            raise UserError(f"tokenizer directory {self.tokenizer} not found: pass a local model directory, a "
                            "checkpoint reference or a cached Hub id")
        bad = [flag for flag, ok in checks if not ok]
        if bad:
            value = getattr(self, bad[0][2:].replace("-", "_"))
            raise UserError(f"{bad[0]} is out of range, got {value} (see `distill filter --help`)")

    def pass_rate_band(self) -> tuple[float, float] | None:
        """``--pass-rate-range`` as ``(lo, hi)``; None when unset. One error line when malformed."""
        if not self.pass_rate_range:
            return None
        try:
            lo, hi = (float(part) for part in str(self.pass_rate_range).split(","))
        except ValueError:
            raise UserError(f"--pass-rate-range must be LO,HI (two numbers in [0, 1]), got {self.pass_rate_range!r}"
                            ) from None
        if not 0 <= lo <= hi <= 1:
            raise UserError(f"--pass-rate-range must satisfy 0 <= LO <= HI <= 1, got {self.pass_rate_range!r}")
        return lo, hi


# ---------------------------------------------------------------------------- reading rows


def _column(data, name: str | None, default=None) -> list:
    if name and name in data.column_names:
        return list(data[name])
    return [default] * len(data)


def _prompt_text(prompt) -> str | None:
    """The last user message of a chat ``prompt`` (messages list), for rows without a problem column."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else None
    return None


def _require_named_columns(data, cfg: FilterConfig) -> None:
    """Every column the user named must exist, and a check must not silently read nothing: a wrong answer
    column would make every row "unverified", a missing problem column every row its own prompt."""
    import dataclasses

    from distill.artifacts.sources import require_columns

    defaults = {f.name: f.default for f in dataclasses.fields(FilterConfig)}
    named = {"--completion-column": cfg.completion_column}
    for key in ("problem_column", "answer_column", "solution_column", "domain_column", "id_column",
                "test_cases_column"):
        if getattr(cfg, key) != defaults[key]:  # set by the user (flag, --set or YAML): it must exist
            named["--" + key.replace("_", "-")] = getattr(cfg, key)
    require_columns(data, named)
    columns = set(data.column_names)
    if cfg.problem_column not in columns and "prompt" not in columns:
        raise UserError(f"input has no problem column {cfg.problem_column!r} (nor a chat 'prompt' column): the "
                        "language check, decontamination and per-prompt caps need it; available columns: "
                        f"{', '.join(data.column_names)}; pass --problem-column")


def _read_rows(data, cfg: FilterConfig) -> dict[str, list]:
    from distill.verify.extraction import reference_answer
    from distill.verify.grader import normalize_domain

    _require_named_columns(data, cfg)
    n = len(data)
    problems = _column(data, cfg.problem_column)
    if cfg.problem_column not in data.column_names and "prompt" in data.column_names:
        problems = [_prompt_text(p) for p in data["prompt"]]
    answers, solutions = _column(data, cfg.answer_column), _column(data, cfg.solution_column)
    references = [reference_answer(a) for a in answers]
    references = [r if r is not None else reference_answer(s) for r, s in zip(references, solutions, strict=True)]
    domains = ([normalize_domain(cfg.domain)] * n if cfg.domain
               else [normalize_domain(d) for d in _column(data, cfg.domain_column)])
    verifying = "correct" not in cfg.skip and not cfg.keep_unverified
    if verifying and not {cfg.answer_column, cfg.solution_column} & set(data.column_names) \
            and any(d != "code" for d in domains):
        raise UserError(f"input has no reference answers (no column {cfg.answer_column!r} or "
                        f"{cfg.solution_column!r}): every row would be 'unverified' and dropped; available columns: "
                        f"{', '.join(data.column_names)}; pass --answer-column, or --skip correct / --keep-unverified")
    rows = {
        "completion": [c or "" for c in data[cfg.completion_column]],
        "problem": [str(p) if p is not None else None for p in problems],
        "reference": references,
        "domain": domains,
        "finish_reason": _column(data, "finish_reason"),
        "reported_tokens": _column(data, "completion_tokens"),
        "test_cases": _column(data, cfg.test_cases_column),
        "fn_name": _column(data, "fn_name"),
        "starter_code": _column(data, "starter_code"),
    }
    ids = _column(data, cfg.id_column)
    rows["group"] = [str(i) if i is not None else (f"problem:{p}" if p else f"row:{k}")
                     for k, (i, p) in enumerate(zip(ids, rows["problem"], strict=True))]
    if cfg.require_reference and "correct" not in cfg.skip:
        missing = sum(1 for d, r in zip(domains, references, strict=True)
                      if d in ("math", "multiple_choice") and r is None)
        if missing:
            raise UserError(f"{missing} of {n} rows have no reference answer (looked in column "
                            f"{cfg.answer_column!r}, then {cfg.solution_column!r}; input columns: "
                            f"{', '.join(data.column_names)}): set --answer-column, or drop --require-reference")
    return rows


# ---------------------------------------------------------------------------- the run


def run(cfg: FilterConfig):
    """Filter ``cfg.input`` into a new ``filtered`` artifact; returns the committed Artifact."""
    from distill.verify.grader import prestart_pool

    prestart_pool()  # math-verify loads in the fork server while we load the data
    import datasets

    quiet = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # our own progress bar and funnel table say what happens
    try:
        return _run(cfg)
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _run(cfg: FilterConfig):
    """read -> measure (language, grade, tokens, contamination) -> reject reasons -> dedup / cap -> write."""
    from distill import artifacts
    from distill.stages.filter import decisions, features, judge
    from distill.verify.grader import make_pool
    from distill.verify.pool import available_cpus

    started = time.monotonic()
    artifacts.check_name_kind(cfg.name, "filtered")
    if cfg.judge:
        judge.preflight(cfg)
    data, source, rows, tokenizer, index = _read(cfg)
    num_proc = cfg.num_proc or available_cpus()
    with _progress() as progress, make_pool(num_proc, cfg.grade_config()) as pool:
        measured = _measure(cfg, rows, tokenizer, index, pool, num_proc, progress)
        _warn_without_reasoning(measured, cfg)
        judged: dict = {}
        if cfg.judge:
            report, judged = judge.apply(cfg, measured.graded, rows["domain"], rows["reference"], rows["problem"])
        rates, samples = decisions.pass_rates(rows["group"], [g.verdict.status for g in measured.graded])
        columns, reasons = decisions.reject_reasons(cfg, measured, rates)
        columns["samples"] = samples
        columns["judge_verdict"] = [judged[i][0] if i in judged else None for i in range(len(reasons))]
        columns["judge_rationale"] = [judged[i][1] if i in judged else None for i in range(len(reasons))]
        columns["dedup"] = decisions.dedup_and_cap(cfg, rows["group"], reasons, measured.num_tokens, pool,
                                                   rows["completion"], "dedup" not in cfg.skip)
    columns["reject_reason"] = reasons
    stats = features.run_stats(cfg, rows, measured.graded, reasons, measured.num_tokens, measured.token_source,
                               index, measured.contaminated, set(cfg.skip))
    stats["pass_rates"] = decisions.pass_rate_summary(rows["group"], rates)
    stats["judge"] = report.record() if cfg.judge else None
    stats["seconds"] = round(time.monotonic() - started, 2)
    stats["rows_per_s"] = round(len(data) / max(stats["seconds"], 1e-9), 1)
    return _write(cfg, data, source, columns, reasons, stats)


def _warn_without_reasoning(measured, cfg: FilterConfig) -> None:
    """Most rows without a reasoning block means a non-reasoning teacher, not bad luck: say so, once."""
    from distill import log

    with_block = sum(1 for result in measured.graded if result.reasoning)
    share = with_block / max(len(measured.graded), 1)
    if share < 0.05 and "format" not in cfg.skip:
        log.warn(f"only {share:.1%} of the rows have a <think>…</think> block, so nearly all will be rejected as "
                 "'format': is the teacher a reasoning model? Generate with --few-shot FILE of worked <think> "
                 "examples, or pass --skip format to keep answers without reasoning")


def _hint_when_nothing_kept(stats: dict, cfg: FilterConfig) -> None:
    """0 rows kept is a result, not an error (exit 0), but never a silent one: name where the rows went and
    what usually helps."""
    from distill import log

    if stats["kept"]:
        return
    by_reason = {r: n for r, n in stats["rejected_by_reason"].items() if n}
    worst = max(by_reason, key=by_reason.get) if by_reason else None
    help_by_reason = {
        "format": "the teacher writes no closed <think> block: generate with --few-shot / --few-shot-from DATASET:K "
                  "and --prefill '<think>\\n', a reasoning teacher, or more --max-tokens (see 'incomplete')",
        "incomplete": "the samples were cut off: generate with a larger --max-tokens",
        "incorrect": "the teacher got none right: sample more (`distill generate --until-verified 1 --max-samples "
                     "16`), use a stronger teacher, try --answer-extraction lenient, or keep them with "
                     "--correctness annotate and measure what that costs",
        "unverified": "the grader could not decide: check --answer-column, raise --timeout, or ask a judge "
                      "(--judge MODEL)",
    }
    hint = help_by_reason.get(worst, "see the funnel above, and `distill artifacts head REF --split rejected "
                                     f"--where reject_reason={worst}`")
    log.warn(f"kept 0 of {stats['input_rows']} rows; most were dropped as '{worst}' ({by_reason.get(worst, 0)}): "
             f"{hint}")


def _read(cfg: FilterConfig):
    """(rows, their source, the columns the checks read, tokenizer or None, decontamination index or None)."""
    from distill.artifacts.sources import load_input

    tokenizer = _load_tokenizer(cfg.tokenizer) if cfg.tokenizer and "length" not in cfg.skip else None
    data, source = load_input(cfg.input, split=cfg.split, config=cfg.dataset_config)
    if len(data) == 0:
        raise UserError(f"input {cfg.input!r} has no rows: nothing to filter")
    rows = _read_rows(data, cfg)
    index = None
    if cfg.decontaminate and "decontamination" not in cfg.skip:
        from distill.benchmarks import decontamination_index

        index = decontamination_index(cfg.decontaminate, cfg.ngram,
                                      cfg.fuzzy_threshold if cfg.fuzzy_decontamination else None)
    return data, source, rows, tokenizer, index


def _measure(cfg: FilterConfig, rows, tokenizer, index, pool, num_proc: int, progress):
    from distill.stages.filter import features
    from distill.stages.filter.decisions import Measured
    from distill.verify.grader import GradeItem, grade_batch
    from distill.verify.length import count_tokens

    n = len(rows["completion"])
    want_language, want_shape = "language" not in cfg.skip, "repetition" not in cfg.skip
    found = [((None, None, None), None, None)] * n
    if want_language or want_shape or "tail" not in cfg.skip:
        task = progress.add_task("checking language and trace shape", total=n)
        payloads = [(c, p, cfg.assume_prefilled_think, cfg.max_language_mix, want_language,
                     cfg.repetition_ngram if want_shape else 0, "tail" not in cfg.skip and d != "code")
                    for c, p, d in zip(rows["completion"], rows["problem"], rows["domain"], strict=True)]
        # a check that overruns or fails fails the language check (as before) and leaves the shape unmeasured
        found = pool.map(features.row_checks, payloads, timeout_s=max(60.0, cfg.timeout * 4),
                         on_timeout=lambda _: ((False, 1.0, "timeout"), None, None),
                         on_error=lambda _, msg: ((False, 1.0, "error"), None, None),
                         progress=lambda k: progress.advance(task, k))
    feats, shapes, tails = (list(column) for column in zip(*found, strict=True))
    task = progress.add_task("grading answers", total=n)
    items = [GradeItem(completion=c, domain=d, reference=r, finish_reason=f, problem=p, test_cases=t,
                       fn_name=fn, starter_code=s)
             for c, d, r, f, p, t, fn, s in zip(rows["completion"], rows["domain"], rows["reference"],
                                               rows["finish_reason"], rows["problem"], rows["test_cases"],
                                               rows["fn_name"], rows["starter_code"], strict=True)]
    graded = grade_batch(items, cfg.grade_config(), num_proc=num_proc, pool=pool,
                         progress=lambda k: progress.advance(task, k))
    num_tokens, token_source = count_tokens(rows["completion"], rows["reported_tokens"], tokenizer)
    contaminated = [index.match(p) if index else None for p in rows["problem"]]
    return Measured(feats, shapes, tails, graded, num_tokens, token_source, contaminated)


def _write(cfg: FilterConfig, data, source, columns, reasons, stats):
    """Commit the filtered artifact (kept rows + rejected rows with their reasons), print the funnel."""
    from distill import artifacts
    from distill.artifacts import hub
    from distill.stages.filter import features
    from distill.stages.filter.decisions import build_output

    output = build_output(data, columns, reasons)
    parents = [source.artifact] if source.artifact is not None else []
    config = {**to_dict(cfg), "source": source.info}
    with artifacts.create(cfg.name, "filtered", config=config, parents=parents) as writer:
        writer.save_dataset(output)
        writer.stats.update(stats)
        conversation = _conversation(source.artifact)
        if conversation is not None:
            writer.extra["conversation"] = conversation
        if cfg.plot:
            features.plot_funnel(stats["funnel"], writer.path / "funnel.png", title=f"distill filter: {cfg.input}")
    artifact = artifacts.resolve(str(writer.path))
    features.print_funnel(stats, artifact)
    _hint_when_nothing_kept(stats, cfg)
    if cfg.push_to_hub:
        url = hub.push(artifact, cfg.push_to_hub)
        print(f"pushed {artifact.ref} to {url}")
    return artifact


def _conversation(parent):
    """The ``conversation`` manifest key of the parent, or of the nearest ancestor that has one."""
    from distill.conversation import recorded_conversation

    found = recorded_conversation(parent)
    return found.record if found else None


def _load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    from distill.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(str(resolve_model(spec)))
    except UserError:  # e.g. a checkpoint that fails verification: its own line
        raise
    except Exception as exc:  # noqa: BLE001 - missing files / offline / bad repo id
        raise UserError(f"cannot load tokenizer {spec!r} ({type(exc).__name__}): pass a local model directory, "
                        "a checkpoint reference or a cached Hub id") from None


def _progress():
    from distill import log

    return log.progress(transient=True)
