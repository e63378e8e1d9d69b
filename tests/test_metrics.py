"""pass@k and error bars against values worked out by hand."""

import math

import pytest

from distill.stages.eval.metrics import Estimate, estimate, paired_difference, pass_at_k


def test_pass_at_k_hand_values():
    assert pass_at_k(n=4, c=1, k=2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(n=5, c=2, k=3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(n=64, c=3, k=1) == pytest.approx(3 / 64)  # pass@1 is the plain share
    assert pass_at_k(n=10, c=0, k=5) == 0.0
    assert pass_at_k(n=10, c=7, k=5) == 1.0  # fewer than k wrong samples: any k include a right one
    assert pass_at_k(n=1, c=1, k=1) == 1.0


def test_pass_at_k_matches_the_combinatorial_formula():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError):
        pass_at_k(n=4, c=1, k=8)
    with pytest.raises(ValueError):
        pass_at_k(n=4, c=5, k=1)


def test_estimate_mean_stderr_and_interval():
    est = estimate([1.0, 0.0, 0.5, 0.5])
    # sample variance = (0.25 + 0.25 + 0 + 0) / 3 = 1/6; stderr = sqrt(1/6 / 4) = sqrt(1/24)
    assert est.mean == pytest.approx(0.5)
    assert est.stderr == pytest.approx(math.sqrt(1 / 24))
    assert est.ci_low == pytest.approx(0.5 - 1.959964 * math.sqrt(1 / 24), abs=1e-6)
    assert est.ci_high == pytest.approx(0.5 + 1.959964 * math.sqrt(1 / 24), abs=1e-6)
    assert est.count == 4


def test_estimate_clips_rates_but_not_token_counts():
    est = estimate([1, 1, 1, 0])  # mean .75, sd .5, se .25 -> upper bound .75 + .49 clipped to 1
    assert est.stderr == pytest.approx(0.25)
    assert est.ci_high == 1.0
    tokens = estimate([100, 300], low=None, high=None)
    assert tokens.mean == 200 and tokens.stderr == pytest.approx(100.0)
    assert tokens.ci_low == pytest.approx(200 - 1.959964 * 100, abs=1e-3)  # negative: not clipped


def test_all_zero_or_all_one_rates_get_a_wilson_interval():
    zero = estimate([0.0] * 4)
    assert zero.mean == 0.0 and zero.stderr == 0.0
    # Wilson, 0 of 4: upper = z^2 / (4 + z^2)
    assert zero.ci_low == 0.0 and zero.ci_high == pytest.approx(1.959964 ** 2 / (4 + 1.959964 ** 2), abs=1e-6)
    one = estimate([1.0] * 4)
    assert one.ci_high == 1.0 and one.ci_low == pytest.approx(1 - zero.ci_high)
    # not for unbounded values or differences: equal values there are a real point estimate
    assert estimate([5.0, 5.0], low=None, high=None).ci_high == 5.0


def test_estimate_degenerate_cases():
    assert estimate([]).mean is None and estimate([]).count == 0
    single = estimate([0.25])
    assert single.mean == 0.25 and single.stderr is None and single.count == 1
    assert estimate([None, 1.0, float("nan"), 0.0]).count == 2  # missing values are skipped


def test_paired_difference_uses_common_problems_only():
    after = {"a": 1.0, "b": 1.0, "c": 0.5}
    before = {"a": 0.5, "b": 0.0, "c": 0.5, "d": 1.0}
    diff = paired_difference(after, before)
    # diffs .5, 1, 0: mean .5, sample variance ((0)^2 + .5^2 + .5^2) / 2 = .25, se = sqrt(.25 / 3)
    assert diff.count == 3
    assert diff.mean == pytest.approx(0.5)
    assert diff.stderr == pytest.approx(math.sqrt(0.25 / 3))
    # pairing: a constant shift has zero paired error even though each side varies a lot
    shift = paired_difference({"a": 0.9, "b": 0.2, "c": 0.6}, {"a": 0.8, "b": 0.1, "c": 0.5})
    assert shift.mean == pytest.approx(0.1) and shift.stderr == pytest.approx(0.0, abs=1e-12)


def test_estimate_round_trips_through_dict():
    est = estimate([0.0, 1.0, 1.0])
    assert Estimate.from_dict(est.to_dict()) == est
    unbounded = estimate([10, 30], low=None, high=None)
    assert unbounded.mean == 20 and unbounded.ci_high > 30


def test_intervals_near_the_ends_widen_with_wilson():
    """1 of 30 must not look surer than 0 of 30 (a new user's GSM8K trial printed 3.3 [0.0, 9.9] beside
    0.0 [0.0, 11.4]); a rate with at least 5 successes and 5 failures keeps the clustered normal interval."""
    zero, one = estimate([0.0] * 30), estimate([1.0] + [0.0] * 29)
    assert one.ci_high > zero.ci_high and zero.ci_low == one.ci_low == 0.0
    assert estimate([0.5] * 4).ci_low < 0.5 < estimate([0.5] * 4).ci_high  # no point interval from 4 problems
    middle = estimate([1.0] * 50 + [0.0] * 50)
    assert middle.ci_low == pytest.approx(0.5 - 1.959963984540054 * middle.stderr)


def test_a_paired_difference_with_no_change_is_no_point():
    """30 problems, none changed: the difference is 0, but not known to be exactly 0 (a new user's trial printed
    +0.0 [+0.0, +0.0]); with many changed problems the paired normal interval stands."""
    same = {f"p{i}": 0.0 for i in range(30)}
    none_changed = paired_difference(same, same)
    assert none_changed.mean == 0 and none_changed.ci_low == pytest.approx(-0.114, abs=1e-3)
    assert none_changed.ci_high == pytest.approx(0.114, abs=1e-3)
    before = {f"p{i}": 0.0 for i in range(30)}
    after = {f"p{i}": 1.0 if i < 12 else 0.0 for i in range(30)}
    many = paired_difference(after, before)
    assert many.ci_low == pytest.approx(0.4 - 1.959963984540054 * many.stderr)
