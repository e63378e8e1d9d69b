"""`distill generate` end to end: kill -9 and resume (real CLI, vLLM engine), shards, an API-style teacher."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fixtures_models import REPO, run_cli
from fixtures_vllm import start_vllm_server

from distill import artifacts
from distill.config import build
from distill.stages.generate import GenerateConfig, run

pytestmark = pytest.mark.vllm


def _problems(path, count: int, with_ids: bool = True):
    rows = [{**({"id": f"p{i:02d}"} if with_ids else {}), "problem": f"What is {i} + {i + 1}?",
             "answer": str(2 * i + 1), "level": i % 3} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _partial_records(home, name: str) -> dict[tuple[str, int], str]:
    found = {}
    for part in sorted((home / "data" / name).glob(".partial-*/part-*.jsonl")):
        for line in part.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                found.setdefault((record["id"], record["sample_index"]), record["completion"])
    return found


def _group_alive(pgid: int) -> bool:
    import psutil

    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


@pytest.mark.cli
@pytest.mark.slow
def test_kill_9_then_rerun_resumes_without_loss_or_duplicates(home, tmp_path, r1_model_dir):
    from transformers import AutoTokenizer

    _problems(tmp_path / "problems.jsonl", 12)
    args = ["generate", "--teacher", str(r1_model_dir), "--dataset", str(tmp_path / "problems.jsonl"),
            "--id-column", "id", "-n", "2", "--max-tokens", "48", "--max-model-len", "1024", "--enforce-eager",
            "--max-num-seqs", "4", "--seed", "3", "--name", "kill", "--no-progress"]
    log = open(tmp_path / "first.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "distill", *args], stdout=log, stderr=subprocess.STDOUT,
                               cwd=str(REPO), env={**os.environ, "DISTILL_HOME": str(home)}, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while len(_partial_records(home, "kill")) < 4:
            assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no samples on disk in time"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)  # the generate process, mid-run
        process.wait(timeout=30)
        # its engine core and workers must not live on as orphans (they would hold the GPU)
        deadline = time.monotonic() + 30
        while _group_alive(process.pid):
            assert time.monotonic() < deadline, "vLLM child processes survived the kill"
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its engine-core children die with the job
        log.close()
    before = _partial_records(home, "kill")
    assert 4 <= len(before) < 24, len(before)
    assert not artifacts.list_versions(home / "data" / "kill")  # nothing committed by the killed run

    result = run_cli(*args, home=home, check=True)
    assert "kill@v0001" in result.stdout and "truncated" in result.stdout
    artifact = artifacts.resolve("kill@latest")
    rows = artifact.load_dataset().to_list()
    keys = [(r["id"], r["sample_index"]) for r in rows]
    assert keys == sorted((f"p{i:02d}", j) for i in range(12) for j in range(2))  # all, once, in order
    completions = dict(zip(keys, (r["completion"] for r in rows), strict=True))
    assert all(completions[key] == text for key, text in before.items())  # nothing lost
    assert not list((home / "data" / "kill").glob(".partial-*"))

    # rows: the R1 prefill is put back, so every reasoning block has both tags; counts match the tokenizer
    tokenizer = AutoTokenizer.from_pretrained(r1_model_dir)
    for row in rows:
        assert row["completion"].startswith("<think>\n"), row["completion"]
        assert row["answer"] == str(2 * int(row["id"][1:]) + 1) and row["level"] == int(row["id"][1:]) % 3
        assert row["prompt"][-1]["content"].startswith(row["problem"])
        assert row["prompt_tokens"] == len(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True,
                                                                          return_dict=True)["input_ids"])
        assert (row["teacher"], row["temperature"], row["top_p"], row["max_tokens"], row["seed"]) == (
            str(r1_model_dir), 0.6, 0.95, 48, 3)
        assert row["finish_reason"] in ("stop", "length") and 0 < row["completion_tokens"] <= 48
    assert any("</think>" in r["completion"] for r in rows)
    manifest = artifact.manifest
    conversation = manifest["conversation"]
    assert conversation["prefill"] == "<think>\n"
    assert conversation["system_prompt"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert conversation["chat_template"] == tokenizer.chat_template
    assert conversation["prompt_template"] == GenerateConfig().prompt_template
    runs = manifest["generation"]["runs"]
    assert len(runs) == 2 and runs[0]["seed"] == 3 and runs[1]["seed"] != 3  # a resumed run gets a new stream
    assert manifest["generation"]["tokens_per_second"] > 0 and manifest["stats"]["samples"] == 24
    assert manifest["source"]["sha256"] and manifest["sampling"] == {"n": 2, "temperature": 0.6, "top_p": 0.95,
                                                                     "max_tokens": 48, "seed": 3}
    # the same command again: the version exists, nothing is generated
    again = run_cli(*args, home=home, check=True)
    assert "already holds" in again.stdout and len(artifacts.list_versions(home / "data" / "kill")) == 1


def test_shards_merge_into_one_version_with_cost(home, tmp_path, vllm_server):
    _problems(tmp_path / "problems.jsonl", 5, with_ids=False)
    base = {"teacher": vllm_server.model, "dataset": str(tmp_path / "problems.jsonl"), "engine": "openai",
            "base_url": vllm_server.base_url, "num_generations": 2, "max_tokens": 12, "temperature": 0.7,
            "name": "sharded", "progress": False, "price_in": 1.0, "price_out": 2.0}
    assert run(build(GenerateConfig, base, {"shard": "0/2"})) is None  # a part, no version yet
    assert not artifacts.list_versions(home / "data" / "sharded")
    artifact = run(build(GenerateConfig, base, {"shard": "1/2"}))  # the last part merges
    rows = artifact.load_dataset().to_list()
    problems = [json.loads(line)["problem"] for line in (tmp_path / "problems.jsonl").read_text().splitlines()]
    assert [(r["problem"], r["sample_index"]) for r in rows] == [(p, j) for p in problems for j in range(2)]
    assert len({r["id"] for r in rows}) == 5 and all(len(r["id"]) == 16 for r in rows)  # hash ids
    manifest = artifact.manifest
    assert manifest["generation"]["shards"] == ["0/2", "1/2"]
    tokens_in = sum(r["prompt_tokens"] for r in rows)
    tokens_out = sum(r["completion_tokens"] for r in rows)
    assert manifest["cost"]["usd"] == round((tokens_in * 1.0 + tokens_out * 2.0) / 1e6, 6) > 0
    assert manifest["teacher"]["base_url"] == vllm_server.base_url and manifest["teacher"]["engine"] == "openai"
    assert manifest["config"]["api_key_env"] is None
    # --merge-shards on a finished job: the version is reused
    assert run(build(GenerateConfig, base, {"merge_shards": True})).ref == artifact.ref


def test_api_teacher_with_separate_reasoning_is_merged(home, tmp_path, r1_model_dir):
    _problems(tmp_path / "problems.jsonl", 4)
    with start_vllm_server(r1_model_dir, "--reasoning-parser", "deepseek_r1") as server:
        cfg = build(GenerateConfig, {"teacher": str(r1_model_dir), "dataset": str(tmp_path / "problems.jsonl"),
                                     "id_column": "id", "engine": "openai", "base_url": server.base_url,
                                     "num_generations": 1, "temperature": 0.0, "max_tokens": 40,
                                     "name": "api", "progress": False})
        artifact = run(cfg)
    rows = artifact.load_dataset().to_list()
    assert len(rows) == 4
    answered = 0
    for row in rows:
        text = row["completion"]
        assert text.startswith("<think>\n") and text.count("<think>") == 1, text
        if row["finish_reason"] == "stop" or "\n</think>\n\n" in text:
            reasoning, _, answer = text[len("<think>\n"):].partition("\n</think>\n\n")
            assert reasoning and reasoning == reasoning.strip(), text
            answered += bool(answer)
    assert answered >= 1  # the parser split reasoning from content; both came back in one completion
    assert artifact.manifest["conversation"]["prefill"] == "<think>\n"
