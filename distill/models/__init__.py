"""Model references: the one resolver every stage uses to turn a model argument into what to load.

    ref = resolve("qwen7b-math@v2")        # ModelRef(spec, path, adapter, chat_template, checkpoint)
    ref = resolve("bundled")               # the bundled SmolLM2-135M (materialized once, see bundled.py)
    ref = resolve("Qwen/Qwen2.5-7B")       # a Hub id, returned for transformers / vLLM to load
    ref = resolve("deepseek-reasoner", served=True)   # a name an OpenAI-compatible server serves
    path = resolve_model(spec)             # a full model to load (a LoRA checkpoint needs merged weights)

A spec is ``bundled``, a checkpoint artifact reference (``NAME@vN``, or a version directory), a local
Hugging Face model directory, or a Hub id. A checkpoint gives its full model, its merged model (LoRA
with ``--merge``) or, where adapters are allowed, its base model + the adapter folder (vLLM attaches
it) and the chat template the adapter was trained with. Where a checkpoint's files are: ``layout.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.models.bundled import BUNDLED_LICENSE, BUNDLED_NAME, is_bundled, materialize
from distill.models.layout import describe

__all__ = ["BUNDLED_LICENSE", "BUNDLED_NAME", "ModelRef", "checkpoint_of", "is_bundled", "resolve", "resolve_model"]


@dataclass(frozen=True)
class ModelRef:
    spec: str                    # what the user wrote
    path: str                    # what to load: a local directory or a Hub id (for an adapter: its base model)
    adapter: str | None = None   # a LoRA adapter folder to attach to `path`, or None
    chat_template: str | None = None  # the adapter's trained chat template file, when the base has another
    checkpoint: Any = None       # the checkpoint Artifact behind the spec, if it names one
    served: bool = False         # `path` is a name an OpenAI-compatible server serves, not something to load


def checkpoint_of(spec: str | None):
    """The checkpoint artifact ``spec`` names, or None (bundled, a model directory, a Hub id).
    A spec with ``@`` must be a checkpoint: its resolution error is raised."""
    if not spec or is_bundled(spec):
        return None
    from distill import artifacts

    try:
        return artifacts.resolve(spec, kind="checkpoint")
    except artifacts.IntegrityError:  # a tampered checkpoint is named as such, never "not found"
        raise
    except UserError:
        if "@" in spec:
            raise
        return None


def resolve(spec: str, *, served: bool = False, adapters: bool = True) -> ModelRef:
    """Resolve a model argument (see the module docstring). ``served``: a name that is neither a checkpoint
    nor a local directory is an OpenAI-compatible server's model name. ``adapters=False``: a LoRA checkpoint
    without merged weights is an error (for loaders that cannot attach an adapter)."""
    if is_bundled(spec):
        return ModelRef(spec, str(materialize()))
    checkpoint = checkpoint_of(spec)
    if checkpoint is not None:
        return _checkpoint_ref(spec, checkpoint, adapters)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"model directory {path} has no config.json: point to a Hugging Face model folder")
        return ModelRef(spec, str(path.absolute()))
    if served:
        return ModelRef(spec, spec, served=True)
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise UserError(f"model {spec!r} not found: give a local model directory, a checkpoint "
                        "reference (NAME@vN), 'bundled', or a Hub id like Qwen/Qwen2.5-7B-Instruct")
    return ModelRef(spec, spec)


def resolve_model(spec: str) -> str:
    """A full model to load (path or Hub id): ``resolve(spec, adapters=False).path``."""
    return resolve(spec, adapters=False).path


def _checkpoint_ref(spec: str, checkpoint, adapters: bool) -> ModelRef:
    """Full models and merged adapters load as they are. An unmerged adapter loads on its base model, named
    by the manifest's student spec (portable: ``bundled``, a Hub id) before the adapter's recorded path."""
    layout = describe(checkpoint.path)
    if layout.inference_dir is not None:
        return ModelRef(spec, str(layout.inference_dir), checkpoint=checkpoint)
    if not adapters:
        raise UserError(f"{checkpoint.ref} is a LoRA adapter without merged weights: train it again with --merge, "
                        f"or load base {layout.base_model} + adapter {layout.model_dir}")
    candidates = [c for c in ((checkpoint.manifest.get("student") or {}).get("spec"), layout.base_model) if c]
    if not candidates:
        raise UserError(f"{layout.model_dir} is a LoRA adapter without base_model_name_or_path")
    template = layout.model_dir / "chat_template.jinja"
    for index, base in enumerate(candidates):
        try:
            model = resolve_model(base)
            break
        except UserError:
            if index == len(candidates) - 1:  # e.g. a relative student path from another working directory
                raise
    return ModelRef(spec, model, adapter=str(layout.model_dir),
                    chat_template=str(template) if template.is_file() else None, checkpoint=checkpoint)
