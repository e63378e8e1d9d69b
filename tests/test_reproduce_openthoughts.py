"""`make reproduce-openthoughts`: the preflight, the plan, and the SMOKE=1 pipeline end to end (real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.stages.train import preflight
from distill.stages.train.preflight import Hardware

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "reproduce_openthoughts.py"
H100 = ("NVIDIA H100 80GB HBM3", 79.6)


def _script(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=str(REPO),
                          env={**os.environ, **env}, timeout=timeout)


def test_preflight_sizes_the_openthinker_recipe():
    from distill.stages.train.recipes import load_recipe

    est = preflight.recipe_estimate(load_recipe("openthoughts-7b"), num_gpus=8)
    assert est.model == "Qwen/Qwen2.5-7B-Instruct" and 7.6e9 < est.params < 7.63e9  # Qwen2.5-7B: 7.62B
    assert est.offload and est.seq_len == 16384 and est.h100_hours == pytest.approx(640)
    assert not preflight.recipe_estimate(load_recipe("qwen-7b"), num_gpus=8).offload  # zero3: no offload
    assert 8 < est.gpu_gib < 40 and 130 < est.host_gib < 180  # TRL 1.16's tiled loss: no 16k x 152k logits

    ok, message = preflight.check(est, Hardware(gpus=[], host_gib=24))
    assert not ok
    for needle in ("no CUDA GPU", f">= {int(est.gpu_gib) + 1} GiB", "640 H100 GPU-hours", "4 nodes x 8 H100",
                   "~80 h on one 8-GPU H100 node"):
        assert needle in message
    ok, message = preflight.check(est, Hardware(gpus=[("NVIDIA A10G", 10.0)] * 8, host_gib=180))
    assert not ok and "GPU memory too small (8 x NVIDIA A10G 10 GiB)" in message
    ok, message = preflight.check(est, Hardware(gpus=[("NVIDIA A10G", 22.0)] * 4, host_gib=180))
    assert not ok and "too few GPUs (4 here" in message
    ok, message = preflight.check(est, Hardware(gpus=[H100] * 8, host_gib=120))
    assert not ok and "host RAM too small (120 GiB)" in message
    ok, message = preflight.check(est, Hardware(gpus=[H100] * 8, host_gib=1800))
    assert ok and "here about 80 h wall-clock" in message
    # without CPU offload the sharded states sit on the GPUs: 8 GPUs need far more each than with offload
    no_offload = preflight.estimate("Qwen/Qwen2.5-7B-Instruct", 16384, offload=False, num_gpus=8)
    assert no_offload.gpu_gib > est.gpu_gib + 15 and no_offload.host_gib < 20


def test_preflight_counts_a_local_model_from_its_config(tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    exact = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert preflight.estimate(str(tiny_qwen2_dir), 512).params == exact


@pytest.mark.skipif(bool(preflight.detect_hardware().gpus), reason="GPUs here: the full run would start")
@pytest.mark.cli
def test_without_gpus_the_script_stops_at_once_saying_what_is_needed(tmp_path):
    home = tmp_path / "home"
    result = _script(env={"DISTILL_HOME": str(home), "SMOKE": "", "VERIFY": ""}, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA GPU here")
    assert "Qwen/Qwen2.5-7B-Instruct" in lines[0] and "H100 GPU-hours" in lines[0] and "SMOKE=1" in lines[0]
    assert "python -m distill" not in result.stdout and not home.exists()  # nothing ran, nothing written


def test_plans_are_the_faithful_commands():
    sys.path.insert(0, str(SCRIPT.parent))
    import reproduce_openthoughts as script

    full = script.build_plan(smoke=False, verify=False, revision="abc123", num_gpus=8)
    commands = [" ".join(step.args) for step in full.steps]
    assert commands[0].startswith("import open-thoughts/OpenThoughts-114k --format native --revision abc123")
    assert "--data-files" not in commands[0]
    assert commands[1].startswith("train --recipe openthoughts-7b --dataset openthoughts-114k-native@latest")
    assert "--no-reformat-reasoning" in commands[1] and "--num-gpus 8" in commands[1] and "bundled" not in commands[1]
    math_eval, gpqa_eval = full.steps[2].args, full.steps[3].args
    assert math_eval[math_eval.index("--protocol") + 1] == "evalchemy"
    assert math_eval[math_eval.index("--prompt-template") + 1] == script.EVALCHEMY_MATH_PROMPT
    assert "--prompt-template" not in gpqa_eval  # GPQA keeps its multiple-choice prompt
    assert {"aime24", "math500"} <= set(math_eval) and "gpqa-diamond" in gpqa_eval and "--set" not in math_eval

    verify = script.build_plan(smoke=True, verify=True)
    names = [step.name for step in verify.steps]
    assert names == ["import metadata", "filter", "train", "eval math", "eval gpqa"]
    assert "--config metadata" in " ".join(verify.steps[0].args)
    assert verify.steps[1].args[:3] == ["filter", "--input", "smoke-openthoughts-114k-metadata-native@latest"]
    assert verify.train_data == "smoke-openthoughts-114k-verified@latest"
    # SMOKE runs the same commands plus local files and small overrides
    smoke = script.build_plan(smoke=True, verify=False)
    for plain, small in zip(full.steps, smoke.steps, strict=True):
        assert plain.args[0] == small.args[0]
        if plain.args[0] != "eval":
            assert plain.args[1:3] == small.args[1:3]
    table = script.report(verify, {}, "smoke-openthinker-7b-verified@v0001", "smoke-openthoughts-114k-verified@v0001")
    assert "VERIFY=1 variant" in table and "not the reproduction" in table and "SMOKE=1" in table


@pytest.mark.cli
def test_verify_variant_reverifies_the_metadata_sample(tmp_path):
    """VERIFY=1's first steps, real CLI: the metadata config re-verified (math vs ground truth, code in the
    sandbox); the sample's one wrong trace is dropped, the kept rows keep the published text."""
    sys.path.insert(0, str(SCRIPT.parent))
    import reproduce_openthoughts as script

    home = tmp_path / "home"
    plan = script.build_plan(smoke=True, verify=True)
    for step in plan.steps[:2]:
        result = subprocess.run(step.argv, capture_output=True, text=True, cwd=str(REPO), timeout=600,
                                env={**os.environ, "DISTILL_HOME": str(home)})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verified = artifacts.resolve(plan.train_data, root=home)
    kept, rejected = verified.load_dataset("train"), verified.load_dataset("rejected")
    assert len(kept) == 63 and len(rejected) == 1
    assert rejected[0]["domain"] == "math" and rejected[0]["reject_reason"] == "incorrect"
    assert sorted(set(kept["domain"])) == ["code", "math", "puzzle", "science"]
    assert all(row["completion"].startswith("<|begin_of_thought|>") for row in kept)
    assert all(row["messages"][0]["content"].startswith("Your role as an assistant") for row in kept)


@pytest.mark.cli
@pytest.mark.train
@pytest.mark.vllm
@pytest.mark.slow
def test_smoke_reproduction_end_to_end(tmp_path):
    """SMOKE=1 make reproduce-openthoughts: import -> train -> eval -> table, with the real CLI on CPU."""
    home = tmp_path / "home"
    result = _script(env={"DISTILL_HOME": str(home), "SMOKE": "1", "VERIFY": ""})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for command in ("$ python -m distill import open-thoughts/OpenThoughts-114k --format native",
                    "$ python -m distill train --recipe openthoughts-7b", "$ python -m distill eval --model"):
        assert command in result.stdout

    data = artifacts.resolve("smoke-openthoughts-114k-native", root=home)
    assert data.manifest["counts"]["rows"] == 64 and data.manifest["source"]["format"] == "native"
    rows = data.load_dataset()
    assert rows[0]["completion"].startswith("<|begin_of_thought|>")
    checkpoint = artifacts.resolve("smoke-openthinker-7b", root=home)
    assert [p["ref"] for p in checkpoint.manifest["parents"]] == [data.ref]
    for suffix, benches in (("math", {"aime24", "math500"}), ("gpqa", {"gpqa-diamond"})):
        evaluation = artifacts.resolve(f"smoke-eval-openthinker-7b-{suffix}", root=home)
        assert checkpoint.ref in [p["ref"] for p in evaluation.manifest["parents"]]
        results = json.loads((evaluation.path / "results.json").read_text())
        assert set(results["benchmarks"]) == benches
        assert results["sampling"]["temperature"] == 0.7 and results["sampling"]["max_tokens"] == 16
        assert all(b["problems"] == 2 for b in results["benchmarks"].values())
    assert results["benchmarks"]["gpqa-diamond"]["samples_per_problem"] == 3  # evalchemy: GPQA over 3 runs

    report = (home / "reports" / "reproduce-openthoughts-smoke.md").read_text()
    assert report.startswith("# Reproducing OpenThinker-7B") and report.split("\n\n", 1)[1] in result.stdout
    assert f"`{checkpoint.ref}`" in report and "SMOKE=1" in report
    assert "| OpenThinker-7B (published) | 31.3 | 83.0 | 42.4 |" in report
    assert "| DeepSeek-R1-Distill-Qwen-7B (published) | 60.0 | 88.2 | 46.9 |" in report
    assert "Evalchemy" in report and "43.3" in report  # names the source and the card version compared


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.cli
def test_the_full_gpu_plan_resolves_to_valid_configs(tmp_path, verify):
    """The commands a GPU node runs, checked here without GPUs: each parses and validates (--print-config)."""
    import yaml

    sys.path.insert(0, str(SCRIPT.parent))
    import reproduce_openthoughts as script

    plan = script.build_plan(smoke=False, verify=verify, num_gpus=8)
    resolved = {}
    for step in plan.steps:
        result = run_cli(*step.args, "--print-config", home=tmp_path)
        assert result.returncode == 0, f"{step.name}: {result.stderr[-2000:]}"
        resolved[step.name] = yaml.safe_load(result.stdout)
    train = resolved["train"]
    assert train["model"] == "Qwen/Qwen2.5-7B-Instruct" and train["dataset"] == [plan.train_data]
    assert (train["num_gpus"], train["accelerate_config"], train["precision"]) == (8, "zero3-offload", "bf16")
    assert (train["learning_rate"], train["num_train_epochs"], train["max_length"], train["global_batch_size"]) == (
        1e-5, 3, 16384, 96)
    assert train["reformat_reasoning"] is False and train["eval_fraction"] == 0 and train["truncate"] is True
    for name in ("eval math", "eval gpqa"):
        evaluation = resolved[name]
        assert evaluation["protocol"] == "evalchemy" and evaluation["tensor_parallel_size"] == 8
        assert evaluation["model"] == f"{plan.model_name}@latest" and evaluation["system_prompt"] == ""
    assert resolved["eval math"]["benchmark"] == ["aime24", "math500"]
    # the Evalchemy protocol as published: T 0.7, 32,768 new tokens, AIME24 averaged over 5 samples, GPQA over 3
    math_run, gpqa_run = resolved["eval math"]["resolved"], resolved["eval gpqa"]["resolved"]
    assert (math_run["temperature"], math_run["max_tokens"]) == (0.7, 32768)
    assert math_run["samples_per_problem"] == {"aime24": 5, "math500": 1}
    assert gpqa_run["samples_per_problem"] == {"gpqa-diamond": 3}
    if verify:
        assert resolved["filter"]["keep_unverified"] is True
