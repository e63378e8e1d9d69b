"""The two halves of a `distill generate` run: sampling into the partial dir, and building the artifact.

    generate_missing(job, missing_by_prompt, shard, count)  # engine -> one jsonl line per finished sample (+ progress)
    dataset, totals = build_dataset(job)       # partial dir + source rows -> rows in (prompt, sample) order
    stats, extra = manifest_parts(job, totals) # what the traces manifest records

``sampling_run`` (a context manager) holds one run's engine, part file and stats; ``generate_missing`` samples
a fixed set with it, ``distill.stages.generate.adaptive`` samples round after round (--until-verified).

``job`` is the ``GenerationJob`` that ``distill.stages.generate.run`` assembles (config, dataset, prompts, store,
teacher...).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from distill import log
from distill.think import split_reasoning

RESERVED = ("id", "sample_index", "prompt", "problem", "answer", "completion", "finish_reason", "prompt_tokens",
            "completion_tokens", "teacher", "temperature", "top_p", "max_tokens", "seed", "_order")
CONVERSATION_FILE = "conversation.json"
ADAPTIVE_COLUMNS = ("round", "verified")  # --until-verified: each row's round and whether it verified


NO_REASONING_SHARE = 0.05  # below this share of samples with a <think> block, the teacher is likely not reasoning


def has_reasoning_block(completion: str | None) -> bool:
    """A closed reasoning block (<think>…</think> or another dataset's markers)."""
    return split_reasoning(completion or "", assume_prefilled_think=True)[0] is not None


def no_reasoning_hint(share: float) -> str:
    return (f"only {share:.1%} of the samples have a <think>…</think> block: is the teacher a reasoning model? "
            "A non-reasoning teacher (an instruct model, the bundled one) needs worked examples: --few-shot FILE "
            "(see data/demo/few_shot.json) or --few-shot-from DATASET:K, and/or --prefill '<think>\\n'; "
            "`distill filter` rejects samples without the block as 'format'")


def explicit_system_prompt(cfg, few_shot) -> str | None:
    if cfg.system_prompt is not None:
        return cfg.system_prompt
    if few_shot and few_shot[0]["role"] == "system":
        return few_shot[0]["content"]
    return None


# ---------------------------------------------------------------------------- sampling


@dataclass
class GenerationJob:
    """Everything one `distill generate` run works from (built by ``distill.stages.generate.run``)."""

    cfg: Any                # GenerateConfig
    data: Any               # the source rows (datasets.Dataset)
    source: Any             # where they came from (artifacts.sources.Source)
    prompts: Any            # the deduplicated prompts (Prompts: ids, rows, problems, messages)
    store: Any              # PartialStore: finished samples on disk (resume)
    teacher: Any            # Teacher: what the engine loads
    few_shot: list | None
    config_hash: str        # identity of everything that changes the samples
    engine: Any = None      # an open engine to reuse instead of starting one
    few_shot_from: dict | None = None  # where --few-shot-from's examples came from (shots.Shots.record)
    references: dict | None = None  # --until-verified: each prompt's reference answer cell ({id: answer})


def run_seed(seed: int, shard: int, count: int, runs_before: int) -> int:
    """The first run of shard 0 uses --seed itself; others get their own stream (a resumed run reusing
    the first run's stream would replay its noise on the same prompts: duplicate samples)."""
    if shard == 0 and runs_before == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/{shard}/{count}/{runs_before}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2 ** 31)


def generate_missing(job: GenerationJob, missing_by_prompt: dict[int, list[int]], shard: int, count: int) -> None:
    """Sample what ``missing_by_prompt`` lists ({prompt position: missing sample indices}) and persist each sample."""
    mine = len(range(shard, len(job.prompts), count))
    remaining = {job.prompts.ids[p]: len(indices) for p, indices in missing_by_prompt.items()}
    with sampling_run(job, shard, count, prompts=mine, prompts_done=mine - len(missing_by_prompt)) as sampler:
        for record in sampler.sample(missing_by_prompt, sampler.seed):
            remaining[record["id"]] -= 1
            if remaining[record["id"]] == 0:
                sampler.advance()
        sampler.finished = all(v <= 0 for v in remaining.values())


class Sampler:
    """One run's open engine and sample writer (made by ``sampling_run``); ``sample`` may be called many times."""

    def __init__(self, job: GenerationJob, engine, writer, stats: dict[str, Any], template_prefill: str | None,
                 bar, task):
        self.job, self.engine, self.writer, self.stats = job, engine, writer, stats
        self.seed: int = stats["seed"]
        self.run_id: str = stats["run"]
        self.template_prefill = template_prefill
        self.bar, self.task = bar, task
        self.finished = False  # set by the caller once nothing is left to sample
        self._began = self._last_saved = time.monotonic()

    def sample(self, missing_by_prompt: dict[int, list[int]], seed: int):
        """Yield the record of each sample as it finishes, after it is persisted (one engine call, seeded)."""
        from distill.engines import Request, SamplingConfig
        from distill.engines import chat as prompting
        from distill.stages.generate import logprobs as token_logprobs

        cfg, prompts, stats = self.job.cfg, self.job.prompts, self.stats
        # --prefill: a last message the engine's chat rendering continues (not stored in the rows' prompt)
        tail = [prompting.prefill_message(cfg.prefill)] if cfg.prefill is not None else []
        requests = (Request(key=prompts.ids[p], messages=prompts.messages[p] + tail, sample_indices=indices)
                    for p, indices in missing_by_prompt.items())
        sampling = SamplingConfig(n=cfg.num_generations, temperature=cfg.temperature, top_p=cfg.top_p,
                                  max_tokens=cfg.max_tokens, seed=seed, logprobs=cfg.logprobs)
        for sample in self.engine.generate(requests, sampling):
            text = sample.text
            if cfg.prefill is not None and not sample.extra.get("error"):
                text = prompting.completion_with_prefill(text, cfg.prefill, self.template_prefill)
            record = {"id": sample.key, "sample_index": sample.index, "completion": text,
                      "finish_reason": sample.finish_reason, "prompt_tokens": sample.prompt_tokens,
                      "completion_tokens": sample.completion_tokens, "run": self.run_id}
            if sample.extra.get("error"):
                record["error"] = sample.extra["error"]
            if sample.logprobs is not None:
                record["logprobs"] = token_logprobs.encode(sample.logprobs)
            self.writer.write(record)
            if not stats["samples"]:
                stats["first_sample_seconds"] = round(time.monotonic() - self._began, 3)
            stats["samples"] += 1
            stats["prompt_tokens"] += sample.prompt_tokens
            stats["completion_tokens"] += sample.completion_tokens
            now = time.monotonic()
            stats["engine_seconds"] = round(now - self._began, 3)
            self.bar.update(self.task, samples=stats["samples"],
                            tps=stats["completion_tokens"] / max(now - self._began, 1e-9))
            if now - self._last_saved >= 1.0:
                self.job.store.write_run(self.run_id, stats)
                self._last_saved = now
            yield record

    def advance(self, prompts: int = 1, **fields: Any) -> None:
        """``prompts`` more prompts are done (the progress bar); ``fields``: other counters it shows."""
        self.bar.update(self.task, advance=prompts, **fields)


@contextlib.contextmanager
def sampling_run(job: GenerationJob, shard: int, count: int, *, prompts: int, prompts_done: int,
                 fields: dict[str, str] | None = None, run_id: str | None = None) -> Iterator[Sampler]:
    """Start the engine (errors there leave nothing on disk), open this run's part file and progress bar
    (``prompts`` in all, ``prompts_done`` already), and record the run's stats as it goes and when it ends."""
    from distill.engines import chat as prompting
    from distill.engines import make_engine
    from distill.stages.generate.store import new_run_id

    cfg, store = job.cfg, job.store
    seed = run_seed(cfg.seed, shard, count, len(store.runs()))
    engine_cfg = cfg.engine_config(
        job.teacher.model, seed=seed, chat_template=cfg.chat_template or job.teacher.chat_template,
        system_prompt=explicit_system_prompt(cfg, job.few_shot), tokenizer=cfg.tokenizer,
        adapter=job.teacher.adapter)
    started = time.monotonic()
    own = job.engine is None
    engine = make_engine(engine_cfg) if own else job.engine  # errors here leave nothing on disk
    if cfg.logprobs:
        try:
            engine.check_logprobs(cfg.logprobs)  # before the partial dir exists: a refusal leaves nothing
        except BaseException:
            if own:
                engine.close()
            raise
    engine_format = engine.conversation_format()
    template_prefill = engine_format.get("prefill")  # the chat template's own (e.g. "<think>\n"), put back already
    if cfg.prefill is not None:
        engine_format.update(prefill=prompting.effective_prefill(cfg.prefill, template_prefill),
                             prefill_source="--prefill", template_prefill=template_prefill)
    run_id = run_id or new_run_id()
    stats: dict[str, Any] = {"run": run_id, "shard": f"{shard}/{count}", "seed": seed, "engine": cfg.engine,
                             "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                             "load_seconds": round(time.monotonic() - started, 2), "engine_seconds": 0.0,
                             "samples": 0, "prompt_tokens": 0, "completion_tokens": 0}
    writer = sampler = None
    try:
        store.create({"config_hash": job.config_hash, "name": cfg.name, "teacher": job.teacher.info,
                      "dataset": job.source.info})
        if not (store.path / CONVERSATION_FILE).exists():
            (store.path / CONVERSATION_FILE).write_text(json.dumps(engine_format, indent=2))
        writer = store.writer(f"{shard}of{count}", run_id)
        shown = {"samples": "{} samples", **(fields or {}), "tps": "{:.0f} tok/s"}
        with _progress(cfg.progress, shown) as bar:
            task = bar.add_task(f"{cfg.name} [{cfg.engine}]", total=prompts, completed=prompts_done,
                                **{name: 0 for name in shown})
            sampler = Sampler(job, engine, writer, stats, template_prefill, bar, task)
            yield sampler
    finally:
        if writer is not None:
            writer.close()
            stats["finished"] = bool(sampler and sampler.finished)
            store.write_run(run_id, stats)
        if own:
            engine.close()


def _progress(enabled: bool, fields: dict[str, str]):
    return log.progress(unit="prompts", fields=fields, enabled=enabled)


# ---------------------------------------------------------------------------- the artifact


def source_columns(column_names: list[str], cfg, answer_column: str | None,
                   id_column: str | None = None) -> list[tuple[str, str]]:
    """(source name, output name) of the source columns carried into every row."""
    from distill.stages.generate.logprobs import COLUMNS as LOGPROB_COLUMNS

    represented = {"problem": cfg.problem_column, "answer": answer_column, "id": id_column}
    # columns of our own only some runs add (a run without them keeps the source's names it always had)
    reserved = RESERVED + (LOGPROB_COLUMNS if cfg.logprobs else ()) + (ADAPTIVE_COLUMNS if cfg.until_verified else ())
    out = []
    for name in column_names:
        if name in reserved:
            if represented.get(name) == name:
                continue  # already there as our own column
            out.append((name, f"source_{name}"))
        else:
            out.append((name, name))
    return out


def _answer(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def build_dataset(job: GenerationJob, verified: dict[tuple[str, int], bool] | None = None):
    """The traces dataset: one row per (prompt, sample index), in dataset order; and token totals.

    ``verified`` (--until-verified: each sample's verdict) adds the columns ``round`` and ``verified``."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    from distill.stages.generate import logprobs as token_logprobs

    cfg, data, prompts, store = job.cfg, job.data, job.prompts, job.store
    n = cfg.max_samples if verified is not None else cfg.num_generations  # sample indices are below n
    carried = source_columns(data.column_names, cfg, prompts.answer_column, prompts.id_column)
    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    features = datasets.Features({
        "id": datasets.Value("string"), "sample_index": datasets.Value("int32"),
        "prompt": datasets.List(message), "problem": datasets.Value("string"), "answer": datasets.Value("string"),
        **{out: data.features[src] for src, out in carried},
        "completion": datasets.Value("string"), "finish_reason": datasets.Value("string"),
        "prompt_tokens": datasets.Value("int32"), "completion_tokens": datasets.Value("int32"),
        "teacher": datasets.Value("string"), "temperature": datasets.Value("float64"),
        "top_p": datasets.Value("float64"), "max_tokens": datasets.Value("int32"), "seed": datasets.Value("int64"),
        **(token_logprobs.features() if cfg.logprobs else {}),
        **({"round": datasets.Value("int32"), "verified": datasets.Value("bool")} if verified is not None else {}),
        "_order": datasets.Value("int64")})
    build = store.path / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    position = {key: i for i, key in enumerate(prompts.ids)}
    totals: dict[str, Any] = {"samples": 0, "prompt_tokens": 0, "completion_tokens": 0, "finish_reasons": Counter(),
                              "prompts_too_long": 0, "with_think": 0}
    batch_rows = token_logprobs.WRITER_BATCH_ROWS if cfg.logprobs else None  # None: the datasets default
    writer = ArrowWriter(features=features, path=str(build / "rows.arrow"), writer_batch_size=batch_rows)
    cached_row, cached_at = None, -1
    for record in store.records():
        i, index = position.get(record["id"]), int(record["sample_index"])
        if i is None or index >= n:
            continue  # not part of this config's prompts
        if prompts.rows[i] != cached_at:
            cached_at = prompts.rows[i]
            cached_row = data[cached_at]
        writer.write({
            "id": record["id"], "sample_index": index, "prompt": prompts.messages[i], "problem": prompts.problems[i],
            "answer": _answer(cached_row.get(prompts.answer_column)) if prompts.answer_column else None,
            **{out: cached_row[src] for src, out in carried},
            "completion": record["completion"], "finish_reason": record["finish_reason"],
            "prompt_tokens": record["prompt_tokens"], "completion_tokens": record["completion_tokens"],
            "teacher": cfg.teacher, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "max_tokens": cfg.max_tokens, "seed": cfg.seed, "_order": i * n + index,
            **(token_logprobs.row_arrays(record, cfg.logprobs) if cfg.logprobs else {}),
            **({"round": index // cfg.num_generations, "verified": verified[(record["id"], index)]}
               if verified is not None else {})})
        totals["samples"] += 1
        totals["prompt_tokens"] += record["prompt_tokens"]
        totals["completion_tokens"] += record["completion_tokens"]
        totals["finish_reasons"][record["finish_reason"]] += 1
        totals["with_think"] += has_reasoning_block(record["completion"])
        totals["prompts_too_long"] += bool(record.get("error"))
    writer.finalize()
    writer.close()
    rows = datasets.Dataset.from_file(str(build / "rows.arrow"))
    rows = rows.sort("_order", indices_cache_file_name=str(build / "order.arrow"))
    rows = rows.flatten_indices(cache_file_name=str(build / "sorted.arrow"),
                                writer_batch_size=batch_rows or 1000).remove_columns("_order")
    return rows, totals


def manifest_parts(job: GenerationJob, totals: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stats, top-level manifest keys) of a traces artifact."""
    from distill.environment import distribution_version

    cfg, store, prompts = job.cfg, job.store, job.prompts
    runs = store.runs()
    engine_seconds = sum(r.get("engine_seconds", 0) for r in runs)
    run_tokens = sum(r.get("completion_tokens", 0) for r in runs)
    samples = max(totals["samples"], 1)
    truncated = totals["finish_reasons"].get("length", 0) / samples
    throughput = round(run_tokens / engine_seconds, 2) if engine_seconds else None
    conversation_path = store.path / CONVERSATION_FILE
    engine_format = json.loads(conversation_path.read_text()) if conversation_path.exists() else {}
    conversation = {**engine_format, "few_shot": job.few_shot,
                    "prompt_template": None if prompts.conversations else cfg.prompt_template}
    if job.few_shot_from:
        conversation["few_shot_from"] = {**job.few_shot_from, "excluded_rows": prompts.excluded}
    generation = {
        "config_hash": job.config_hash, "runs": runs, "shards": sorted({r.get("shard") for r in runs}),
        "engine_seconds": round(engine_seconds, 2), "load_seconds": round(sum(r.get("load_seconds", 0) for r in runs), 2),
        "samples": totals["samples"], "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"], "tokens_per_second": throughput,
        "samples_per_second": round(sum(r.get("samples", 0) for r in runs) / engine_seconds, 3) if engine_seconds
        else None,
        "finish_reasons": dict(sorted(totals["finish_reasons"].items())), "truncated_share": round(truncated, 4),
        "prompts_too_long": totals["prompts_too_long"],
    }
    teacher = {**job.teacher.info, "dtype": cfg.dtype, "tensor_parallel_size": cfg.tensor_parallel_size,
               "max_model_len": cfg.max_model_len,
               "engine_version": distribution_version("vllm") if cfg.engine == "vllm" else None,
               "base_url": cfg.base_url if cfg.engine == "openai" else None}
    source = {**job.source.info, "split": cfg.split, "config": cfg.dataset_config,
              "problem_column": cfg.problem_column, "answer_column": prompts.answer_column,
              "id_column": prompts.id_column, "limit": cfg.limit, "rows_used": len(prompts) + prompts.duplicates,
              "prompts": len(prompts), "duplicate_prompts": prompts.duplicates,
              "few_shot_excluded_rows": prompts.excluded}
    sampling = {"n": cfg.num_generations, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_tokens": cfg.max_tokens, "seed": cfg.seed}
    extra: dict[str, Any] = {"conversation": conversation, "teacher": teacher, "source": source,
                             "sampling": sampling, "generation": generation}
    if cfg.logprobs:
        from distill.stages.generate.logprobs import manifest_record

        extra["logprobs"] = manifest_record(cfg, job.teacher)
    cost_usd = None
    if cfg.price_in is not None or cfg.price_out is not None:
        cost_usd = round((totals["prompt_tokens"] * (cfg.price_in or 0)
                          + totals["completion_tokens"] * (cfg.price_out or 0)) / 1e6, 6)
        extra["cost"] = {"usd": cost_usd, "price_in_per_million": cfg.price_in,
                         "price_out_per_million": cfg.price_out, "prompt_tokens": totals["prompt_tokens"],
                         "completion_tokens": totals["completion_tokens"]}
    stats = {"samples": totals["samples"], "prompts": len(prompts), "prompt_tokens": totals["prompt_tokens"],
             "completion_tokens": totals["completion_tokens"],
             "mean_completion_tokens": round(totals["completion_tokens"] / samples, 1),
             "truncated_share": round(truncated, 4), "think_share": round(totals["with_think"] / samples, 4),
             "tokens_per_second": throughput,
             "engine_seconds": round(engine_seconds, 2), "cost_usd": cost_usd}
    return stats, extra


def print_summary(artifact) -> None:
    """The end-of-run summary: samples, tokens, throughput, truncated share, cost."""
    manifest = artifact.manifest
    gen, stats = manifest["generation"], manifest["stats"]
    reasons = ", ".join(f"{k} {v}" for k, v in gen["finish_reasons"].items())
    lines = [
        f"{artifact.ref}: {gen['samples']} samples of {stats['prompts']} prompts; "
        f"{gen['completion_tokens']:,} completion tokens (mean {stats['mean_completion_tokens']:,}), "
        f"{gen['prompt_tokens']:,} prompt tokens",
        f"  throughput {gen['tokens_per_second'] or 0:,.1f} tok/s over {gen['engine_seconds']:.1f} s of "
        f"generation ({len(gen['runs'])} run(s), engine start {gen['load_seconds']:.1f} s)",
        f"  finish: {reasons}; truncated {gen['truncated_share']:.1%}"
        + (f"; {gen['prompts_too_long']} prompt(s) longer than the context" if gen["prompts_too_long"] else ""),
    ]
    if manifest.get("cost"):
        lines.append(f"  cost ${manifest['cost']['usd']:,.4f}")
    if manifest.get("logprobs"):
        lines.append(f"  top-{manifest['logprobs']['k']} teacher logprobs per completion token "
                     f"({', '.join(manifest['logprobs']['columns'])})")
    if manifest.get("adaptive"):
        lines.append(adaptive_line(manifest["adaptive"], manifest.get("cost")))
    lines.append(f"  -> {artifact.path}")
    print("\n".join(lines))
    share = manifest["stats"].get("think_share")
    if share is not None and share < NO_REASONING_SHARE:
        log.warn(no_reasoning_hint(share))


def adaptive_line(record: dict[str, Any], cost: dict | None) -> str:
    """One summary line of an --until-verified run (its manifest's ``adaptive`` key)."""
    others = [f"{record['prompts_at_max_samples']} stopped at --max-samples {record['max_samples']}"]
    if record["prompts_without_reference"]:
        others.append(f"{record['prompts_without_reference']} without a reference answer")
    histogram = ", ".join(f"{k}: {v}" for k, v in record["samples_per_prompt"].items())
    per_row = record["completion_tokens_per_verified_row"]
    line = (f"  adaptive: {record['prompts_reached_k']} of {record['prompts']} prompts reached "
            f"{record['until_verified']} verified ({'; '.join(others)}); {record['mean_samples_per_prompt']:g} samples "
            f"per prompt (prompts by samples {histogram}); {record['verified_rows']} verified rows, "
            + (f"{per_row:,.0f} completion tokens per verified row" if per_row is not None else "no verified row"))
    if cost and record.get("cost_per_verified_row_usd") is not None:
        line += f", ${record['cost_per_verified_row_usd']:,.6f} per verified row"
    return line
