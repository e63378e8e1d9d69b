"""Decontamination: drop training problems that overlap benchmark problems.

A problem is contaminated when it shares a word n-gram (default 8, after lower-casing and
stripping punctuation) with a benchmark problem — the rule of open-r1's decontaminate script —
or, with ``fuzzy``, when its character similarity to a benchmark problem is >= 0.9
(``difflib`` ratio, the OpenThoughts2 rule). Problems shorter than n words match only whole.

Benchmarks are named by alias (``math500``, ``aime24``, ``aime25``, ``gpqa_diamond``, ``gsm8k``,
``livecodebench``), by Hub id (``ID``, ``ID:SPLIT`` or ``ID:CONFIG:SPLIT``; split ``test`` by
default) or by a local jsonl/json/parquet/csv file; the problem column is found by name.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from distill.errors import UserError

# alias -> (Hub id, config, split)
BENCHMARKS: dict[str, tuple[str, str | None, str]] = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train"),
    "aime25": ("yentinglin/aime_2025", None, "train"),
    "gpqa_diamond": ("Idavidrein/gpqa", "gpqa_diamond", "train"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "livecodebench": ("livecodebench/code_generation_lite", "release_v5", "test"),
}
PROBLEM_COLUMNS = ("problem", "Problem", "question", "Question", "question_content", "prompt", "input")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    """Word n-grams; a text shorter than n words gives itself as its only 'n-gram'."""
    tokens = words(text)
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class BenchmarkIndex:
    """n-grams of benchmark problems -> the benchmark that holds them."""

    n: int = 8
    fuzzy_threshold: float | None = None
    grams: dict[tuple[str, ...], str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (benchmark, normalized text)
    _trigrams: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, benchmark: str, problems: list[str]) -> None:
        for problem in problems:
            for gram in ngrams(problem, self.n):
                self.grams.setdefault(gram, benchmark)
            if self.fuzzy_threshold is not None:
                tokens = words(problem)
                index = len(self.problems)
                self.problems.append((benchmark, " ".join(tokens)))
                for gram in {tuple(tokens[i:i + 3]) for i in range(max(1, len(tokens) - 2))}:
                    self._trigrams.setdefault(gram, []).append(index)
        self.sizes[benchmark] = self.sizes.get(benchmark, 0) + len(problems)

    def match(self, problem: str | None) -> str | None:
        """The benchmark this problem overlaps, or None."""
        if not problem:
            return None
        for gram in ngrams(problem, self.n):
            hit = self.grams.get(gram)
            if hit is not None:
                return hit
        if self.fuzzy_threshold is None:
            return None
        tokens = words(problem)
        text = " ".join(tokens)
        candidates: set[int] = set()
        for gram in {tuple(tokens[i:i + 3]) for i in range(max(1, len(tokens) - 2))}:
            candidates.update(self._trigrams.get(gram, ()))
        for index in sorted(candidates):
            benchmark, other = self.problems[index]
            matcher = difflib.SequenceMatcher(None, text, other, autojunk=False)
            if (matcher.real_quick_ratio() >= self.fuzzy_threshold and matcher.quick_ratio() >= self.fuzzy_threshold
                    and matcher.ratio() >= self.fuzzy_threshold):
                return benchmark
        return None


def _problem_column(columns: list[str], source: str) -> str:
    for name in PROBLEM_COLUMNS:
        if name in columns:
            return name
    raise UserError(f"benchmark {source} has no problem column (looked for {', '.join(PROBLEM_COLUMNS)}; "
                    f"it has {', '.join(columns)}): convert it to a jsonl file with a 'problem' field")


def load_benchmark(spec: str) -> tuple[str, list[str]]:
    """``(name, problems)`` for an alias, a Hub id (``ID[:CONFIG]:SPLIT``) or a local file."""
    from distill.artifacts.sources import FILE_FORMATS, load_input

    path = Path(spec).expanduser()
    if path.suffix.lower() in FILE_FORMATS or path.exists():
        data, _ = load_input(str(path))
        name = path.stem
    else:
        if spec.lower() in BENCHMARKS:
            repo, config, split = BENCHMARKS[spec.lower()]
            name = spec.lower()
        else:
            parts = spec.split(":")
            if len(parts) > 3 or not parts[0]:
                raise UserError(f"bad benchmark {spec!r}: use an alias ({', '.join(BENCHMARKS)}), "
                                "a Hub id as ID, ID:SPLIT or ID:CONFIG:SPLIT, or a local file")
            repo = parts[0]
            config = parts[1] if len(parts) == 3 else None
            split = parts[-1] if len(parts) > 1 else "test"
            name = repo
        data, _ = load_input(repo, split=split, config=config)
    column = _problem_column(data.column_names, spec)
    return name, [str(p) for p in data[column] if p]


def build_index(specs: list[str], n: int = 8, fuzzy_threshold: float | None = None) -> BenchmarkIndex:
    index = BenchmarkIndex(n=n, fuzzy_threshold=fuzzy_threshold)
    for spec in specs:
        name, problems = load_benchmark(spec)
        index.add(name, problems)
    return index
