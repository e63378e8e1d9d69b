"""`distill artifacts head|export|show --summary`: the data functions (distill/artifacts/browse.py) and the CLI."""

from __future__ import annotations

import json

import datasets
import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.artifacts import browse, summary
from distill.errors import UserError
from distill.stages.filter.features import REASONS, funnel

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]


def _row(i: int, reason: str | None) -> dict:
    return {"id": f"p{i}", "problem": f"What is {i} + 1?", "completion": f"<think>{'count up. ' * 60}</think> {i + 1}",
            "messages": MESSAGES, "num_tokens": 100 + i, "score": i / 4, "format_ok": reason != "format",
            "verdict_reason": None if reason is None else f"why {i}", "reject_reason": reason}


REJECTED = [_row(i, r) for i, r in enumerate(["format", "incorrect", "format", "unverified", "format", "incorrect"])]
KEPT = [_row(10 + i, None) for i in range(3)]


def _filtered(name: str = "filtered"):
    """A filtered-like artifact: kept rows in `train`, rejects in `rejected`, the funnel in its stats."""
    reasons = [None] * len(KEPT) + [r["reject_reason"] for r in REJECTED]
    with artifacts.create(name, "filtered", config={"input": "traces@v0001", "max_per_prompt": 2,
                                                    "keep_unverified": False, "domain": "math"}) as writer:
        writer.save_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_list(KEPT),
                                                  "rejected": datasets.Dataset.from_list(REJECTED)}))
        writer.stats.update({"input_rows": len(reasons), "kept": len(KEPT), "rejected": len(REJECTED),
                             "yield": round(len(KEPT) / len(reasons), 4), "prompts": 9, "prompts_kept": 3,
                             "rejected_by_reason": {r: reasons.count(r) for r in REASONS},
                             "funnel": funnel(reasons), "verdicts": {"correct": 3, "incorrect": 2, "unverified": 1}})
    return artifacts.resolve(f"{name}@latest")


def _eval(parent=None, name: str = "eval-student"):
    """An eval-like artifact: per-sample rows (no named splits) and a results.json with intervals."""
    rows = [{"benchmark": "gsm8k", "id": f"q{i}", "correct": i % 2 == 0, "completion": "x"} for i in range(4)]
    results = {"schema_version": 1, "sampling": {"protocol": "greedy", "temperature": 0.0},
               "benchmarks": {"gsm8k": {"problems": 4, "samples_per_problem": 1, "metrics": {
                   "pass@1": {"mean": 0.5, "stderr": 0.25, "ci95": [0.01, 0.99], "count": 4},
                   "well_formed": {"mean": 1.0, "stderr": 0.0, "ci95": [1.0, 1.0], "count": 4}}},
                   "aime24": {"problems": 30, "samples_per_problem": 4, "metrics": {
                       "pass@1": {"mean": 0.125, "stderr": 0.05, "ci95": [0.027, 0.223], "count": 30},
                       "pass@4": {"mean": 0.3, "stderr": 0.08, "ci95": [0.143, 0.457], "count": 30}}}}}
    with artifacts.create(name, "eval", config={"model": "student@latest", "benchmark": ["gsm8k", "aime24"],
                                                "protocol": "greedy"}, parents=[parent] if parent else []) as writer:
        writer.save_dataset(datasets.Dataset.from_list(rows))
        (writer.path / "results.json").write_text(json.dumps(results))
        writer.extra["model"] = {"ref": "student@v0001", "base_model": "Qwen/Qwen2.5-1.5B-Instruct"}
        writer.stats.update({"gsm8k/pass@1": 0.5, "aime24/pass@1": 0.125})
    return artifacts.resolve(f"{name}@latest")


# ---------------------------------------------------------------------------- the data functions (unit tier)


def test_head_filters_with_where_and_stops_at_n(home):
    artifact = _filtered()
    result = browse.head(artifact, split="rejected", where=["reject_reason=format"], n=2)
    assert (result.split, result.total, result.matched) == ("rejected", 6, 3)
    assert [i for i, _ in result.rows] == [0, 2]  # row indices in the split, in order
    assert all(row["reject_reason"] == "format" for _, row in result.rows)
    assert result.columns == list(REJECTED[0])

    # all conditions must match; values compared as text (numbers as printed, true/false, null)
    both = browse.head(artifact, split="rejected", where=["reject_reason=incorrect", "num_tokens=105"],
                       columns="id,reject_reason")
    assert [row for _, row in both.rows] == [{"id": "p5", "reject_reason": "incorrect"}]
    assert both.columns == ["id", "reject_reason"]
    assert browse.head(artifact, split="rejected", where=["format_ok=false"]).matched == 3
    assert browse.head(artifact, split="rejected", where=["format_ok=False"]).matched == 3
    assert browse.head(artifact, split="rejected", where=["score=0.25"]).matched == 1
    assert browse.head(artifact, where=["verdict_reason=null"]).matched == 3  # train: kept rows have none
    assert browse.head(artifact, where=["reject_reason=format"]).matched == 0  # default split is train
    assert browse.head(artifact, where=[("id", "p11")]).rows[0][1]["id"] == "p11"
    # nothing matched: the column's values are listed (the funnel's check "correct" is the reason "incorrect")
    miss = browse.head(artifact, split="rejected", where=["reject_reason=correct"])
    assert miss.matched == 0 and miss.values == {"reject_reason": [("format", 3), ("incorrect", 2), ("unverified", 1)]}
    assert browse.head(artifact, split="rejected", where=["reject_reason=format"]).values == {}


def test_head_errors_say_what_exists(home):
    artifact = _filtered()
    with pytest.raises(UserError) as error:
        browse.head(artifact, split="rejected", where=["reason=format"])
    assert "'reason'" in str(error.value) and "reject_reason" in str(error.value) and "problem" in str(error.value)
    with pytest.raises(UserError, match=r"column 'nope' not in .*columns: id, problem"):
        browse.head(artifact, columns="problem,nope")
    with pytest.raises(UserError, match=r"no split 'rejects' \(splits: train \(3 rows\), rejected \(6 rows\)\)"):
        browse.head(artifact, split="rejects")
    with pytest.raises(UserError, match="COLUMN=VALUE"):
        browse.head(artifact, where=["reject_reason"])
    with pytest.raises(UserError, match="-n must be at least 1"):
        browse.head(artifact, n=0)
    evaluated = _eval()
    with pytest.raises(UserError, match="without named splits .*drop --split train"):
        browse.head(evaluated, split="train")
    assert browse.head(evaluated, n=10).split is None and len(browse.head(evaluated, n=10).rows) == 4

    with artifacts.create("student", "checkpoint") as writer:
        writer.model_path.mkdir()
        (writer.model_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="checkpoint artifact without a dataset"):
        browse.head(artifacts.resolve("student"))


def test_default_split(home):
    with artifacts.create("only", "imported") as writer:
        writer.save_dataset(datasets.DatasetDict({"test": datasets.Dataset.from_list([{"a": 1}])}))
    assert browse.open_split(artifacts.resolve("only"))[0] == "test"
    with artifacts.create("two", "imported") as writer:
        writer.save_dataset(datasets.DatasetDict({"a": datasets.Dataset.from_list([{"x": 1}]),
                                                  "b": datasets.Dataset.from_list([{"x": 2}])}))
    with pytest.raises(UserError, match=r"no 'train' split: choose one with --split \(splits: a \(1 rows\)"):
        browse.open_split(artifacts.resolve("two"))


def test_cell_text_and_truncate():
    assert browse.cell_text(None) == "null" and browse.cell_text(True) == "true" and browse.cell_text(3) == "3"
    assert browse.cell_text(MESSAGES).startswith('[{"role": "user"')
    assert browse.matches(None, "") and browse.matches(None, "None") and not browse.matches("None", "null")
    assert browse.matches("a=b", "a=b") and browse.parse_where(["text=a=b"]) == [("text", "a=b")]
    assert browse.truncate("x" * 10, 4) == ("xxxx", 10) and browse.truncate("x" * 10, None) == ("x" * 10, 10)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_round_trip(home, tmp_path, suffix):
    artifact = _filtered()
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / f"rejected{suffix}"
    assert browse.export(artifact, out, split="rejected") == ("rejected", len(REJECTED))
    if suffix == ".jsonl":
        back = datasets.Dataset.from_json(str(out), cache_dir=str(tmp_path / "cache"))
    else:
        back = datasets.Dataset.from_parquet(str(out), cache_dir=str(tmp_path / "cache"))
    assert back.to_list() == REJECTED
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left
    assert out.stat().st_mode & 0o777 == 0o644


def test_export_refuses_to_overwrite_and_is_atomic(home, tmp_path):
    artifact = _filtered()
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "train.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(UserError, match="exists: pass --force"):
        browse.export(artifact, out)
    assert out.read_text() == "keep me\n"
    with pytest.raises(UserError, match=r"\.jsonl or \.parquet"):
        browse.export(artifact, folder / "train.csv")
    with pytest.raises(UserError, match="does not exist"):
        browse.export(artifact, folder / "missing" / "train.jsonl")
    assert browse.export(artifact, out, force=True) == ("train", len(KEPT))
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["p10", "p11", "p12"]

    # arrow cannot write an empty struct to parquet: one error line, and nothing half-written is left
    with artifacts.create("odd", "imported") as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"a": 1, "meta": {}}] * 3))
    target = folder / "odd.parquet"
    target.write_bytes(b"old")
    with pytest.raises(UserError, match="cannot write odd@v0001 as parquet .*export it as .jsonl"):
        browse.export(artifacts.resolve("odd"), target, force=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in folder.iterdir()) == ["odd.parquet", "train.jsonl"]


def test_summary_of_filtered_data(home):
    artifact = _filtered()
    entries = dict(summary.summary(artifact))
    assert entries["rows"] == ["train 3, rejected 6"]
    assert entries["config"] == ["input=traces@v0001  domain=math  max_per_prompt=2"]  # False values left out
    funnel_text = "\n".join(entries["funnel"])
    correct = next(line for line in entries["funnel"] if line.startswith("correct"))
    assert correct.split() == ["correct", "3", "3", "33.3%", "incorrect", "2,", "unverified", "1"]
    assert "format 3" in funnel_text and entries["kept"] == ["3 of 9 rows (33.3%), 3 of 9 prompts"]
    assert entries["sha256"] == [artifact.content_sha256[:12] + "… (content)"]


def test_summary_of_an_eval_with_intervals_and_changed_parent(home):
    parent = _filtered()
    evaluated = _eval(parent)
    entries = dict(summary.summary(evaluated))
    assert entries["results"][0] == "gsm8k   pass@1 50.0% [1.0, 99.0]  (4 problems × 1 sample)"
    assert "pass@1 12.5% [2.7, 22.3]  pass@4 30.0% [14.3, 45.7]  (30 problems × 4 samples)" in entries["results"][1]
    assert entries["rows"] == ["4 (one dataset, no named splits)"]
    assert entries["model"] == ["student@v0001 (base Qwen/Qwen2.5-1.5B-Instruct)"]
    assert entries["parents"] == [f"filtered@v0001 (filtered, sha256 {parent.content_sha256[:12]}…)"]
    manifest_path = parent.path / "manifest.json"  # the parent's recorded hash no longer matches
    manifest = json.loads(manifest_path.read_text())
    manifest["content_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    assert dict(summary.summary(evaluated))["parents"][0].endswith("CHANGED since use")


# ---------------------------------------------------------------------------- the CLI


@pytest.mark.cli
def test_cli_head(home):
    _filtered()
    result = run_cli("artifacts", "head", "filtered", "--split", "rejected", "--where", "reject_reason=format",
                     "-n", "2", "--max-chars", "40", home=home, check=True)
    out = result.stdout
    assert out.startswith("filtered@v0001 split rejected: 2 of 3 rows where reject_reason=format (6 rows in all)")
    assert out.count("--- row ") == 2 and "--- row 0 ---" in out and "--- row 2 ---" in out
    assert "p4" not in out and "incorrect" not in out
    length = len(REJECTED[0]["completion"])
    assert f"cut at 40 of {length:,} chars (--full prints them all)" in out

    full = run_cli("artifacts", "head", "filtered", "--split", "rejected", "--where", "reject_reason=unverified",
                   "--columns", "id,completion", "--full", home=home, check=True).stdout
    assert "p3" in full and "cut at" not in full and "count up. " * 60 in full and "\nreject_reason" not in full

    for args, needles in ((["--split", "nope"], ["no split 'nope'", "train (3 rows)", "rejected (6 rows)"]),
                          (["--where", "colour=red"], ["'colour'", "columns: id, problem"]),
                          (["--columns", "id,colour"], ["'colour'", "reject_reason"])):
        bad = run_cli("artifacts", "head", "filtered", *args, home=home)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.startswith("error: ") and bad.stderr.strip().count("\n") == 0
        assert all(n in bad.stderr for n in needles), bad.stderr


@pytest.mark.cli
def test_cli_export_and_summary(home, tmp_path):
    parent = _filtered()
    _eval(parent)
    out = tmp_path / "rejected.parquet"
    result = run_cli("artifacts", "export", "filtered@v1", str(out), "--split", "rejected", home=home, check=True)
    assert result.stdout.strip() == f"wrote 6 rows of filtered@v0001 split rejected to {out}"
    assert datasets.Dataset.from_parquet(str(out), cache_dir=str(tmp_path / "cache")).to_list() == REJECTED
    again = run_cli("artifacts", "export", "filtered", str(out), home=home)
    assert again.returncode == 2 and again.stderr.strip() == f"error: {out} exists: pass --force to overwrite it"
    run_cli("artifacts", "export", "filtered", str(out), "--force", home=home, check=True)
    assert datasets.Dataset.from_parquet(str(out), cache_dir=str(tmp_path / "cache2")).to_list() == KEPT

    summary = run_cli("artifacts", "show", "filtered", "--summary", home=home, check=True).stdout
    assert summary.startswith("filtered@v0001  (filtered)\n") and summary.rstrip().endswith("ok: content hash verified")
    assert "incorrect 2, unverified 1" in summary and "train 3, rejected 6" in summary
    assert len(summary.splitlines()) < 30 and "environment" not in summary
    evaluated = run_cli("artifacts", "show", "eval-student", "--summary", "--no-verify", home=home, check=True).stdout
    assert "pass@1 50.0% [1.0, 99.0]" in evaluated and f"sha256 {parent.content_sha256[:12]}" in evaluated
    assert "verified" not in evaluated
    full = run_cli("artifacts", "show", "filtered", home=home, check=True).stdout  # the default is unchanged
    assert full.startswith("# filtered@v0001  (filtered)")
    assert json.loads(full.split("\n", 1)[1].rsplit("\nok:", 1)[0])["stats"]["kept"] == 3
