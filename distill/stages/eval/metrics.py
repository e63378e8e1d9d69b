"""Scores with error bars: the unbiased pass@k estimator, clustered standard errors, paired differences.

Every number `distill eval` reports is a mean over problems of a per-problem value (the share of a
problem's n samples that are correct, its pass@k estimate, its mean completion length, ...). The
standard error is the one of that mean over problems, ``sd(per-problem values) / sqrt(P)``: averaging
a problem's samples first makes it a *clustered* standard error, so it counts both the spread between
problems and the sampling noise within each problem (Miller 2024, "Adding Error Bars to Evals"), and it
does not shrink as 1/sqrt(P*n) the way a naive binomial error over all samples would.

    >>> pass_at_k(n=4, c=1, k=2)         # 1 - C(3,2)/C(4,2)
    0.5
    >>> estimate([1.0, 0.0, 0.5, 0.5]).mean
    0.5

Intervals use the normal approximation (mean ± 1.96·SE), clipped to the value's natural range. Near the
ends of [0, 1] it fails: when every problem scores 0 (or every one 1) it collapses to a point, which would
claim certainty from, say, 4 problems, and 1 of 30 would get a narrower interval than 0 of 30. So a rate
whose successes or failures number under 5 (the textbook condition for the normal approximation, counted
over problems) gets the union of the normal and the Wilson score interval over problems (``[0, 0.49]`` for
0 of 4; ``[0, 0.167]`` for 1 of 30, wider than 0 of 30's ``[0, 0.114]``); Wilson's is valid for any
per-problem values in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples of which c are correct (Chen et al. 2021).

    ``1 - C(n-c, k) / C(n, k)``, computed as a product so that large n cannot overflow.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least k samples per problem (have n={n}) and k >= 1")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


@dataclass(frozen=True)
class Estimate:
    """A mean over units (problems) with its standard error and 95% interval."""

    mean: float | None
    stderr: float | None
    ci_low: float | None
    ci_high: float | None
    count: int  # number of units (problems) averaged

    def to_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "ci95": [self.ci_low, self.ci_high], "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping) -> Estimate:
        low, high = (data.get("ci95") or [None, None])[:2]
        return cls(data.get("mean"), data.get("stderr"), low, high, int(data.get("count") or 0))



def estimate(values: Iterable[float | None], low: float | None = 0.0, high: float | None = 1.0) -> Estimate:
    """Mean of per-unit values with the standard error over units; ``None`` values are skipped.

    ``low``/``high`` clip the interval (rates live in [0, 1]; pass ``None`` for unbounded values
    such as token counts). With a single unit the standard error is undefined (``None``).
    """
    data = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    count = len(data)
    if count == 0:
        return Estimate(None, None, None, None, 0)
    mean = sum(data) / count
    if count < 2:
        return Estimate(mean, None, None, None, count)
    variance = sum((v - mean) ** 2 for v in data) / (count - 1)
    stderr = math.sqrt(variance / count)
    ci_low, ci_high = mean - Z95 * stderr, mean + Z95 * stderr
    if (low, high) == (0.0, 1.0) and min(mean, 1 - mean) * count < 5:
        wilson_low, wilson_high = wilson_interval(mean, count)
        ci_low, ci_high = min(ci_low, wilson_low), max(ci_high, wilson_high)
    if low is not None:
        ci_low = max(low, ci_low)
    if high is not None:
        ci_high = min(high, ci_high)
    return Estimate(mean, stderr, ci_low, ci_high, count)


def wilson_interval(share: float, count: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a share observed over ``count`` units."""
    denominator = 1 + z * z / count
    centre = (share + z * z / (2 * count)) / denominator
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(after: Mapping[str, float | None], before: Mapping[str, float | None],
                      bound: float | None = 1.0) -> Estimate:
    """Mean of ``after[id] - before[id]`` over the ids both have, with its paired standard error.

    Pairing on the same problems removes the between-problem variance that two independent error
    bars would double count, so a real improvement shows up with a much tighter interval.

    For rates (``bound`` 1) with under 5 problems whose score changed, the normal interval says too much (no
    change anywhere would print ``+0.0 [+0.0, +0.0]``): a difference of rates is at most the share of problems
    that changed, so the interval is widened to ± the Wilson upper bound of that share (``[-0.114, +0.114]`` for
    30 problems none of which changed).
    """
    common = [key for key in after if key in before and after[key] is not None and before[key] is not None]
    diffs = [float(after[key]) - float(before[key]) for key in common]
    result = estimate(diffs, low=-bound if bound is not None else None, high=bound)
    changed = sum(d != 0 for d in diffs)
    if bound == 1.0 and result.count >= 2 and changed < 5:
        _, widest = wilson_interval(changed / result.count, result.count)
        result = Estimate(result.mean, result.stderr, min(result.ci_low, -widest), max(result.ci_high, widest),
                          result.count)
    return result

