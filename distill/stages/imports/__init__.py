"""`distill import SOURCE`: bring a published trace dataset in as a versioned `imported` artifact.

    distill import open-thoughts/OpenThoughts-114k --format native           # what OpenThinker-7B trained on
    distill import open-thoughts/OpenThoughts-114k --config metadata         # rows `distill filter` can verify
    distill import open-r1/OpenR1-Math-220k --limit 1000 --name r1-math-1k   # one row per generation
    distill import ServiceNow-AI/R1-Distill-SFT --config v0
    distill import open-r1/Mixture-of-Thoughts --config math
    distill import open-thoughts/OpenThoughts-114k --data-files ~/hf/OpenThoughts-114k   # local copy, Hub layout

Rows follow `distill.stages.imports.schema` (id, problem, completion, answer, domain, system, messages,
…). `--format think` (default) rewrites reasoning tags to `<think>…</think>` and the system prompt
with them; `--format native` keeps the published text verbatim. The manifest records the Hub id,
the resolved revision (or the local files' sha256) and the licence.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from distill import artifacts, config
from distill.artifacts import hub
from distill.config import option
from distill.conversation import Conversation
from distill.errors import UserError
from distill.stages.imports import schema
from distill.stages.imports.loading import describe, load_raw
from distill.stages.imports.registry import get_source, sources
from distill.stages.imports.spec import Context


@dataclass
class ImportConfig:
    """Import a published reasoning-trace dataset (Hub id) into the schema filter/train read."""

    source: str = option("", help="Hub id of the dataset: open-thoughts/OpenThoughts-114k, "
                                  "ServiceNow-AI/R1-Distill-SFT, open-r1/OpenR1-Math-220k, open-r1/Mixture-of-Thoughts.")
    config: str | None = option(None, help="Dataset config (e.g. default | metadata); default: the source's main one.")
    split: str | None = option(None, help="Split to import; default: the config's first (train).")
    limit: Optional[int] = option(None, help="Import only the first N published rows (before expanding generations).")
    name: str | None = option(None, help="Artifact name; default SOURCE-CONFIG (+ -native).")
    format: str = option("think", help="think: <think>…</think> + answer, system prompt rewritten to match; "
                                       "native: the published text verbatim.")
    revision: str | None = option(None, help="Hub revision (branch, tag or commit) to load; recorded as resolved.")
    data_files: str | None = option(None, help="A local copy instead of the Hub: a file, a glob, or a folder in the "
                                               "Hub layout (e.g. data/train-*.parquet).")
    num_proc: Optional[int] = option(None, help="Processes for the row conversion (default: 1).")
    push_to_hub: str | None = option(None, help="Also upload the artifact to this Hub dataset repo.")

    def validate(self) -> None:
        if not self.source:
            raise UserError(f"name a SOURCE to import: {', '.join(sources())}")
        if self.format not in schema.FORMATS:
            raise UserError(f"--format {self.format!r}: use think or native")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if self.num_proc is not None and self.num_proc < 1:
            raise UserError(f"--num-proc must be at least 1, got {self.num_proc}")
        if self.num_proc is not None:  # capped at the cores available (datasets caps it at the rows)
            from distill.verify.pool import available_cpus

            self.num_proc = min(self.num_proc, available_cpus())


def _convert_batch(batch: dict, indices: list[int], *, convert, ctx: Context, columns: list[str]) -> dict:
    out: dict[str, list] = {c: [] for c in columns}
    keys = list(batch)
    for values, index in zip(zip(*(batch[k] for k in keys), strict=True), indices, strict=True):
        for converted in convert(dict(zip(keys, values, strict=True)), index, ctx):
            unknown = set(converted) - set(columns)
            if unknown:  # a converter bug: every column must be declared in the features
                raise RuntimeError(f"{ctx.dataset} converter produced undeclared columns {sorted(unknown)}")
            for column in columns:
                out[column].append(converted.get(column))
    return out


def convert_rows(raw, convert, ctx: Context, extra_features: dict[str, str], num_proc: int | None = None):
    """Published rows -> our rows (a ``datasets.Dataset``); one row function, batched."""
    features = schema.features(extra_features)
    fn = functools.partial(_convert_batch, convert=convert, ctx=ctx, columns=list(features))
    return raw.map(fn, batched=True, batch_size=256, with_indices=True, remove_columns=raw.column_names,
                   features=features, num_proc=num_proc if num_proc and num_proc > 1 else None,
                   desc=f"converting {ctx.dataset} ({ctx.config}, {ctx.format})")


def audit(data) -> dict:
    """Counts for the manifest: tag agreement between system prompt and completion (`tags_disagree` on
    every row), malformed rows, domains, the reasoning-tag style and the system prompts used."""
    mismatched, malformed, domains, systems, styles = 0, 0, Counter(), Counter(), Counter()
    columns = ["system", "completion", "domain"] + (["well_formed"] if "well_formed" in data.column_names else [])
    for batch in data.select_columns(columns).iter(batch_size=1000):
        for i, completion in enumerate(batch["completion"]):
            system = batch["system"][i]
            mismatched += schema.tags_disagree(system, completion) is not None
            malformed += "well_formed" in batch and not batch["well_formed"][i]
            domains[batch["domain"][i] or "unknown"] += 1
            systems[system] += 1
            styles.update(schema.tag_styles(completion))
    return {"tag_mismatch": mismatched, "malformed": malformed, "domains": dict(domains),
            "reasoning_tags": styles.most_common(1)[0][0] if styles else None, "system_prompts": len(systems),
            "system_prompt": next(iter(systems)) if len(systems) == 1 else None}


def run(cfg: ImportConfig):
    spec = get_source(cfg.source)
    config_name, config_spec = spec.config(cfg.config)
    split = cfg.split or config_spec.splits[0]
    if not cfg.data_files and split not in config_spec.splits:
        raise UserError(f"{spec.hub_id} config {config_name} has no split {split!r} "
                        f"(splits: {', '.join(config_spec.splits)})")
    name = artifacts.validate_name(cfg.name or "-".join(
        [spec.slug, config_name] + ([split] if split != config_spec.splits[0] else [])
        + (["native"] if cfg.format == "native" else [])))
    artifacts.check_name_kind(name, "imported")
    raw, info = load_raw(spec, config_name, config_spec, split, cfg.revision, cfg.data_files, cfg.limit)
    published_rows = None if info.get("streamed_rows") is not None else len(raw)  # streamed: unknown
    if cfg.limit:
        raw = raw.select(range(min(cfg.limit, len(raw))))
    ctx = Context(config=config_name, format=cfg.format, dataset=spec.hub_id)
    data = convert_rows(raw, spec.convert, ctx, config_spec.extra_features, cfg.num_proc)
    if len(data) == 0:
        raise UserError(f"no rows to import from {describe(info)}: check --config/--split/--data-files")
    checks = audit(data)
    with artifacts.create(name, "imported", config=config.to_dict(cfg),
                          licenses={spec.hub_id: spec.license}) as writer:
        writer.save_dataset(data)
        writer.counts["source_rows"] = len(raw)
        writer.stats.update({k: v for k, v in checks.items() if k != "system_prompt"})
        writer.stats["published_rows"] = published_rows
        writer.extra["source"] = {**info, "license": spec.license, "license_note": spec.license_note,
                                  "url": spec.url, "format": cfg.format}
        writer.extra["conversation"] = Conversation(
            system_prompt=checks["system_prompt"], extra={"reasoning_tags": checks["reasoning_tags"]}).to_record()
    artifact = artifacts.resolve(f"{name}@{writer.path.name}", kind="imported")
    print(f"imported {len(data)} rows from {len(raw)} published rows of {describe(info)} "
               f"[{config_name}/{split}, {cfg.format}] -> {artifact.ref}")
    if checks["tag_mismatch"] or checks["malformed"]:
        print(f"note: {checks['malformed']} malformed trace(s), {checks['tag_mismatch']} whose tags disagree "
                   "with the system prompt (kept as published; `distill filter` rejects them)", file=sys.stderr)
    print(f"licence: {spec.license} ({spec.license_note})")
    if cfg.push_to_hub:
        print(f"pushed to {hub.push(artifact, cfg.push_to_hub)}")
    return artifact
