"""`distill filter`: each row carries its prompt's teacher pass rate and sample count; `--pass-rate-range LO,HI`
selects by it; `--correctness annotate` keeps incorrect and unverified rows with their verdict; bad values of both
are one error line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli

from distill.config import build
from distill.stages.filter import FilterConfig, run
from distill.stages.filter.decisions import pass_rate_summary, pass_rates


def _row(prompt: str, answer: str, boxed: str, i: int) -> dict:
    return {"id": prompt, "problem": f"Problem {prompt}: compute it.", "answer": answer,
            "completion": f"<think>Working through problem {prompt}, attempt {i}, carefully.</think> \\boxed{{{boxed}}}"}


def _traces(path) -> None:
    # prompt easy: 4/4 right; mid: 2/4 right; hard: 0/4 right; none: no reference (no rate)
    rows = [_row("easy", "7", "7", i) for i in range(4)]
    rows += [_row("mid", "5", "5" if i < 2 else "6", i) for i in range(4)]
    rows += [_row("hard", "9", str(10 + i), i) for i in range(4)]
    rows += [{**_row("none", "", "3", i), "answer": None} for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pass_rates_per_prompt():
    groups = ["a", "a", "a", "b", "b", "c"]
    rates, samples = pass_rates(groups, ["correct", "incorrect", "unverified", "incorrect", "incorrect", "unverified"])
    assert rates == [0.5, 0.5, 0.5, 0.0, 0.0, None]  # an unverified sample is not graded; c has no rate
    assert samples == [3, 3, 3, 2, 2, 1]
    assert pass_rate_summary(groups, rates) == {"prompts": 2, "mean": 0.25, "histogram": {"0": 1, "<=0.5": 1}}


def test_rows_carry_the_rate_and_the_range_selects(home, tmp_path):
    path = tmp_path / "traces.jsonl"
    _traces(path)
    common = {"input": str(path), "num_proc": 1, "skip": ["language", "dedup"], "name": "f"}
    plain = run(build(FilterConfig, common)).load_dataset()
    rates = {r["id"]: (r["pass_rate"], r["samples"]) for split in ("train", "rejected") for r in plain[split]}
    assert rates == {"easy": (1.0, 4), "mid": (0.5, 4), "hard": (0.0, 4), "none": (None, 2)}
    assert sorted(set(plain["train"]["id"])) == ["easy", "mid"]

    banded = run(build(FilterConfig, {**common, "pass_rate_range": "0.1,0.9"}))
    data = banded.load_dataset()
    assert set(data["train"]["id"]) == {"mid"} and len(data["train"]) == 2  # easy (1.0) dropped, mid's right ones kept
    by_reason = {(r["id"], r["reject_reason"]) for r in data["rejected"]}
    assert ("easy", "pass_rate") in by_reason and ("mid", "incorrect") in by_reason
    assert ("hard", "incorrect") in by_reason  # a wrong row is named by the earlier check
    stats = banded.manifest["stats"]
    assert stats["rejected_by_reason"]["pass_rate"] == 4
    assert stats["pass_rates"] == {"prompts": 3, "mean": 0.5, "histogram": {"0": 1, "<=0.5": 1, "1": 1}}


def test_correctness_annotate_keeps_every_verdict(home, tmp_path):
    path = tmp_path / "traces.jsonl"
    _traces(path)
    artifact = run(build(FilterConfig, {"input": str(path), "num_proc": 1, "skip": ["language", "dedup"],
                                        "correctness": "annotate"}))
    data = artifact.load_dataset()
    assert len(data["train"]) == 14 and len(data["rejected"]) == 0
    assert sorted(set(data["train"]["verdict"])) == ["correct", "incorrect", "unverified"]
    assert sum(v == "incorrect" for v in data["train"]["verdict"]) == 6
    assert artifact.manifest["config"]["correctness"] == "annotate"


@pytest.mark.cli
@pytest.mark.parametrize("flags, message", [
    (["--pass-rate-range", "0.9,0.1"], "--pass-rate-range must satisfy 0 <= LO <= HI <= 1"),
    (["--pass-rate-range", "half"], "--pass-rate-range must be LO,HI"),
    (["--correctness", "maybe"], "--correctness must be require or annotate"),
    (["--answer-extraction", "fuzzy"], "--answer-extraction must be one of strict, standard, lenient"),
])
def test_bad_values_are_one_error_line(home, tmp_path, flags, message):
    path = tmp_path / "traces.jsonl"
    _traces(path)
    result = run_cli("filter", "--input", str(path), *flags, home=home)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not (home / "data" / "filtered").exists() or not any((home / "data" / "filtered").iterdir())
