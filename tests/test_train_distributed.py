"""`distill train` across processes, for real on CPU.

DeepSpeed ZeRO-3 + CPU offload (the OpenThinker-7B strategy) under the real `accelerate launch`, in one
process (accelerate has no DeepSpeed-on-CPU backend for more): the launch command, the DeepSpeed config
handshake, partitioned training, the gathered 16-bit save, preemption and resume, QLoRA. Data parallel on two
CPU ranks (gloo, started by torchrun as accelerate starts GPU ranks): agreement on preemption, one commit, and
equality with one process trained on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fixtures_models import REPO, run_cli
from test_train import BASE, make_filtered

from distill import artifacts
from distill.config import build
from distill.errors import UserError
from distill.stages.train import launch
from distill.stages.train.config import TrainConfig
from distill.stages.train.recipes import load_recipe

STEPS = 6
# fp32: these tests compare distributed runs with one process number for number; bf16 autocast (the recipe's
# `auto` on a CPU with AVX-512 BF16) rounds differently across ranks and is compared in test_precision.py
FLAGS = ["--recipe", "smol-demo", "--precision", "fp32", "--dataset", "filt", "--eval-fraction", "0",
         "--max-steps", str(STEPS),
         "--logging-steps", "1", "--report-to", "none", "--learning-rate", "1e-3", "--warmup-ratio", "0",
         "--set", "lr_scheduler_type=constant", "--set", "per_device_train_batch_size=1", "--save-steps", "3"]


def _losses(artifact):
    history = json.loads((artifact.path / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e]


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(next(directory.glob("*.safetensors"))))


@pytest.mark.train
@pytest.mark.cli
def test_zero3_offload_launch_is_preempted_resumes_and_trains_like_a_plain_run(home, tiny_qwen2_dir, monkeypatch,
                                                                             capfd):
    make_filtered()
    run_cli("train", *FLAGS, "--model", str(tiny_qwen2_dir), "--name", "plain", home=home, check=True)

    argv = ["train", *FLAGS, "--model", str(tiny_qwen2_dir), "--name", "zero3", "--accelerate-config", "zero3-offload"]
    cfg = build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(tiny_qwen2_dir), "precision": "fp32",
                                                        "accelerate_config": "zero3-offload"})
    assert launch.should_relaunch(cfg)  # one device, but offloading: runs under accelerate
    command = launch.launch_command(cfg, argv)
    assert command[command.index("--mixed_precision") + 1] == "no"  # fp32 on CPU, as the trainer will use
    # Preempted at step 3 (SIGTERM): the rank saves a resumable ZeRO-3 checkpoint; the launch exits 143.
    monkeypatch.setenv("DISTILL_SIGTERM_AT_STEP", "3")
    assert launch.run_launcher(command, "zero3-offload") == launch.PREEMPTED_EXIT
    assert "saved a resumable checkpoint" in capfd.readouterr().err
    (run_dir,) = (home / "checkpoints" / "zero3" / ".runs").iterdir()
    assert (run_dir / "checkpoint-3" / "global_step3").is_dir()  # DeepSpeed's partitioned states
    assert not artifacts.list_versions(home / "checkpoints" / "zero3")
    # The same command resumes from it and finishes.
    monkeypatch.delenv("DISTILL_SIGTERM_AT_STEP")
    assert launch.run_launcher(command, "zero3-offload") == 0
    out = capfd.readouterr()
    assert f"resuming from {run_dir / 'checkpoint-3'}" in out.err and out.out.strip().splitlines()[-1] == "zero3@v0001"

    plain, zero3 = artifacts.resolve("plain"), artifacts.resolve("zero3")
    assert zero3.manifest["training"]["distributed"] == {
        "type": "DEEPSPEED", "processes": 1, "accelerate_config": "zero3-offload", "zero_stage": 3,
        "offload_optimizer": "cpu", "offload_param": "cpu"}
    assert plain.manifest["training"]["distributed"]["type"] == "NO"
    assert zero3.manifest["trainer_state"]["global_step"] == STEPS
    # Same data, same order, same optimizer maths: the partitioned, offloaded, preempted and resumed run
    # follows the plain one.
    plain_losses, zero3_losses = _losses(plain), _losses(zero3)
    assert len(zero3_losses) == len(plain_losses) == STEPS
    assert zero3_losses[0] == pytest.approx(plain_losses[0], abs=1e-4)
    assert zero3_losses == pytest.approx(plain_losses, rel=2e-3)
    assert zero3_losses[-1] < zero3_losses[0] - 1
    # ZeRO-3 keeps only shards on each rank; the artifact must hold the gathered, whole tensors.
    before, after_plain, after_zero3 = (_weights(tiny_qwen2_dir), _weights(plain.model_path),
                                        _weights(zero3.model_path))
    assert set(after_zero3) == set(before)
    for key, tensor in before.items():
        assert after_zero3[key].shape == tensor.shape and not (after_zero3[key] == tensor).all(), key
        assert (after_zero3[key] - after_plain[key]).abs().max() < 5e-3, key
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(zero3.model_path)  # loads as a normal model


def test_launch_passes_the_trainer_precision_to_accelerate(home, tiny_qwen2_dir):
    make_filtered()
    for precision, flag in (("bf16", "bf16"), ("fp16", "fp16"), ("fp32", "no")):
        cfg = build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(tiny_qwen2_dir), "num_gpus": 8,
                                                            "accelerate_config": "zero3", "precision": precision})
        command = launch.launch_command(cfg, ["train"])
        assert command[command.index("--mixed_precision") + 1] == flag
        assert command[command.index("--num_processes") + 1] == "8"


def test_which_configs_relaunch_a_single_gpu_run(tiny_qwen2_dir):
    def single(config):
        return build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(tiny_qwen2_dir),
                                                             "accelerate_config": config})

    assert [launch.should_relaunch(single(c)) for c in ("ddp", "zero2", "zero3", "zero3-offload", "fsdp")] == [
        False, False, False, True, False]
    assert launch.should_relaunch(build(TrainConfig, load_recipe("openthoughts-7b"), {"dataset": ["x"]}))


def test_offloading_on_a_machine_without_gpus_is_a_user_error(home, tiny_qwen2_dir):
    from distill.stages import train

    make_filtered()
    cfg = build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(tiny_qwen2_dir), "precision": "fp32",
                                                        "accelerate_config": "zero3-offload"})
    with pytest.raises(UserError, match="needs CUDA GPUs"):
        train.run(cfg)


@pytest.mark.train
@pytest.mark.cli
def test_qlora_under_zero3_loads_without_a_device_map(home, tiny_qwen2_dir):
    """QLoRA + ZeRO-3: transformers refuses a device_map under ZeRO-3, so the 4-bit student must load
    without one (the shards are placed by DeepSpeed; quant storage = compute dtype)."""
    make_filtered()
    argv = ["train", *FLAGS, "--model", str(tiny_qwen2_dir), "--name", "qlora-z3", "--accelerate-config",
            "zero3-offload", "--load-in-4bit"]
    cfg = build(TrainConfig, load_recipe("smol-demo"), {**BASE, "model": str(tiny_qwen2_dir), "load_in_4bit": True,
                                                        "precision": "fp32", "accelerate_config": "zero3-offload"})
    env = {**os.environ, "DISTILL_HOME": str(home), launch.CONFIG_ENV: "zero3-offload"}
    result = subprocess.run(launch.launch_command(cfg, argv), env=env, cwd=str(REPO), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    artifact = artifacts.resolve("qlora-z3")
    assert artifact.manifest["training"]["adapter"] and artifact.manifest["training"]["distributed"]["zero_stage"] == 3
    assert (artifact.model_path / "adapter_model.safetensors").is_file()
    losses = _losses(artifact)
    assert len(losses) == STEPS and losses[-1] < losses[0]


@pytest.mark.cli
def test_a_broken_accelerate_config_is_a_one_line_error(home, tmp_path, tiny_qwen2_dir):
    make_filtered()
    broken = tmp_path / "mine.yaml"
    broken.write_text("distributed_type: DEEPSPEED\ndeepspeed_config: [unclosed\n")
    result = run_cli("train", *FLAGS, "--model", str(tiny_qwen2_dir), "--accelerate-config", str(broken), home=home)
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot read accelerate config {broken}")
    assert len(result.stderr.strip().splitlines()) == 1 and not (home / "checkpoints").exists()


def _two_cpu_ranks(args: list[str], home, env: dict | None = None) -> subprocess.CompletedProcess:
    """`distill train` on two CPU ranks (gloo), started by torchrun as accelerate starts GPU ranks."""
    import sys

    from fixtures_vllm import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "distill", *args]
    return subprocess.run(command, env={**os.environ, "DISTILL_HOME": str(home), "ACCELERATE_USE_CPU": "true",
                                        **(env or {})}, cwd=str(REPO), capture_output=True, text=True, timeout=900)


@pytest.mark.train
@pytest.mark.cli
def test_two_ranks_agree_to_stop_commit_once_and_equal_one_process_with_their_batch(home, tiny_qwen2_dir):
    """Data parallel across two real processes: SIGTERM reaching one rank stops both at the same step (they
    agree through an all-reduce, then both save); the resumed run commits one version, from rank 0; and the
    result equals one process trained on the same global batch."""
    from test_train import SUMS, _rows

    make_filtered(rows=_rows(SUMS * 2))
    flags = [*FLAGS, "--model", str(tiny_qwen2_dir)]
    killed = _two_cpu_ranks(["train", *flags, "--name", "ddp"], home, env={"DISTILL_SIGTERM_AT_STEP": "2"})
    assert killed.returncode != 0 and "saved a resumable checkpoint" in killed.stderr, killed.stderr[-3000:]
    (run_dir,) = (home / "checkpoints" / "ddp" / ".runs").iterdir()
    assert (run_dir / "checkpoint-2" / "trainer_state.json").is_file()
    # each rank saved its own RNG state at step 2: both stopped there, not only the one that got the signal
    assert {p.name for p in (run_dir / "checkpoint-2").glob("rng_state_*.pth")} == {"rng_state_0.pth",
                                                                                 "rng_state_1.pth"}
    assert not artifacts.list_versions(home / "checkpoints" / "ddp")

    resumed = _two_cpu_ranks(["train", *flags, "--name", "ddp"], home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and resumed.stdout.strip().splitlines()[-1] == "ddp@v0001"
    assert [v.name for v in artifacts.list_versions(home / "checkpoints" / "ddp")] == ["v0001"]  # rank 0 only
    ddp = artifacts.resolve("ddp")
    assert ddp.manifest["training"]["world_size"] == 2
    assert ddp.manifest["training"]["distributed"] == {"type": "MULTI_CPU", "processes": 2, "accelerate_config": None}

    run_cli("train", *flags, "--set", "per_device_train_batch_size=2", "--name", "single", home=home, check=True)
    single = artifacts.resolve("single")
    assert _losses(ddp) == pytest.approx(_losses(single), abs=1e-4)
    a, b = _weights(ddp.model_path), _weights(single.model_path)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
