"""Benchmarks for `distill eval`: built-in ones by name (from the Hub), or any local file / artifact.

    problems, info = load_benchmark("math500")                        # HuggingFaceH4/MATH-500, test
    problems, info = load_benchmark("gsm8k=data/gsm8k_test.jsonl")     # a built-in read from a local copy
    problems, info = load_benchmark("my_set.jsonl", problem_column="question", answer_column="answer")
    index = decontamination_index(["gpqa-diamond", "math500", "org/set:test", "bench.jsonl"])  # distill filter
    rows, source, benches, sampling = load_outputs("traces@v1", [bench])   # precomputed completions

A spec is a built-in NAME (loaded from the Hub), ``NAME=FILE`` (the same benchmark from a local
jsonl/json/parquet/csv copy in the Hub's columns: for offline machines), a local file or an artifact
reference with problem/answer columns, or a Hub dataset id ``org/name``. Each becomes a list of
``Problem`` rows with a stable id, the text shown to the model and the reference answer.

Built-ins (Hub ids, configs, splits and columns as lighteval / open-r1 / evalchemy use them):

    gsm8k          openai/gsm8k, config main, split test (1,319): question, answer (worked solution ending
                   "#### N": the reference is N without thousands separators). No id column: ids are
                   "gsm8k-<row index>".
    math500        HuggingFaceH4/MATH-500, split test (500): problem, solution, answer, subject, level,
                   unique_id (lighteval "math_500").
    aime24         HuggingFaceH4/aime_2024, split train (30): id, problem, solution, answer, url, year
                   (lighteval "aime24").
    aime25         yentinglin/aime_2025, split train (30): id, problem, solution, answer, url, year
                   (lighteval "aime25").
    gpqa-diamond   Idavidrein/gpqa, config gpqa_diamond, split train (198): Question, Correct Answer,
                   Incorrect Answer 1-3, Record ID (lighteval "gpqa:diamond"). Gated on the Hub: accept its
                   terms and log in; never bundle or publish it. The four options are shuffled with a fixed
                   seed per question (Random("gpqa-diamond:<Record ID>")), so every run and every model sees
                   the same order; the reference is the correct letter. Prompt: lighteval's gpqa_instruct
                   ("... 'Answer: $LETTER' ... A) .. D) ..").
    livecodebench  lighteval/code_generation_lite, config v4_v5, split test (lighteval
                   "lcb:codegeneration"; a script-free copy of livecodebench/code_generation_lite):
                   question_id, question_content, starter_code, public_test_cases (JSON),
                   private_test_cases (base64(zlib(pickle(JSON)))), metadata (JSON with func_name),
                   difficulty, contest_date. Graded in the code sandbox (distill/verify/code.py).
                   Prompt: lighteval's prepare_prompt.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill import log
from distill.errors import UserError

MATH = "math"
MULTIPLE_CHOICE = "multiple_choice"
CODE = "code"


@dataclass
class Problem:
    """One benchmark item, ready to prompt and grade."""

    id: str
    problem: str  # the text that fills the prompt template's {problem}
    reference: str | None  # the gold answer (a number/expression, a letter, or None for code)
    domain: str = MATH  # math | multiple_choice | code: picks the verifier
    prompt_template: str | None = None  # benchmark-specific template (multiple choice, code); None = the run's
    test_cases: list[dict] | None = None  # code: [{"input", "output", "testtype"}]
    fn_name: str | None = None
    starter_code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # subject, level, choices, difficulty...


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    hub_id: str
    config: str | None
    split: str
    domain: str
    convert: Callable[[dict, int], Problem]
    samples: dict[str, int]  # samples per problem that each protocol prescribes for this benchmark
    about: str
    gated: bool = False  # may not be redistributed (never push its problems to the Hub)
    license: str | None = None


# ---------------------------------------------------------------------------- row converters


def gsm8k_reference(solution: str | None) -> str | None:
    """``"... #### 1,234"`` -> ``"1234"``."""
    if not solution or "####" not in str(solution):
        return None
    return str(solution).rsplit("####", 1)[1].strip().replace(",", "").rstrip(".") or None


def _gsm8k(row: dict, index: int) -> Problem:
    return Problem(id=str(row.get("id") or f"gsm8k-{index}"), problem=row["question"],
                   reference=gsm8k_reference(row["answer"]))


def _math500(row: dict, index: int) -> Problem:
    return Problem(id=str(row.get("unique_id") or f"math500-{index}"), problem=row["problem"],
                   reference=str(row["answer"]),
                   extra={k: row[k] for k in ("subject", "level") if row.get(k) is not None})


def _aime(prefix: str) -> Callable[[dict, int], Problem]:
    def convert(row: dict, index: int) -> Problem:
        ident = row.get("id")
        return Problem(id=f"{prefix}-{ident}" if ident is not None else f"{prefix}-{index}",
                       problem=row["problem"], reference=str(row["answer"]).strip())
    return convert


GPQA_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before "
    "answering.\n\n{Question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}"
)
LETTERS = "ABCD"


def _gpqa(row: dict, index: int) -> Problem:
    record = str(row.get("Record ID") or index)
    options = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"],
               row["Incorrect Answer 3"]]
    options = [str(o).strip() for o in options]
    order = list(range(4))
    # A string seed is hashed with SHA-512 (not Python's salted hash): the same order in every process.
    random.Random(f"gpqa-diamond:{record}").shuffle(order)
    shuffled = [options[i] for i in order]
    gold = LETTERS[order.index(0)]
    text = (GPQA_TEMPLATE.replace("{Question}", str(row["Question"]).strip())
            .replace("{A}", shuffled[0]).replace("{B}", shuffled[1])
            .replace("{C}", shuffled[2]).replace("{D}", shuffled[3]))
    return Problem(id=f"gpqa-{record}", problem=text, reference=gold, domain=MULTIPLE_CHOICE,
                   prompt_template="{problem}", extra={"choices": dict(zip(LETTERS, shuffled, strict=True))})


class _JsonOnlyUnpickler(pickle.Unpickler):
    """LiveCodeBench pickles a plain JSON string; refuse anything that would import code."""

    def find_class(self, module, name):  # noqa: D102 - pickle hook
        raise UserError(f"livecodebench private_test_cases tried to load {module}.{name}: refusing to unpickle "
                        "code; use the lighteval/code_generation_lite data")


def decode_private_tests(value: Any) -> list[dict]:
    """LiveCodeBench's ``private_test_cases``: base64(zlib(pickle(json string))), or already JSON."""
    if not value:
        return []
    if isinstance(value, list):
        return value
    text = str(value)
    if text.lstrip().startswith("["):
        return json.loads(text)
    raw = zlib.decompress(base64.b64decode(text))
    decoded = _JsonOnlyUnpickler(io.BytesIO(raw)).load()
    return json.loads(decoded) if isinstance(decoded, (str, bytes)) else decoded


def lcb_prompt(question: str, starter_code: str | None) -> str:
    """lighteval's LiveCodeBench prompt (tasks/lcb/main.py prepare_prompt)."""
    query = ("You will be given a question (problem specification) and will generate a correct Python program "
             "that matches the specification and passes all tests.\n\n")
    query += f"Question: {question}\n\n"
    if starter_code:
        query += ("You will use the following starter code to write the solution to the problem and enclose your "
                  "code within delimiters.\n")
        query += f"```python\n{starter_code}\n```\n\n"
    else:
        query += ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test "
                  "on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
                  "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n")
        query += "```python\n# YOUR CODE HERE\n```\n\n"
    return query


def _livecodebench(row: dict, index: int) -> Problem:
    public = row.get("public_test_cases") or "[]"
    tests = (json.loads(public) if isinstance(public, str) else list(public)) + decode_private_tests(
        row.get("private_test_cases"))
    metadata = row.get("metadata") or "{}"
    metadata = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
    starter = row.get("starter_code") or None
    return Problem(id=str(row.get("question_id") or f"lcb-{index}"),
                   problem=lcb_prompt(row["question_content"], starter), reference=None, domain=CODE,
                   prompt_template="{problem}", test_cases=tests, fn_name=metadata.get("func_name"),
                   starter_code=starter,
                   extra={k: row[k] for k in ("difficulty", "platform", "contest_date") if row.get(k)})


# The open-r1 sample counts are lighteval's (open-r1 README); evalchemy's are its n_repeat per benchmark.
BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in [
    BenchmarkSpec("gsm8k", "openai/gsm8k", "main", "test", MATH, _gsm8k,
                  {"open-r1": 1, "evalchemy": 1, "greedy": 1}, "grade-school math word problems (1,319)",
                  license="mit"),
    BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", None, "test", MATH, _math500,
                  {"open-r1": 4, "evalchemy": 1, "greedy": 1}, "500 MATH competition problems (Lightman et al.)",
                  license="mit"),
    BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", None, "train", MATH, _aime("aime24"),
                  {"open-r1": 64, "evalchemy": 5, "greedy": 1}, "AIME 2024 I+II (30 integer answers)"),
    BenchmarkSpec("aime25", "yentinglin/aime_2025", None, "train", MATH, _aime("aime25"),
                  {"open-r1": 64, "evalchemy": 5, "greedy": 1}, "AIME 2025 I+II (30 integer answers)"),
    BenchmarkSpec("gpqa-diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", MULTIPLE_CHOICE, _gpqa,
                  {"open-r1": 8, "evalchemy": 3, "greedy": 1}, "198 graduate-level science questions (A-D)",
                  gated=True, license="cc-by-4.0"),
    BenchmarkSpec("livecodebench", "lighteval/code_generation_lite", "v4_v5", "test", CODE, _livecodebench,
                  {"open-r1": 16, "evalchemy": 6, "greedy": 1}, "LiveCodeBench code generation v4_v5 (sandboxed)"),
]}
ALIASES = {"math-500": "math500", "math_500": "math500", "aime_2024": "aime24", "aime2024": "aime24",
           "aime_2025": "aime25", "aime2025": "aime25", "gpqa": "gpqa-diamond", "gpqa_diamond": "gpqa-diamond",
           "gpqa:diamond": "gpqa-diamond", "lcb": "livecodebench"}


def known_names() -> str:
    return ", ".join(BENCHMARKS)


def builtin(name: str) -> BenchmarkSpec | None:
    key = name.strip().lower()
    return BENCHMARKS.get(ALIASES.get(key, key))


# ---------------------------------------------------------------------------- loading


@dataclass
class LoadedBenchmark:
    name: str  # short name used in tables and the per-sample rows
    spec: str  # what the user passed
    problems: list[Problem]
    source: dict[str, Any]  # for the manifest: Hub id + revision, or file path + sha256, or artifact ref
    builtin: BenchmarkSpec | None = None
    artifact: Any = None  # the artifact a benchmark was read from (a parent of the eval)

    @property
    def gated(self) -> bool:
        return bool(self.builtin and self.builtin.gated)


def load_benchmark(spec: str, *, problem_column: str = "problem", answer_column: str = "answer",
                   id_column: str = "id", limit: int | None = None) -> LoadedBenchmark:
    """Resolve a benchmark spec to problems (see the module docstring for the spec forms)."""
    from distill.artifacts import sources

    spec = str(spec).strip()
    name_part, sep, file_part = spec.partition("=")
    known = builtin(name_part) if sep else builtin(spec)
    if sep and known is None:
        raise UserError(f"unknown benchmark {name_part!r} in {spec!r}: NAME=FILE needs a built-in NAME "
                        f"({known_names()})")
    if known is not None and sep:
        data, source = sources.load_input(file_part)
        return _convert(known.name, spec, data, source, known, limit)
    if known is not None:
        try:
            data, source = sources.load_input(known.hub_id, split=known.split, config=known.config)
        except UserError as exc:
            gated = " (gated: accept its terms on the Hub and `huggingface-cli login`)" if known.gated else ""
            raise UserError(f"{exc}{gated}; offline, pass a local copy as --benchmark {known.name}=FILE") from None
        return _convert(known.name, spec, data, source, known, limit)
    if not _could_be_data(spec):
        raise UserError(f"unknown benchmark {spec!r}: use one of {known_names()}, NAME=FILE for a local copy of "
                        "one, or a local .jsonl/.json/.parquet/.csv file with problem/answer columns")
    # Hub ids and artifacts: the "test" split when there is one (files have a single split).
    data, source = sources.load_input(spec, default_split="test")
    sources.require_columns(data, {"--problem-column": problem_column}, what=f"benchmark {spec}")
    name = Path(spec).stem if Path(spec).expanduser().is_file() else spec.replace("/", "_").replace("@", "_")
    return _convert(name, spec, data, source, None, limit, problem_column, answer_column, id_column)


def _could_be_data(spec: str) -> bool:
    """A local file, an artifact reference, or something shaped like a Hub id."""
    from distill import artifacts

    path = Path(spec).expanduser()
    if path.exists() or path.suffix.lower() in (".jsonl", ".json", ".parquet", ".csv"):
        return True
    if "@" in spec or spec.startswith((".", "/", "~")):
        return True
    return spec.count("/") == 1 or artifacts.looks_like_reference(spec)


def _convert(name: str, spec: str, data, source, known: BenchmarkSpec | None, limit: int | None,
             problem_column: str = "problem", answer_column: str = "answer", id_column: str = "id"
             ) -> LoadedBenchmark:
    if limit is not None and limit < len(data):
        data = data.select(range(limit))
    problems: list[Problem] = []
    for index, row in enumerate(data):
        try:
            problem = known.convert(row, index) if known else _generic(row, index, name, problem_column,
                                                                        answer_column, id_column)
        except KeyError as exc:
            raise UserError(f"benchmark {spec}: row {index} has no column {exc} expected for "
                            f"{known.name if known else 'a generic benchmark'}; available columns: "
                            f"{', '.join(data.column_names)}") from None
        problems.append(problem)
    if not problems:
        raise UserError(f"benchmark {spec} has no problems")
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise UserError(f"benchmark {spec} has duplicate id {problem.id!r}: ids must be unique "
                            "(fix the id column, or drop it to use row numbers)")
        seen.add(problem.id)
    return LoadedBenchmark(name=name, spec=spec, problems=problems, source=dict(source.info), builtin=known,
                           artifact=source.artifact)


def _generic(row: dict, index: int, name: str, problem_column: str, answer_column: str, id_column: str) -> Problem:
    """A row of a user dataset: problem/answer columns; an answer may be a worked solution (#### N, \\boxed)."""
    from distill.verify.grader import normalize_domain, reference_answer

    raw_answer = row.get(answer_column)
    reference = reference_answer(raw_answer) if raw_answer not in (None, "") else None
    ident = row.get(id_column)
    domain = normalize_domain(row.get("domain"), CODE if row.get("test_cases") else MATH)
    tests = row.get("test_cases")
    if isinstance(tests, str):
        tests = json.loads(tests)
    return Problem(id=str(ident) if ident not in (None, "") else f"{name}-{index}", problem=str(row[problem_column]),
                   reference=reference, domain=domain, test_cases=tests, fn_name=row.get("fn_name"),
                   starter_code=row.get("starter_code"))


def load_outputs(spec: str, benches: list[LoadedBenchmark], *, completion_column: str = "completion",
                 problem_column: str = "problem", answer_column: str = "answer", id_column: str = "id"):
    """Precomputed completions (``distill eval --outputs``: a file or a traces artifact) as sample rows,
    matched to the benchmarks' problems by id, else by problem text; without benchmarks the rows carry
    their own references (``answer_column``). Returns ``(rows, source, benchmarks, sampling)``."""

    from distill.artifacts import sources
    from distill.verify.grader import normalize_domain, reference_answer

    data, source = sources.load_input(spec)
    sources.require_columns(data, {"--completion-column": completion_column}, what=f"outputs {spec}")
    columns = set(data.column_names)
    if not benches:
        sources.require_columns(data, {"--answer-column": answer_column}, what=f"outputs {spec} "
                                "(or pass --benchmark to take the references from it)")
        own = LoadedBenchmark(name=source.artifact.name if source.artifact else Path(spec).stem,
                              spec=spec, problems=[], source=dict(source.info))
    by_id = {b.name: {p.id: p for p in b.problems} for b in benches}
    by_text = {b.name: {p.problem.strip(): p for p in b.problems} for b in benches}
    rows, counters, own_problems = [], {}, {}
    for i, row in enumerate(data):
        ident = row.get(id_column) if id_column in columns else None
        text = row.get(problem_column) if problem_column in columns else None
        if benches:
            bench_name = row.get("benchmark") if len(benches) > 1 and "benchmark" in columns else benches[0].name
            if bench_name not in by_id:
                raise UserError(f"outputs row {i} is for benchmark {bench_name!r}, not among --benchmark "
                                f"{', '.join(by_id)}")
            problem = by_id[bench_name].get(str(ident)) or by_text[bench_name].get(str(text or "").strip())
            if problem is None:
                raise UserError(f"outputs row {i} (id {ident!r}) matches no problem of {bench_name} by id or "
                                f"problem text: check --id-column/--problem-column or the --benchmark")
        else:
            bench_name = own.name
            key = str(ident) if ident not in (None, "") else str(text or i)
            problem = own_problems.get(key)
            if problem is None:
                raw = row.get(answer_column)
                problem = own_problems[key] = Problem(
                    id=key, problem=str(text or ""), reference=reference_answer(raw) if raw not in (None, "") else None,
                    domain=normalize_domain(row.get("domain")), test_cases=row.get("test_cases"),
                    fn_name=row.get("fn_name"), starter_code=row.get("starter_code"))
        slot = (bench_name, problem.id)
        index = row.get("sample_index") if row.get("sample_index") is not None else counters.get(slot, 0)
        counters[slot] = counters.get(slot, 0) + 1
        rows.append({"benchmark": bench_name, "id": problem.id, "sample_index": int(index), "problem": problem.problem,
                     "prompt": row.get("prompt"), "reference": problem.reference, "domain": problem.domain,
                     "completion": row.get(completion_column) or "", "finish_reason": row.get("finish_reason"),
                     "prompt_tokens": row.get("prompt_tokens"), "completion_tokens": row.get("completion_tokens"),
                     "_problem": problem})
    if not benches:
        own.problems = list(own_problems.values())
        benches = [own]
    for bench in benches:
        scored = {pid for (b, pid) in counters if b == bench.name}
        if len(scored) < len(bench.problems):
            log.warn(f"{len(bench.problems) - len(scored)} of {len(bench.problems)} problems of {bench.name} "
                     "have no outputs; scoring the others")
    first = data[0] if len(data) else {}
    sampling = {"protocol": None, "source": "outputs",
                **{k: first.get(k) for k in ("temperature", "top_p", "max_tokens", "seed") if k in columns}}
    return rows, source, benches, sampling


# ---------------------------------------------------------------------------- decontamination (distill filter)

# Where a benchmark that is not a built-in keeps its problem text (the first of these columns it has).
PROBLEM_COLUMNS = ("problem", "Problem", "question", "Question", "question_content", "prompt", "input")


def decontamination_problems(spec: str) -> tuple[str, list[str]]:
    """``(name, problem texts)`` to decontaminate against: a built-in by any of its names (the same entry
    `distill eval` scores, so the same Hub id, config and split), ``NAME=FILE``, a local file, or a Hub id
    as ``ID``, ``ID:SPLIT`` or ``ID:CONFIG:SPLIT`` (split ``test`` by default)."""
    from distill.artifacts.sources import FILE_FORMATS, load_input

    name_part, sep, _ = spec.partition("=")
    known = builtin(name_part if sep else spec)
    if known is not None:
        return known.name, [p.problem for p in load_benchmark(spec).problems if p.problem]
    path = Path(spec).expanduser()
    if path.suffix.lower() in FILE_FORMATS or path.exists():
        data, _ = load_input(str(path))
        name = path.stem
    else:
        parts = spec.split(":")
        if len(parts) > 3 or not parts[0]:
            raise UserError(f"bad benchmark {spec!r}: use a built-in ({known_names()}), a Hub id as ID, ID:SPLIT "
                            "or ID:CONFIG:SPLIT, or a local file")
        config = parts[1] if len(parts) == 3 else None
        split = parts[-1] if len(parts) > 1 else "test"
        data, _ = load_input(parts[0], split=split, config=config)
        name = parts[0]
    column = next((c for c in PROBLEM_COLUMNS if c in data.column_names), None)
    if column is None:
        raise UserError(f"benchmark {spec} has no problem column (looked for {', '.join(PROBLEM_COLUMNS)}; "
                        f"it has {', '.join(data.column_names)}): convert it to a jsonl file with a 'problem' field")
    return name, [str(p) for p in data[column] if p]


def decontamination_index(specs: list[str], n: int = 8, fuzzy_threshold: float | None = None):
    """A ``BenchmarkIndex`` (word n-grams, optional fuzzy match) of every benchmark in ``specs``."""
    from distill.verify.decontamination import BenchmarkIndex

    index = BenchmarkIndex(n=n, fuzzy_threshold=fuzzy_threshold)
    for spec in specs:
        name, problems = decontamination_problems(spec)
        index.add(name, problems)
    return index
