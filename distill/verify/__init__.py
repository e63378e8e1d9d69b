"""Pure checks on completions: no dataset, Hub, artifact or engine I/O (tests/test_architecture.py).

    format.py / language.py / length.py / dedup.py / decontamination.py   the filter's row checks
    math.py (+ units.py) / choice.py / code.py (+ sandbox.py, pool.py)     answer verifiers by domain
    grader.py   GradeOptions + grade_batch: the one grader `distill filter` and `distill eval` call

A verifier takes the *answer part* of a completion (the text after ``</think>``) and the row's
reference, and returns a ``Verdict``. Math answers with units are compared as quantities (``units.py``:
``500 cm`` = ``5 m``, ``5 m`` != ``5 cm``), and a decimal equals an exact reference only when it is that
value (``0.5`` = ``1/2``, ``0.3333333`` != ``1/3``); see ``math.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORRECT = "correct"
INCORRECT = "incorrect"
UNVERIFIED = "unverified"  # no reference, no extractable answer judged impossible, or timed out


@dataclass
class Verdict:
    status: str  # correct | incorrect | unverified
    predicted: str | None = None  # the extracted answer, as text
    reason: str = ""  # short human-readable detail ("timeout", "failed test 3: expected 4 got 5")
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.status == CORRECT
