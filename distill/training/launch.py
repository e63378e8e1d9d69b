"""`distill train --num-gpus N`: run the same command under `accelerate launch`.

    distill train --recipe qwen-7b --num-gpus 8
    -> accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 8 -m distill train ...

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

from distill.errors import UserError
from distill.training.config import ACCELERATE_CONFIGS
from distill.training.recipes import recipes_dir


def in_distributed_launch() -> bool:
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def should_relaunch(cfg) -> bool:
    return cfg.num_gpus * cfg.num_machines > 1 and not in_distributed_launch()


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
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", str(cfg.num_gpus * cfg.num_machines), "--num_machines", str(cfg.num_machines)]
    if cfg.num_machines > 1:
        command += ["--machine_rank", str(cfg.machine_rank), "--main_process_ip", str(cfg.main_process_ip),
                    "--main_process_port", str(cfg.main_process_port), "--rdzv_backend", "c10d"]
    return command + ["-m", "distill", *argv]


def check_gpus(cfg) -> None:
    import torch

    available = torch.cuda.device_count()
    if available < cfg.num_gpus:
        raise UserError(f"--num-gpus {cfg.num_gpus} but this machine has {available} CUDA device(s): "
                        f"use --num-gpus {max(available, 1)}")


def relaunch(cfg, argv: list[str] | None = None) -> int:
    """Run `distill <argv>` under accelerate; returns its exit code."""
    check_gpus(cfg)
    command = launch_command(cfg, list(sys.argv[1:] if argv is None else argv))
    print("launching: " + " ".join(command), file=sys.stderr)
    child = subprocess.Popen(command)

    def forward(signum, frame):
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
