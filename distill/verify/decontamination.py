"""Decontamination: drop training problems that overlap benchmark problems.

A problem is contaminated when it shares a word n-gram (default 8, after lower-casing and
stripping punctuation) with a benchmark problem — the rule of open-r1's decontaminate script —
or, with ``fuzzy``, when its character similarity to a benchmark problem is >= 0.9
(``difflib`` ratio, the OpenThoughts2 rule). Problems shorter than n words match only whole.

This module only matches text; which problems a benchmark holds (built-ins by name from the one
registry ``distill.benchmarks``, Hub ids, local files) is ``distill.benchmarks.decontamination_index``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

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
