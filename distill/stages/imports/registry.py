"""Published reasoning-trace datasets we can import, one module per source (declared with spec.py)."""

from __future__ import annotations

from distill.errors import UserError
from distill.stages.imports import mixture_of_thoughts, openr1_math, openthoughts, r1_distill_sft
from distill.stages.imports.spec import SourceSpec


def sources() -> dict[str, SourceSpec]:
    """Every importable source by Hub id."""
    specs = [openthoughts.SOURCE, r1_distill_sft.SOURCE, openr1_math.SOURCE, mixture_of_thoughts.SOURCE]
    return {spec.hub_id: spec for spec in specs}


def get_source(name: str) -> SourceSpec:
    """A source by Hub id (case-insensitive) or slug."""
    known = sources()
    for spec in known.values():
        if name.lower() in (spec.hub_id.lower(), spec.slug.lower()):
            return spec
    raise UserError(f"unknown import source {name!r}; known: {', '.join(known)} (any other file or Hub dataset "
                    "can go straight to `distill filter --input` or `distill train --dataset`)")
