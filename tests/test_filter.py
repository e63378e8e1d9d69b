"""`distill filter` end to end through the real CLI, on a hand-written fixture of realistic traces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures_models import run_cli

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "realistic_traces.jsonl"
BENCH_PROBLEM = "Find the smallest positive integer n such that 2 to the power n is greater than one thousand."
CONVERSATION = {"chat_template": "{{ messages }}", "chat_template_sha256": "abc", "system_prompt": None,
                "few_shot": None, "prompt_template": "{problem}", "prefill": None}
ARGS = ["--max-tokens", "32768", "--max-per-prompt", "2", "--timeout", "3"]


def _rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def _traces_artifact(home: Path):
    """A `traces` artifact holding the fixture, with a conversation format in its manifest."""
    import datasets

    from distill import artifacts

    with artifacts.create("traces", "traces", config={"teacher": "fixture"}, root=home,
                          licenses={"traces": "mit"}) as writer:
        writer.save_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_list(_rows())}))
        writer.extra["conversation"] = CONVERSATION
    return artifacts.resolve("traces@latest", root=home)


@pytest.fixture
def bench_file(tmp_path) -> Path:
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"problem": BENCH_PROBLEM}) + "\n" + json.dumps({"problem": "How many edges?"}) + "\n")
    return path


@pytest.mark.cli
def test_filter_cli_on_realistic_traces(home, bench_file):
    from distill import artifacts

    parent = _traces_artifact(home)
    out = run_cli("filter", *ARGS, "--decontaminate", str(bench_file), "--num-proc", "2", "--plot",
                  home=home, check=True)
    assert "max_per_prompt" in out.stdout and "filtered@v0001" in out.stdout  # the funnel table
    artifact = artifacts.resolve("filtered@latest", root=home)
    data = artifact.load_dataset()
    assert set(data) == {"train", "rejected"}
    got = {r["case"]: r["reject_reason"] or "kept" for split in data.values() for r in split}
    expected = {r["case"]: r["expected"] for r in _rows()}
    assert got == expected
    assert all(r["reject_reason"] is None for r in data["train"])
    for column in ("format_reason", "verdict", "predicted", "language_mix", "num_tokens", "contaminated_by", "dedup"):
        assert column in data["rejected"].column_names and column in data["train"].column_names

    manifest = artifact.manifest
    stats = manifest["stats"]
    assert stats["input_rows"] == len(expected) and stats["kept"] == len(data["train"])
    assert stats["yield"] == round(stats["kept"] / stats["input_rows"], 4)
    reasons = [r for r in expected.values() if r != "kept"]
    assert stats["rejected_by_reason"] == {k: reasons.count(k) for k in stats["rejected_by_reason"]}
    assert set(reasons) == {k for k, v in stats["rejected_by_reason"].items() if v}  # every reason is covered
    assert stats["funnel"][-1]["remaining"] == stats["kept"]
    assert stats["kept_per_prompt"]["max"] == 2 and stats["decontamination"]["contaminated_rows"] == 1
    assert manifest["conversation"] == CONVERSATION
    assert manifest["parents"] == [{"ref": parent.ref, "kind": "traces", "sha256": parent.content_sha256}]
    assert manifest["licenses"] == {"traces": "mit"}
    assert (artifact.path / "funnel.png").stat().st_size > 1000
    ok, _ = artifacts.verify(artifact)
    assert ok


@pytest.mark.cli
def test_same_hash_whatever_num_proc(home, tmp_path):
    from distill import artifacts

    local = tmp_path / "traces.jsonl"
    shutil.copy(FIXTURE, local)
    for num_proc in ("1", "2"):
        run_cli("filter", "--input", str(local), *ARGS, "--num-proc", num_proc, home=home, check=True)
    first, second = (artifacts.resolve(f"filtered@v{i}", root=home) for i in (1, 2))
    assert first.content_sha256 == second.content_sha256
    assert first.manifest["config"]["source"]["type"] == "file"
    assert "conversation" not in first.manifest  # a plain file has no conversation format to copy


@pytest.mark.cli
def test_bad_input_is_one_line_and_exit_2(home, tmp_path):
    no_completion = tmp_path / "no_completion.jsonl"
    no_completion.write_text(json.dumps({"problem": "1+1?", "generation": "<think>x</think> 2"}) + "\n")
    result = run_cli("filter", "--input", str(no_completion), home=home)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "--completion-column 'completion'" in result.stderr
    assert "generation" in result.stderr  # the available columns are listed

    no_reference = tmp_path / "no_reference.jsonl"
    no_reference.write_text(json.dumps({"problem": "1+1?", "completion": "<think>two things</think> 2"}) + "\n")
    result = run_cli("filter", "--input", str(no_reference), "--require-reference", home=home)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "no reference answer" in result.stderr
    assert result.stderr.strip().count("\n") == 0

    result = run_cli("filter", "--input", str(no_reference), "--skip", "spelling", home=home)
    assert result.returncode == 2 and "--skip 'spelling'" in result.stderr
    result = run_cli("filter", "--input", str(no_reference), "--tokenizer", str(tmp_path / "nowhere"), home=home)
    assert result.returncode == 2 and "tokenizer directory" in result.stderr

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    pq.write_table(pa.table({"problem": pa.array([], pa.string())}), tmp_path / "zero.parquet")
    for name in ("empty.jsonl", "blank.jsonl", "zero.parquet"):
        result = run_cli("filter", "--input", str(tmp_path / name), home=home)
        assert result.returncode == 2 and result.stderr == f"error: input file {tmp_path / name} has no rows\n"
    assert not (home / "data" / "filtered").exists() or not any((home / "data" / "filtered").iterdir())


def test_skip_keep_unverified_random_policy_and_push(home, monkeypatch):
    """In process: column options, --skip, --keep-unverified, a seeded random policy, --push-to-hub."""
    import datasets

    from distill import artifacts
    from distill.artifacts import hub
    from distill.config import build
    from distill.stages.filter import FilterConfig, run

    rows = [{"uid": "p", "question": "What is 7 times 6?", "gold": "#### 42",
             "text": f"<think>7 times 6 is 42, version {i} of the check.</think> The product is \\boxed{{42}}."}
            for i in range(5)]
    rows.append({"uid": "q", "question": "Prove it.", "gold": None,
                 "text": "<think>a proof by contradiction goes here</think> Done."})
    path = home.parent / "renamed.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pushed = []
    monkeypatch.setattr(hub, "push", lambda artifact, repo: pushed.append((artifact.ref, repo)) or "https://hub/x")
    config = build(FilterConfig, {"input": str(path), "completion_column": "text", "problem_column": "question",
                                  "answer_column": "gold", "id_column": "uid", "domain": "math", "num_proc": 1,
                                  "skip": ["language", "dedup"], "keep_unverified": True, "max_per_prompt": 2,
                                  "per_prompt_policy": "random", "seed": 1, "push_to_hub": "me/filtered"})
    artifact = run(config)
    data = artifact.load_dataset()
    assert len(data["train"]) == 3 and data["rejected"]["reject_reason"] == ["over_cap"] * 3
    assert sorted(data["train"]["verdict"]) == ["correct", "correct", "unverified"]
    assert set(data["train"]["language_ok"]) == {None} and set(data["train"]["dedup"]) == {None}
    assert artifact.manifest["stats"]["skipped_checks"] == ["dedup", "language"]
    assert pushed == [(artifact.ref, "me/filtered")]
    again = run(config)  # the seeded choice is the same on every run
    assert again.content_sha256 == artifact.content_sha256
    assert isinstance(data, datasets.DatasetDict) and artifacts.verify(again)[0]


@pytest.mark.cli
def test_code_rows_are_run_in_the_sandbox(home, tmp_path):
    """Domain `code` goes to distill.verify.code (skipped where the sandbox cannot run)."""
    code = pytest.importorskip("distill.verify.code")
    if not code.sandbox_available()[0]:
        pytest.skip("no sandbox on this machine")
    from distill import artifacts

    tests = json.dumps({"inputs": ["2 3\n"], "outputs": ["5\n"]})
    think = "<think>Read two integers and print their sum, nothing else.</think>\n\n"
    rows = [{"id": "add", "problem": "Print a+b.", "domain": "code", "test_cases": tests, "answer": None,
             "completion": think + f"```python\na, b = map(int, input().split())\nprint(a {op} b)\n```"}
            for op in ("+", "-")]
    path = tmp_path / "code.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run_cli("filter", "--input", str(path), "--num-proc", "1", "--code-timeout", "10", home=home, check=True)
    data = artifacts.resolve("filtered@latest", root=home).load_dataset()
    assert data["train"]["verdict"] == ["correct"] and data["rejected"]["reject_reason"] == ["incorrect"]
