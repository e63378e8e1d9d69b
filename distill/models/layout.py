"""Where a checkpoint's weights are, for eval / generate / further training.

    HOME/checkpoints/NAME/vNNNN/
        manifest.json        lineage, recipe, conversation, base_model, trainer state
        README.md            model card
        model/               full model  (config.json + *.safetensors + tokenizer + generation_config.json)
                         or  LoRA adapter (adapter_config.json + adapter_model.safetensors + tokenizer + ...)
        merged/              LoRA runs with --merge: the adapter folded into the base, a full model
        loss_curve.png, metrics.json, trainer_state.json

    layout = describe(artifact.path)
    layout.inference_dir     # merged/ for adapters (when present), else model/

What to load from a checkpoint (model, or base + adapter) is `distill.models.resolve`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill.errors import UserError

MERGED_DIR = "merged"


@dataclass
class CheckpointLayout:
    root: Path
    model_dir: Path
    kind: str                  # "full" | "adapter"
    merged_dir: Path | None
    base_model: str | None     # for adapters: what the adapter applies to

    @property
    def inference_dir(self) -> Path | None:
        """A full model folder to serve: model/ for full fine-tunes, merged/ for merged adapters, else None."""
        return self.model_dir if self.kind == "full" else self.merged_dir


def describe(version_dir: str | Path) -> CheckpointLayout:
    root = Path(version_dir)
    model_dir = root / "model"
    merged = root / MERGED_DIR
    if (model_dir / "adapter_config.json").is_file():
        base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return CheckpointLayout(root, model_dir, "adapter", merged if (merged / "config.json").is_file() else None,
                                base)
    if (model_dir / "config.json").is_file():
        return CheckpointLayout(root, model_dir, "full", None, None)
    raise UserError(f"{root} holds no model (neither model/config.json nor model/adapter_config.json)")
