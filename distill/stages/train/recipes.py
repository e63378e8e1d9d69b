"""Training recipes: `recipes/NAME.yaml`, each a few overrides over `recipes/base.yaml`.

    distill train --recipe qwen-7b                  # a shipped recipe, by name
    distill train --recipe my-recipe.yaml           # your own file; `extends: qwen-7b` reuses a shipped one

A recipe is a mapping of `TrainConfig` keys. `extends: NAME` (default `base`) names the recipe it
overrides; chains are followed and cycles refused. The recipes folder is `$DISTILL_RECIPES`, else the
one shipped inside the package (`distill/recipes/`, which `recipes/` at the repository root links to),
so a wheel install has them too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.config import load_yaml
from distill.errors import UserError

BASE = "base"
_SHIPPED_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def recipes_dir() -> Path:
    if os.environ.get("DISTILL_RECIPES"):
        return Path(os.environ["DISTILL_RECIPES"]).expanduser()
    return _SHIPPED_RECIPES


def list_recipes() -> list[str]:
    """Names of the shipped recipes (the base excluded)."""
    folder = recipes_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != BASE)


def recipe_path(spec: str) -> Path:
    """The YAML file of a recipe name or path; unknown names list the recipes."""
    candidate = Path(spec).expanduser()
    if spec.endswith((".yaml", ".yml")) or os.sep in spec:
        if not candidate.is_file():
            raise UserError(f"recipe file {candidate} not found")
        return candidate
    path = recipes_dir() / f"{spec}.yaml"
    if not path.is_file():
        known = ", ".join(list_recipes()) or f"none found in {recipes_dir()}"
        raise UserError(f"unknown recipe {spec!r}: choose one of {known}, or pass a YAML file")
    return path


def load_recipe(spec: str) -> dict[str, Any]:
    """The merged mapping of a recipe and everything it extends (base first)."""
    chain: list[Path] = []
    current: str | None = spec
    while current is not None:
        path = recipe_path(current) if not chain else _parent_path(current, chain[-1])
        if path.resolve() in [p.resolve() for p in chain]:
            raise UserError(f"recipe {spec!r} extends itself through {path.name}: remove the cycle")
        chain.append(path)
        data = load_yaml(path)
        parent = data.get("extends", BASE if path.stem != BASE else None)
        current = str(parent) if parent else None
    merged: dict[str, Any] = {}
    for path in reversed(chain):
        data = dict(load_yaml(path))
        data.pop("extends", None)
        merged.update(data)
    merged["recipe"] = spec if os.sep not in spec and not spec.endswith((".yaml", ".yml")) else str(Path(spec))
    return merged


def _parent_path(name: str, child: Path) -> Path:
    """`extends:` is a shipped recipe name, or a file next to the recipe that extends it."""
    local = child.parent / name
    if name.endswith((".yaml", ".yml")) and local.is_file():
        return local
    if (child.parent / f"{name}.yaml").is_file():
        return child.parent / f"{name}.yaml"
    return recipe_path(name)


def resolve_recipe(spec: str) -> dict[str, Any]:
    """`--recipe` resolver for `distill.cli.options.make_command`: a name or a YAML path -> config mapping."""
    return load_recipe(spec)
