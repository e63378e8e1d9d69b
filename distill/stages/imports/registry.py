"""Published reasoning-trace datasets we can import, one module per source.

Each source module defines ``SOURCE = SourceSpec(...)``: its Hub id, licence, configs (with the
folder each config's files live in on the Hub, so a local copy in the Hub layout loads too) and a
pure row function ``convert(row, index, ctx) -> list[dict]`` (one published row -> one row per
generation, in the schema of ``distill.stages.imports.schema``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from distill.errors import UserError


@dataclass(frozen=True)
class ConfigSpec:
    directory: str  # where the config's files live in the Hub repo ("data", "metadata", "v1", ...)
    description: str
    splits: tuple[str, ...] = ("train",)
    extra_features: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What a row function needs besides the row."""

    config: str
    format: str  # think | native
    dataset: str  # Hub id


@dataclass(frozen=True)
class SourceSpec:
    hub_id: str
    slug: str  # default artifact name prefix
    license: str
    license_note: str
    configs: dict[str, ConfigSpec]
    default_config: str
    convert: Callable[[dict, int, Context], list[dict]]
    url: str = ""

    def config(self, name: str | None) -> tuple[str, ConfigSpec]:
        name = name or self.default_config
        if name not in self.configs:
            raise UserError(f"{self.hub_id} has no config {name!r}; configs: {', '.join(self.configs)}")
        return name, self.configs[name]


def sources() -> dict[str, SourceSpec]:
    """Every importable source by Hub id (imported here, not at package import, to stay light)."""
    from distill.stages.imports import mixture_of_thoughts, openr1_math, openthoughts, r1_distill_sft

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
