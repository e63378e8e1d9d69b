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
    engine_model(artifact)   # (model to load, adapter or None, chat template or None) for vLLM
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


def engine_model(artifact) -> tuple[str, str | None, str | None]:
    """(model to load, LoRA adapter folder or None, chat template file or None) for a checkpoint artifact.

    Full models and merged adapters load as they are. An unmerged adapter loads on its base model, named
    by the manifest's student spec (portable: ``bundled``, a Hub id) before the adapter's recorded path;
    the adapter's folder holds the chat template it was trained with, which the base may not have."""
    from distill import models

    layout = describe(artifact.path)
    if layout.inference_dir is not None:
        return str(layout.inference_dir), None, None
    candidates = [c for c in ((artifact.manifest.get("student") or {}).get("spec"), layout.base_model) if c]
    if not candidates:
        raise UserError(f"{layout.model_dir} is a LoRA adapter without base_model_name_or_path")
    template = layout.model_dir / "chat_template.jinja"
    for index, base in enumerate(candidates):
        try:
            model = models.resolve_model(base)
            break
        except UserError:
            if index == len(candidates) - 1:  # e.g. a relative student path from another working directory
                raise
    return model, str(layout.model_dir), str(template) if template.is_file() else None
