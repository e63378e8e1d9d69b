"""LoRA checkpoints without merged weights: vLLM attaches the adapter to the base model (eval, generate)."""

from __future__ import annotations

import json

import pytest
from fixtures_models import run_cli
from test_train import SUMS, make_filtered

from distill import artifacts
from distill.config import build
from distill.errors import UserError
from distill.stages.eval import EvalConfig, run
from distill.stages.generate import GenerateConfig, resolve_teacher

# the fixture trains through `distill train`; the eval runs the CLI (vLLM + adapter) and the session engine
pytestmark = [pytest.mark.vllm, pytest.mark.train, pytest.mark.cli, pytest.mark.slow]


@pytest.fixture
def lora_checkpoint(home):
    """SmolLM2-135M + a rank-8 LoRA trained (real TRL steps) to answer the three sums in the <think> format."""
    make_filtered()
    run_cli("train", "--recipe", "smol-demo", "--dataset", "filt", "--lora", "--set", "lora_r=8", "--max-steps", "14",
            "--learning-rate", "5e-3", "--warmup-ratio", "0", "--eval-fraction", "0", "--report-to", "none",
            "--name", "smol-lora", home=home, check=True)
    return artifacts.resolve("smol-lora")


def test_lora_checkpoint_is_evaluated_on_its_base_with_the_adapter(home, tmp_path, lora_checkpoint, vllm_engine):
    assert not (lora_checkpoint.path / "merged").exists()
    bench = tmp_path / "sums.jsonl"
    bench.write_text("".join(json.dumps({"id": f"s{a}{b}", "problem": f"What is {a} + {b}?", "answer": str(a + b)})
                             + "\n" for a, b in SUMS))
    common = ["--benchmark", str(bench), "--protocol", "greedy", "--max-tokens", "40", "--enforce-eager"]
    tuned = run_cli("eval", "--model", "smol-lora@latest", *common, "--name", "eval-lora", home=home)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    # the bare base, on the session's engine (same weights, no adapter)
    run(build(EvalConfig, {"model": "bundled", "benchmark": [str(bench)], "protocol": "greedy", "max_tokens": 40,
                           "prompt_template": "{problem}", "name": "eval-base"}), engine=vllm_engine)

    lora_eval, base_eval = artifacts.resolve("eval-lora", kind="eval"), artifacts.resolve("eval-base", kind="eval")
    lora_rows, base_rows = lora_eval.load_dataset().to_list(), base_eval.load_dataset().to_list()
    assert [r["prompt"] for r in lora_rows] == [r["prompt"] for r in base_rows]  # same questions, same turns
    # The adapter is what answers: the trained format and the right sums, which the bare base never writes.
    assert all(r["completion"].startswith("<think>\n") and r["correct"] for r in lora_rows), lora_rows
    assert all(r["finish_reason"] == "stop" for r in lora_rows)
    assert not any(r["completion"].startswith("<think>") for r in base_rows)
    results = json.loads((lora_eval.path / "results.json").read_text())
    assert results["model"]["adapter"] == str(lora_checkpoint.path / "model")
    assert results["model"]["ref"] == lora_checkpoint.ref
    assert results["model"]["generation_config"]["eos_token_id"]  # the adapter's own, recorded
    assert [p["ref"] for p in lora_eval.manifest["parents"]] == [lora_checkpoint.ref]

    # generate resolves a LoRA teacher the same way (the engine is the one the eval above ran)
    teacher = resolve_teacher(build(GenerateConfig, {"teacher": "smol-lora@v1", "dataset": "x.jsonl"}))
    assert teacher.adapter == str(lora_checkpoint.path / "model")
    assert teacher.chat_template == str(lora_checkpoint.path / "model" / "chat_template.jinja")
    assert (teacher.model.rstrip("/").endswith("smollm2-135m-instruct") and teacher.info["adapter"] == teacher.adapter
            and teacher.info["checkpoint"] == lora_checkpoint.ref)
    with pytest.raises(UserError, match="--engine vllm"):
        resolve_teacher(build(GenerateConfig, {"teacher": "smol-lora@v1", "dataset": "x.jsonl", "engine": "openai",
                                               "base_url": "http://127.0.0.1:9/v1"}))
