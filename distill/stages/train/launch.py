"""`distill train --num-gpus N`: run the same command under `accelerate launch`.

    distill train --recipe qwen-7b --num-gpus 8
    -> accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 8 --mixed_precision bf16
       -m distill train ...
    distill train --recipe qwen-7b --num-gpus 1 --accelerate-config zero3-offload   # ZeRO-Offload, one GPU

Each process sees the distributed environment (WORLD_SIZE / LOCAL_RANK) and trains instead of
relaunching. Multi-node: run the same command on every machine with --num-machines, --machine-rank
and --main-process-ip (recipes/slurm/train.sbatch does this with srun). SIGTERM / SIGINT sent to this
process are forwarded to the launcher, which forwards them to the ranks (preemption saves a checkpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from distill import log
from distill.errors import UserError
from distill.stages.train.config import ACCELERATE_CONFIGS
from distill.stages.train.recipes import recipes_dir

CONFIG_ENV = "DISTILL_ACCELERATE_CONFIG"  # tells the ranks which strategy launched them (for the manifest)
PREEMPTED_ENV = "DISTILL_PREEMPTED_MARKER"  # a file a rank creates when it saved and stopped on SIGTERM
PREEMPTED_EXIT = 143  # 128 + SIGTERM: what a preempted `distill train` exits with, launched or not


def in_distributed_launch() -> bool:
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def should_relaunch(cfg) -> bool:
    """Several processes; or one GPU with a config that offloads to CPU (ZeRO-Offload fits a 7B on one GPU)."""
    if in_distributed_launch():
        return False
    return cfg.num_gpus * cfg.num_machines > 1 or offloads(accelerate_config_path(cfg.accelerate_config))


def offloads(config: Path) -> bool:
    """Whether an accelerate config moves optimizer state or parameters to CPU/NVMe (DeepSpeed or FSDP)."""
    import yaml

    try:
        settings = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read accelerate config {config}: {str(exc).splitlines()[0]}") from None
    if not isinstance(settings, dict):
        raise UserError(f"accelerate config {config} is not a YAML mapping")
    deepspeed = settings.get("deepspeed_config") or {}
    fsdp = settings.get("fsdp_config") or {}
    devices = (deepspeed.get("offload_optimizer_device"), deepspeed.get("offload_param_device"))
    return any(d not in (None, "none") for d in devices) or bool(fsdp.get("fsdp_offload_params"))


def mixed_precision_flag(precision: str) -> str:
    """accelerate's --mixed_precision for our precision: DeepSpeed refuses a config that disagrees with
    the trainer's bf16/fp16 arguments, so the launch always says what the trainer will use."""
    return {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")


def accelerate_config_path(value: str) -> Path:
    if value in ACCELERATE_CONFIGS:
        path = recipes_dir() / "accelerate" / f"{value}.yaml"
    else:
        path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"accelerate config {value!r} not found: use {', '.join(ACCELERATE_CONFIGS)} or a YAML file")
    return path


def launch_command(cfg, argv: list[str]) -> list[str]:
    config = accelerate_config_path(cfg.accelerate_config)
    if "DEEPSPEED" in config.read_text():
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise UserError(f"accelerate config {config.name} uses DeepSpeed, which is not installed: "
                            "pip install deepspeed (or pick --accelerate-config ddp / fsdp)")
    from distill.stages.train.model import resolve_precision

    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", str(cfg.num_gpus * cfg.num_machines), "--num_machines", str(cfg.num_machines),
               "--mixed_precision", mixed_precision_flag(resolve_precision(cfg.precision))]
    if cfg.num_machines > 1:
        command += ["--machine_rank", str(cfg.machine_rank), "--main_process_ip", str(cfg.main_process_ip),
                    "--main_process_port", str(cfg.main_process_port), "--rdzv_backend", "c10d"]
    return command + ["-m", "distill", *argv]


def check_gpus(cfg) -> None:
    import torch

    available = torch.cuda.device_count()
    if available < cfg.num_gpus:
        hint = (f"use --num-gpus {available}" if available else
                "several GPUs, or offloading (--accelerate-config with offload), needs CUDA GPUs; on CPU train "
                "with --num-gpus 1 and --accelerate-config ddp")
        raise UserError(f"--num-gpus {cfg.num_gpus} but this machine has {available} CUDA device(s): {hint}")


def distributed_summary(trainer) -> dict:
    """How the run was spread over devices, for the manifest: type, processes, ZeRO stage and offload."""
    state = trainer.accelerator.state
    summary = {"type": getattr(state.distributed_type, "value", str(state.distributed_type)),
               "processes": state.num_processes, "accelerate_config": os.environ.get(CONFIG_ENV)}
    plugin = getattr(state, "deepspeed_plugin", None)
    if plugin is not None:
        summary.update(zero_stage=plugin.zero_stage, offload_optimizer=plugin.offload_optimizer_device or "none",
                       offload_param=plugin.offload_param_device or "none")
    return summary


def relaunch(cfg, argv: list[str] | None = None) -> int:
    """Run `distill <argv>` under accelerate; returns its exit code."""
    check_gpus(cfg)
    command = launch_command(cfg, list(sys.argv[1:] if argv is None else argv))
    log.say("launching: " + " ".join(command))
    return run_launcher(command, cfg.accelerate_config)


def run_launcher(command: list[str], accelerate_config: str) -> int:
    """Run the launcher, forwarding SIGTERM / SIGINT to it. A run whose ranks saved and stopped on SIGTERM
    exits 143, as an unlaunched one does (the launcher itself reports any failed rank as 1)."""
    import tempfile

    marker = Path(tempfile.mkdtemp(prefix="distill-launch-")) / "preempted"
    child = subprocess.Popen(command, env={**os.environ, CONFIG_ENV: accelerate_config, PREEMPTED_ENV: str(marker)})

    def forward(signum, frame):
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
        return PREEMPTED_EXIT if code != 0 and marker.exists() else code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        marker.unlink(missing_ok=True)
        marker.parent.rmdir()


def mark_preempted() -> None:
    """Called by a rank that saved a resumable checkpoint on SIGTERM (see run_launcher)."""
    path = os.environ.get(PREEMPTED_ENV)
    if path:
        Path(path).touch()
