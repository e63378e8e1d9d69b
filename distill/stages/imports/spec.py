"""What an importable source declares: its Hub id, licence, configs and row function.

Each source module (openthoughts.py, r1_distill_sft.py, ...) defines ``SOURCE = SourceSpec(...)``: its Hub id, licence, configs (with the
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
