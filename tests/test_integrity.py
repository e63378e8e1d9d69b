"""Inputs are verified against their manifests before a stage uses them (distill/artifacts/integrity.py).

- a tampered dataset file of a filtered artifact (`distill filter --input`), a tampered weight file of a
  checkpoint (`distill eval --model`), and edited manifest fields (counts, kind, name, version) are each ONE
  `error:` line, exit 2, through the real command line in this process, and nothing is written;
- `distill --no-verify` lets the same command through and the new manifest records `inputs_verified: false`;
- a verified hash is cached in HOME/.cache/verified.json: the second use hashes nothing (counted), a changed
  file is hashed again; a new artifact's commit-time hash is reused on its first use;
- other files (results.json, ...) and the manifest's own fields are sealed; older manifests without
  `manifest_sha256` still load with their payload checked; `distill artifacts show` reports every mismatch.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import datasets
import pytest

from distill import artifacts, log
from distill.artifacts import integrity
from distill.errors import UserError

LONG = "x" * 300  # a run of bytes to flip inside an arrow file's row data
ROWS = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i),
         "completion": f"<think>{i} plus {i} is {2 * i}. {LONG}</think> The sum is \\boxed{{{2 * i}}}."}
        for i in range(1, 4)]


@pytest.fixture(autouse=True)
def verification_on(monkeypatch):
    """Verification on; `--no-verify` (which sets the variable in this process) is undone after each test."""
    monkeypatch.setenv(integrity.NO_VERIFY_ENV, "0")


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """The real command line (``distill.cli.main``), in this process: (exit code, stdout, stderr)."""
    from distill.cli import main

    capsys.readouterr()  # drop what the setup printed (datasets' progress bars)
    renderer = log._renderer
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        log.set_renderer(renderer)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code: int, err: str) -> str:
    assert code == 2, err[-2000:]
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err[-3000:]
    return err


def version_dirs(home: Path) -> list[str]:
    """Every version and staging folder under the home (what a failed command must not add to)."""
    return sorted(str(p.relative_to(home)) for p in home.glob("*/*/*") if p.is_dir())


def dataset_artifact(name: str, kind: str, rows=ROWS) -> artifacts.Artifact:
    with artifacts.create(name, kind, config={"made_by": "test"}) as writer:
        writer.save_dataset(datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}))
    return artifacts.resolve(f"{name}@latest", verify=False)


def flip_byte_in_rows(artifact: artifacts.Artifact) -> Path:
    """Change one character inside a row's text in the arrow file (as a bit flip or a hand edit would)."""
    arrow = next(artifact.dataset_path.glob("train/*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[data.index(LONG.encode()) + 7] ^= 0x01
    arrow.write_bytes(bytes(data))
    return arrow


def edit_manifest(artifact: artifacts.Artifact, edit) -> None:
    path = artifact.path / artifacts.MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


# ---------------------------------------------------------------------------- datasets


def test_tampered_dataset_of_a_filtered_artifact_stops_filter(home, capsys):
    parent = dataset_artifact("filtered", "filtered")
    flip_byte_in_rows(parent)
    before = version_dirs(home)
    err = one_error_line(*cli(["filter", "--input", "filtered@v1", "--name", "again"], capsys)[::2])
    assert "input artifact filtered@v0001" in err and "content hash MISMATCH" in err and "dataset/ changed" in err
    assert "distill --no-verify" in err
    assert version_dirs(home) == before  # nothing written: no version, no staging folder

    code, out, err = cli(["--no-verify", "filter", "--input", "filtered@v1", "--name", "again"], capsys)
    assert code == 0, err[-3000:]
    child = artifacts.resolve("again")
    assert child.manifest[integrity.INPUTS_VERIFIED] is False
    assert child.manifest["parents"][0]["ref"] == "filtered@v0001"
    written = child.load_dataset()
    assert "xyx" in "".join(list(written["train"]["completion"]) + list(written["rejected"]["completion"]))


@pytest.mark.parametrize("field", ["counts", "kind", "name", "version"])
def test_edited_manifest_field_stops_filter(home, capsys, field):
    traces = dataset_artifact("traces", "traces")
    edits = {"counts": lambda m: m["counts"].update(train=4), "kind": lambda m: m.update(kind="filtered"),
             "name": lambda m: m.update(name="other"), "version": lambda m: m.update(version="v0002")}
    edit_manifest(traces, edits[field])
    before = version_dirs(home)
    err = one_error_line(*cli(["filter", "--input", "traces@v1", "--name", "kept"], capsys)[::2])
    assert "failed verification" in err and "manifest.json fields were edited" in err
    if field in ("name", "version"):  # also said plainly: where it is stored disagrees
        assert f"its manifest says {field}" in err
    assert version_dirs(home) == before


def test_older_manifest_without_its_hash_still_loads_with_payload_checked(home):
    traces = dataset_artifact("traces", "traces")
    edit_manifest(traces, lambda m: m.pop(integrity.MANIFEST_HASH))
    assert artifacts.resolve("traces").load_dataset("train")["answer"] == ["2", "4", "6"]
    ok, message = artifacts.verify(artifacts.resolve("traces"))
    assert ok and "fields are not covered" in message
    flip_byte_in_rows(traces)
    with pytest.raises(integrity.IntegrityError, match="content hash MISMATCH"):
        artifacts.resolve("traces").load_dataset()


def test_show_reports_edited_manifest(home, capsys):
    traces = dataset_artifact("traces", "traces")
    assert cli(["artifacts", "show", "traces"], capsys)[1].rstrip().endswith("ok: content hash verified")
    edit_manifest(traces, lambda m: m["counts"].update(train=99))
    code, out, err = cli(["artifacts", "show", "traces"], capsys)
    assert code == 1 and "manifest.json fields were edited" in err and '"train": 99' in out


# ---------------------------------------------------------------------------- checkpoints


def checkpoint_artifact(model_dir: Path, pause_before_commit: float = 0.0) -> artifacts.Artifact:
    with artifacts.create("student", "checkpoint", config={"recipe": "test"}) as writer:
        shutil.copytree(model_dir, writer.model_path)
        (writer.path / "metrics.json").write_text(json.dumps({"train_loss": 1.0}))
        time.sleep(pause_before_commit)
    return artifacts.resolve("student", verify=False)


@pytest.fixture
def outputs_file(tmp_path) -> Path:
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_tampered_weights_of_a_checkpoint_stop_eval(home, capsys, tiny_llama_dir, outputs_file):
    student = checkpoint_artifact(tiny_llama_dir)
    weights = student.model_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # a weight, not the header
    weights.write_bytes(bytes(data))
    argv = ["eval", "--model", "student@v1", "--outputs", str(outputs_file), "--name", "ev"]
    before = version_dirs(home)
    err = one_error_line(*cli(argv, capsys)[::2])
    assert "input artifact student@v0001" in err and "model/ changed" in err
    assert version_dirs(home) == before and not (home / "evals").exists()

    code, out, err = cli(["--no-verify", *argv], capsys)
    assert code == 0, err[-3000:]
    evaluated = artifacts.resolve("ev", kind="eval", verify=False)
    assert evaluated.manifest[integrity.INPUTS_VERIFIED] is False
    assert [p["ref"] for p in evaluated.manifest["parents"]] == ["student@v0001"]


def test_other_files_are_sealed_and_the_hub_card_is_not(home, tiny_llama_dir):
    student = checkpoint_artifact(tiny_llama_dir)
    assert set(student.manifest[integrity.OTHER_FILES]) == {"metrics.json"}
    (student.path / "README.md").write_text("a card written by --push-to-hub\n")
    artifacts.resolve("student", kind="checkpoint")  # verified: the card is not sealed
    (student.path / "metrics.json").write_text(json.dumps({"train_loss": 0.1}))
    with pytest.raises(integrity.IntegrityError, match="metrics.json changed after it was written"):
        artifacts.resolve("student", kind="checkpoint")
    (student.path / "metrics.json").unlink()
    with pytest.raises(integrity.IntegrityError, match="metrics.json is missing"):
        artifacts.resolve("student", kind="checkpoint")


# ---------------------------------------------------------------------------- the cache


def test_second_use_hashes_nothing_and_a_changed_file_is_hashed_again(home):
    traces = dataset_artifact("traces", "traces")
    time.sleep(integrity.RACY_WINDOW_NS / 1e9 + 0.05)  # older than a timestamp tick: a hash of it may be cached
    start = integrity.hashes_computed
    artifacts.resolve("traces").load_dataset()
    assert integrity.hashes_computed == start + 1
    cache = json.loads((home / integrity.CACHE_FILE).read_text())
    assert cache[str(traces.dataset_path)]["sha256"] == traces.content_sha256
    artifacts.resolve("traces").load_dataset("train")
    artifacts.resolve("traces", kind="traces")
    assert integrity.hashes_computed == start + 1  # cached: a stat per file, no hashing

    state = next(traces.dataset_path.glob("train/state.json"))
    state.write_text(state.read_text())  # same content, new mtime: hashed again, still intact
    artifacts.resolve("traces").load_dataset()
    assert integrity.hashes_computed == start + 2
    flip_byte_in_rows(traces)  # same size, new mtime: hashed again, and refused
    with pytest.raises(integrity.IntegrityError):
        artifacts.resolve("traces").load_dataset()
    assert integrity.hashes_computed == start + 3


def test_commit_time_hash_is_reused_on_first_use(home, tiny_llama_dir):
    # written, then committed later than one timestamp tick: the commit's hashes are cached under the version
    checkpoint_artifact(tiny_llama_dir, pause_before_commit=integrity.RACY_WINDOW_NS / 1e9 + 0.05)
    start = integrity.hashes_computed
    artifacts.resolve("student@v1", kind="checkpoint")
    assert integrity.hashes_computed == start


def test_verification_off_skips_hashing_and_is_recorded(home, monkeypatch):
    traces = dataset_artifact("traces", "traces")
    flip_byte_in_rows(traces)
    monkeypatch.setenv(integrity.NO_VERIFY_ENV, "1")
    start = integrity.hashes_computed
    parent = artifacts.resolve("traces", kind="traces")
    assert len(parent.load_dataset()["train"]) == 3 and integrity.hashes_computed == start
    with artifacts.create("child", "filtered", parents=[parent]) as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"a": 1}]))
    assert artifacts.resolve("child").manifest[integrity.INPUTS_VERIFIED] is False
    monkeypatch.setenv(integrity.NO_VERIFY_ENV, "0")
    assert integrity.INPUTS_VERIFIED not in dataset_artifact("other", "traces").manifest
    with pytest.raises(UserError, match="failed verification"):
        artifacts.resolve("traces").load_dataset()
