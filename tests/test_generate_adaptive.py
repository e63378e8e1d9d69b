"""`distill generate --until-verified K --max-samples N`: the round rule, resume after kill -9, bad input.

Without an engine: the stopping rule (which samples a prompt needs next), a simulated run killed at every point
and resumed (same rows as an uninterrupted run when verdicts are the same), verdicts persisted and caught up with
the real grader, and bad input (one `error:` line, exit 2, nothing written). With the bundled SmolLM2-135M
(marker vllm): an uninterrupted run, reproducible, whose samples per prompt vary, and the real CLI killed with
SIGKILL inside a round, then rerun: no sample lost, none twice, every prompt closed exactly by the rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest
from fixtures_models import REPO, run_cli

from distill import artifacts
from distill.config import build
from distill.errors import UserError
from distill.stages.generate import GenerateConfig, adaptive
from distill.stages.generate.adaptive import StoppingRule
from distill.stages.generate.loop import GenerationJob
from distill.stages.generate.store import PartialStore

# ---------------------------------------------------------------------------- the rule


def test_next_indices_rounds_partial_rounds_and_caps():
    rule = StoppingRule(round_size=2, until_verified=2, max_samples=5)  # rounds [0,1] [2,3] [4]
    assert rule.rounds == 3 and list(rule.round_indices(2)) == [4]
    assert rule.next_indices({}) == [0, 1]
    assert rule.next_indices({1: True}) == [0]  # the rest of a round cut short, even with a verified sample
    assert rule.next_indices({0: True, 1: False}) == [2, 3]  # 1 of 2 verified: next round
    assert rule.next_indices({0: True, 1: True}) == []  # K reached at the end of round 0
    assert rule.next_indices({0: False, 1: False, 2: True, 3: False}) == [4]  # the last round is clipped at N
    assert rule.next_indices({0: False, 1: True, 2: True}) == [3]  # K reached inside round 1: still finish it
    assert rule.next_indices({i: False for i in range(5)}) == []  # N tried
    assert rule.next_indices({0: False, 1: False}, has_reference=False) == []  # unverifiable: one round
    assert rule.outcome({0: True, 1: True}) == "verified"
    assert rule.outcome({i: False for i in range(5)}) == "max_samples"
    assert rule.outcome({0: False, 1: False}, has_reference=False) == "no_reference"
    assert adaptive.step_seed(7, 0) == 7 and len({adaptive.step_seed(7, s) for s in range(50)}) == 50


def _simulate(rule, ids, outcome, rng=None):
    """Run the rule over ``ids`` with verdicts ``outcome(id, index)``; with ``rng``, every engine call is killed
    at a random point (samples saved up to it, verdicts of a random prefix of those) and the run resumed from
    what was stored, until nothing is left. Returns the stored keys in storing order, and the number of runs."""
    saved: list[tuple[str, int]] = []
    verdicts: dict[tuple[str, int], bool] = {}
    runs = 0
    while True:
        runs += 1
        for key in saved:  # a rerun grades what a killed run left ungraded
            verdicts.setdefault(key, outcome(*key))
        todo = adaptive.plan(rule, range(len(ids)), ids, adaptive.by_prompt(verdicts), dict.fromkeys(ids, "1"))
        if not todo:
            return saved, runs
        while todo:
            wanted = [(ids[p], i) for p, indices in todo.items() for i in indices]
            if rng is not None:
                rng.shuffle(wanted)  # samples finish in any order
            cut = rng.randint(0, len(wanted)) if rng is not None and rng.random() < 0.7 else len(wanted)
            saved += wanted[:cut]
            graded = rng.randint(0, cut) if rng is not None and cut < len(wanted) else cut
            for key in wanted[:graded]:
                verdicts[key] = outcome(*key)
            if cut < len(wanted):
                break  # kill -9
            todo = adaptive.plan(rule, todo, ids, adaptive.by_prompt(verdicts), dict.fromkeys(ids, "1"))


def test_resume_after_kills_anywhere_stores_exactly_what_an_uninterrupted_run_does():
    rule = StoppingRule(round_size=3, until_verified=2, max_samples=10)
    ids = [f"p{i}" for i in range(12)]
    rates = {key: i / 11 for i, key in enumerate(ids)}  # from hopeless to always right

    def outcome(key: str, index: int) -> bool:  # a fixed verdict per sample, as a seeded teacher's would be
        return random.Random(f"{key}/{index}").random() < rates[key]

    reference, _ = _simulate(rule, ids, outcome)
    assert len(reference) == len(set(reference))
    tried = Counter(key for key, _ in reference)
    assert tried["p0"] == 10 and tried["p11"] == 3 and len(set(tried.values())) > 2  # samples per prompt vary
    for seed in range(40):
        stored, runs = _simulate(rule, ids, outcome, random.Random(seed))
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(stored) == sorted(reference), f"kill pattern {seed} ({runs} runs) changed the rows"


# ---------------------------------------------------------------------------- verdicts: persisted, caught up

WELL = "<think>\nstart at 4, count up 3 more: 5, 6, 7. So 4 + 3 = 7.\n</think>\n\nThe answer is \\boxed{7}."


def _config(**values) -> GenerateConfig:
    return build(GenerateConfig, {"teacher": "t", "dataset": "d", "num_generations": 2, "until_verified": 1,
                                  **values})


def test_verified_means_complete_well_formed_and_correct_and_verdicts_survive_a_kill(tmp_path):
    cfg = _config(max_samples=4, answer_extraction="lenient")
    store = PartialStore(tmp_path / ".partial-x")
    store.create({})
    records = [("a", 0, WELL, "stop"),                                   # verified
               ("a", 1, WELL.replace("{7}", "{8}"), "stop"),             # wrong answer
               ("a", 2, WELL, "length"),                                 # cut off
               ("a", 3, "The answer is \\boxed{7}.", "stop"),            # no reasoning block
               ("b", 0, WELL.replace("\\boxed{7}", "7"), "stop")]        # lenient: the last number
    writer = store.writer("0of1", "r1")
    for key, index, text, finish in records:
        writer.write({"id": key, "sample_index": index, "completion": text, "finish_reason": finish,
                      "prompt_tokens": 5, "completion_tokens": 9})
    writer.close()
    job = GenerationJob(cfg=cfg, data=None, source=None, prompts=None, store=store, teacher=None, few_shot=None,
                        config_hash="x", references={"a": "7", "b": "#### 7"})
    from distill.verify.grader import make_pool

    # a run killed after grading only ("a", 0): its verdict is kept as stored, the others are graded now
    verdicts = store.verdict_writer("0of1", "r1")
    verdicts.write({"id": "a", "sample_index": 0, "verified": True, "verdict": "correct"})
    verdicts.write({"id": "a", "sample_index": 1, "verified": True})  # a stored verdict wins over a regrade
    verdicts.close()
    with make_pool(1, adaptive.grade_config(cfg)) as pool:
        grader = adaptive.SampleGrader(job, pool, "0of1", "r2")
        found = adaptive.stored_verdicts(job, grader, {"a", "b"})
        grader.close()
    assert found == {("a", 0): True, ("a", 1): True, ("a", 2): False, ("a", 3): False, ("b", 0): True}
    assert store.verdicts() == found  # the catch-up verdicts are persisted too
    # strict extraction does not read a bare final number
    with make_pool(1, adaptive.grade_config(cfg)) as pool:
        strict = _config(max_samples=4, answer_extraction="strict")
        job.cfg = strict
        graded = adaptive.SampleGrader(job, pool, "0of1", "r3").grade(
            [{"id": "b", "sample_index": 0, "completion": records[4][2], "finish_reason": "stop"}])
    assert graded == [(("b", 0), False)]


def test_the_artifact_is_built_only_once_every_prompt_is_closed(tmp_path):
    from distill.stages.generate.prompts import Prompts

    cfg = _config(max_samples=4)  # K = 1, rounds of 2
    store = PartialStore(tmp_path / ".partial-x")
    store.create({})
    prompts = Prompts(ids=["a", "b"], rows=[0, 1], problems=["4 + 3?", "1 + 1?"], messages=[[], []],
                      answer_column="answer", duplicates=0)
    job = GenerationJob(cfg=cfg, data=None, source=None, prompts=prompts, store=store, teacher=None, few_shot=None,
                        config_hash="x", references={"a": "7", "b": None})
    writer = store.writer("0of1", "r1")

    def save(key, index, text):
        writer.write({"id": key, "sample_index": index, "completion": text, "finish_reason": "stop",
                      "prompt_tokens": 5, "completion_tokens": 9})

    for key in ("a", "b"):  # round 0: nothing verifies ("b" has no reference: one round closes it)
        save(key, 0, WELL.replace("{7}", "{9}"))
        save(key, 1, WELL.replace("{7}", "{9}"))
    with pytest.raises(UserError, match="1 of 2 prompts still need samples"):  # e.g. --merge-shards too early
        adaptive.final_verdicts(job)
    save("a", 2, WELL)
    save("a", 3, WELL.replace("{7}", "{9}"))
    writer.close()
    verdicts = adaptive.final_verdicts(job)
    assert verdicts == {("a", 0): False, ("a", 1): False, ("a", 2): True, ("a", 3): False,
                        ("b", 0): False, ("b", 1): False}
    totals = {"prompt_tokens": 30, "completion_tokens": 54}
    record = adaptive.manifest_record(job, verdicts, totals, cost_usd=0.5)
    assert (record["prompts_reached_k"], record["prompts_at_max_samples"], record["prompts_without_reference"]) == (
        1, 0, 1)
    assert record["samples_per_prompt"] == {"2": 1, "4": 1} and record["verified_per_prompt"] == {"0": 1, "1": 1}
    assert record["prompts_per_round"] == [2, 1] and record["verified_rows"] == 1
    assert record["completion_tokens_per_verified_row"] == 54 and record["cost_per_verified_row_usd"] == 0.5


# ---------------------------------------------------------------------------- bad input


def test_adaptive_config_checks():
    assert _config().max_samples == 8  # default: four rounds of -n
    cases = [({"until_verified": 0}, "--until-verified must be at least 1"),
             ({"max_samples": 1}, "--max-samples 1 is below -n 2"),
             ({"until_verified": 5, "max_samples": 4}, "--until-verified 5 is more than --max-samples 4"),
             ({"until_verified": None, "max_samples": 4}, "pass --until-verified"),
             ({"answer_extraction": "loose"}, "--answer-extraction"),
             ({"domain": "code"}, "--domain 'code'"),
             ({"grade_timeout": 0}, "--grade-timeout")]
    for values, needle in cases:
        with pytest.raises(UserError, match=needle.replace("-", "\\-").replace("'", ".")):
            _config(**values)
    assert _config(domain="MCQ").domain == "multiple_choice"


def _in_process(args: list[str], capsys) -> tuple[int, str]:
    from distill.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    return exit_info.value.code, capsys.readouterr().err


def test_bad_adaptive_input_is_one_error_line_and_writes_nothing(home, tmp_path, capsys, bundled_model_dir):
    no_answers = tmp_path / "no_answers.jsonl"
    no_answers.write_text("".join(json.dumps({"problem": f"What is {i} + 1?"}) + "\n" for i in range(3)))
    empty_answers = tmp_path / "empty_answers.jsonl"
    empty_answers.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "answer": ""}) + "\n"
                                     for i in range(3)))
    good = tmp_path / "problems.jsonl"
    good.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(3)))
    base = ["--teacher", str(bundled_model_dir), "--until-verified", "2"]
    cases = [(["--dataset", str(no_answers)], ["--until-verified", "no answer column", "--answer-column"]),
             (["--dataset", str(empty_answers)], ["holds no reference answer"]),
             (["--dataset", str(good), "-n", "4", "--max-samples", "3"], ["--max-samples 3 is below -n 4"]),
             (["--dataset", str(good), "--until-verified", "0"], ["--until-verified must be at least 1"]),
             (["--dataset", str(good), "-n", "1", "--max-samples", "1"], ["more than --max-samples 1"]),
             (["--dataset", str(good), "--answer-extraction", "fuzzy"], ["--answer-extraction"])]
    for args, needles in cases:
        code, stderr = _in_process(base + args, capsys)
        assert code == 2, stderr[-2000:]
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
        assert all(needle in lines[0] for needle in needles), lines[0]
        assert not (home / "data").exists(), f"{args}: something was written"


# ---------------------------------------------------------------------------- with the bundled model

FEW_SHOT = str(REPO / "data" / "demo" / "few_shot.json")
K, N_ROUND, N_MAX = 1, 2, 6


def _problems(path):
    """One prompt the few-shot teacher nearly always gets right (the few-shot example it has just seen), two
    whose reference no sample can match (they take all N samples), three ordinary ones."""
    rows = [{"id": "easy", "problem": "Ana has 4 pears. Ana gets 3 more pears. How many pears does Ana have now?",
             "answer": "7"},
            {"id": "never-a", "problem": "What is 3 + 4?", "answer": "-987654"},
            {"id": "never-b", "problem": "What is 6 + 2?", "answer": "-123457"},
            {"id": "mid-a", "problem": "What is 5 + 3?", "answer": "8"},
            {"id": "mid-b", "problem": "There are 2 cats. 4 more cats come. How many cats are there?", "answer": "6"},
            {"id": "mid-c", "problem": "What is 1 + 1?", "answer": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["id"] for r in rows]


def _assert_closed_by_the_rule(artifact, ids):
    """No sample twice, indices 0..t-1, each prompt stopped at the first round end with K verified (or N), the
    stored verdicts are the grader's, and the manifest says what the rows say."""
    from distill.verify.grader import GradeConfig, GradeItem, grade_batch

    rows = artifact.load_dataset().to_list()
    keys = [(r["id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a sample is stored twice"
    results = grade_batch([GradeItem(r["completion"], reference=r["answer"], finish_reason=r["finish_reason"])
                           for r in rows], GradeConfig(answer_extraction="standard"), num_proc=1)
    by_prompt = defaultdict(dict)
    for row, result in zip(rows, results, strict=True):
        assert row["verified"] == adaptive.is_verified(result), row
        assert row["round"] == row["sample_index"] // N_ROUND
        by_prompt[row["id"]][row["sample_index"]] = row["verified"]
    assert [r["id"] for r in rows] == [key for key in ids for _ in by_prompt[key]]  # prompt order, grouped
    tried = {}
    for key in ids:
        verdicts = by_prompt[key]
        t = len(verdicts)
        assert sorted(verdicts) == list(range(t)), (key, sorted(verdicts))
        assert t == N_MAX or t % N_ROUND == 0
        before_last_round = sum(v for i, v in verdicts.items() if i < (t - 1) // N_ROUND * N_ROUND)
        assert before_last_round < K, f"{key} was sampled on after reaching K"
        assert sum(verdicts.values()) >= K or t == N_MAX, f"{key} stopped early"
        tried[key] = t
    assert tried["never-a"] == tried["never-b"] == N_MAX
    assert len(set(tried.values())) > 1, f"samples per prompt do not vary: {tried}"
    record = artifact.manifest["adaptive"]
    assert (record["until_verified"], record["max_samples"], record["round_size"]) == (K, N_MAX, N_ROUND)
    assert record["samples"] == len(rows) and record["verified_rows"] == sum(r["verified"] for r in rows)
    assert record["samples_per_prompt"] == {str(k): v for k, v in sorted(Counter(tried.values()).items())}
    assert record["prompts_reached_k"] + record["prompts_at_max_samples"] == len(ids)
    assert record["prompts_per_round"][0] == len(ids)
    assert artifact.manifest["stats"]["verified_rows"] == record["verified_rows"]
    if record["verified_rows"]:
        expected = sum(r["completion_tokens"] for r in rows) / record["verified_rows"]
        assert record["completion_tokens_per_verified_row"] == round(expected, 1)
    return rows


@pytest.mark.vllm
def test_uninterrupted_run_is_reproducible_and_stops_prompts_by_the_rule(home, tmp_path, vllm_engine):
    from distill.stages.generate import run

    ids = _problems(tmp_path / "problems.jsonl")
    values = {"teacher": "bundled", "dataset": str(tmp_path / "problems.jsonl"), "few_shot": FEW_SHOT,
              "num_generations": N_ROUND, "until_verified": K, "max_samples": N_MAX, "max_tokens": 64,
              "temperature": 0.7, "seed": 5, "progress": False, "price_in": 1.0, "price_out": 2.0}
    first = run(build(GenerateConfig, {**values, "name": "adaptive-a"}), engine=vllm_engine)
    rows = _assert_closed_by_the_rule(first, ids)
    assert first.manifest["adaptive"]["cost_per_verified_row_usd"] is not None
    assert "easy" not in {r["id"] for r in rows if r["sample_index"] >= 2 * N_ROUND}, "the easy prompt took 3 rounds"
    runs = first.manifest["generation"]["runs"]
    assert len(runs) == 1 and runs[0]["finished"] and runs[0]["step_seeds"][0] == 5
    assert len(runs[0]["step_seeds"]) == len(first.manifest["adaptive"]["prompts_per_round"])
    # same seed, same engine: the same samples, so the same prompts stop at the same round
    again = run(build(GenerateConfig, {**values, "name": "adaptive-b"}), engine=vllm_engine)
    assert [(r["id"], r["sample_index"], r["completion"]) for r in again.load_dataset().to_list()] == [
        (r["id"], r["sample_index"], r["completion"]) for r in rows]


def _partial(home, name: str, pattern: str) -> dict[tuple[str, int], dict]:
    found = {}
    for part in sorted((home / "data" / name).glob(f".partial-*/{pattern}")):
        for line in part.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                found.setdefault((record["id"], record["sample_index"]), record)
    return found


@pytest.mark.cli
@pytest.mark.slow
@pytest.mark.vllm
def test_kill_9_inside_a_round_then_rerun_loses_and_repeats_nothing(home, tmp_path):
    ids = _problems(tmp_path / "problems.jsonl")
    args = ["generate", "--teacher", "bundled", "--dataset", str(tmp_path / "problems.jsonl"), "--few-shot", FEW_SHOT,
            "-n", str(N_ROUND), "--until-verified", str(K), "--max-samples", str(N_MAX), "--max-tokens", "64",
            "--temperature", "0.7", "--max-model-len", "1024", "--max-num-seqs", "2", "--seed", "5",
            "--name", "akill", "--no-progress"]
    log = open(tmp_path / "first.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "distill", *args], stdout=log, stderr=subprocess.STDOUT,
                               cwd=str(REPO), env={**os.environ, "DISTILL_HOME": str(home)}, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        # round 1 has begun: round 0 is complete and graded, round 1 partly on disk
        while not any(index >= N_ROUND for _, index in _partial(home, "akill", "part-*.jsonl")):
            assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no round-1 sample on disk in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its engine-core children die with the job
        log.close()
    before = _partial(home, "akill", "part-*.jsonl")
    verdicts_before = _partial(home, "akill", "verdicts-*.jsonl")
    assert {(key, i) for key in ids for i in range(N_ROUND)} <= set(before)  # round 0 complete
    assert {(key, i) for key in ids for i in range(N_ROUND)} <= set(verdicts_before)  # and graded
    assert not artifacts.list_versions(home / "data" / "akill")

    result = run_cli(*args, home=home, check=True)
    assert "akill@v0001" in result.stdout and "adaptive:" in result.stdout, result.stdout
    artifact = artifacts.resolve("akill@latest")
    rows = _assert_closed_by_the_rule(artifact, ids)
    stored = {(r["id"], r["sample_index"]): r for r in rows}
    for key, record in before.items():  # nothing lost: every sample saved before the kill is in, unchanged
        assert stored[key]["completion"] == record["completion"], key
    for key, record in verdicts_before.items():  # and decided on with the verdict it had
        assert stored[key]["verified"] == record["verified"], key
    runs = artifact.manifest["generation"]["runs"]
    assert len(runs) == 2 and runs[0]["seed"] == 5 and runs[1]["seed"] != 5 and runs[1]["finished"]
    assert not list((home / "data" / "akill").glob(".partial-*"))
    again = run_cli(*args, home=home, check=True)
    assert "already holds" in again.stdout and len(artifacts.list_versions(home / "data" / "akill")) == 1
