"""Answer verifiers by domain (math, multiple choice, code), behind one small interface.

A verifier takes the *answer part* of a completion (the text after ``</think>``) and the row's
reference, and returns a ``Verdict``. The filter stage and ``distill eval`` both call
``verify(domain, answer_text, reference, row)`` so there is exactly one grader.
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
