"""`distill generate`: teacher reasoning traces (vLLM in-process or an OpenAI-compatible server).

    distill generate --teacher deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --dataset openai/gsm8k --config main \\
        --split train --answer-column answer -n 4 --max-tokens 32768 --name traces-gsm8k
    distill generate --teacher bundled --dataset data/demo/train.jsonl --few-shot data/demo/few_shot.json \\
        --limit 8 -n 2 --max-tokens 256
    distill generate --teacher HuggingFaceTB/SmolLM2-1.7B-Instruct --dataset gsm8k_train.jsonl \\
        --problem-column question --few-shot-from gsm8k_train.jsonl:4 --prefill '<think>\\n'
    distill generate --teacher deepseek-reasoner --engine openai --base-url https://api.deepseek.com \\
        --api-key-env DEEPSEEK_API_KEY --max-concurrency 32 --price-in 0.55 --price-out 2.19 --dataset ...

Output: a ``traces`` artifact (HOME/data/NAME/vNNNN), one row per sample: id, sample_index, prompt
(messages), problem, answer, every source column, completion (a reasoning block always has both
tags: a template's ``<think>\\n`` prefill is put back, a server's separate reasoning merged),
finish_reason, prompt/completion tokens, teacher and sampling parameters. The manifest records the
source (id + revision or content hash), the teacher, the sampling, the exact conversation format
(``conversation``: chat template text + sha256, effective system prompt incl. a template's hidden
default, few-shot, prompt template, prefill), engine time, tokens/s and, with --price-in/--price-out
(USD per million tokens), the cost.

A teacher that is not a reasoning model (an instruct model, the bundled one) writes no ``<think>`` block by
itself, and `distill filter` then keeps nothing. Show it some: ``--few-shot FILE`` (a list of messages, e.g.
data/demo/few_shot.json), ``--few-shot-from DATASET:K`` (the first K worked solutions of DATASET as
``<think>`` examples, see ``stages/generate/shots.py``; rows showing the same problems are left out of the
prompts), and/or ``--prefill '<think>\\n'``: the assistant turn starts with that text (the template's
generation prompt, then the text; ``\\n`` and ``\\t`` are read as a line break and a tab), and the stored
completion starts with it too. With ``--engine openai`` the server is asked to continue the assistant turn
(``continue_final_message``, as vLLM and SGLang servers do). generate warns when under 5 % of the samples
hold a ``<think>`` block.

``--logprobs K`` (1-20) also stores the teacher's top-K log-probabilities of every completion token:
columns ``completion_token_ids``, ``top_logprob_ids``, ``top_logprobs`` and a manifest key ``logprobs``
(K, the tokenizer); see ``stages/generate/logprobs.py``. One teacher pass then serves SFT and logit
distillation (``distill train --method logit``). With ``--engine openai`` the server must return
logprobs (checked with one request before anything is generated).

Adaptive sampling (``stages/generate/adaptive.py``): ``--until-verified K`` samples in rounds of ``-n``, grades
each sample with the one grader as it finishes, and closes a prompt once K of its samples verified (complete,
well-formed, correct against the answer column; ``--answer-extraction``, ``--domain``, ``--grade-timeout``) or
``--max-samples N`` (default 4 x -n) were tried, so easy prompts cost one round and hard ones get more. Every
sample is stored, with its ``round`` and ``verified``; the manifest's ``adaptive`` key holds samples tried /
verified per prompt, tokens and (with prices) cost per verified row. Resumable like any run:

    distill generate --teacher bundled --dataset data/demo/train.jsonl --few-shot data/demo/few_shot.json \
        -n 2 --until-verified 2 --max-samples 8 --max-tokens 256 --name traces-adaptive

Resuming. Finished samples go to HOME/data/NAME/.partial-<config hash>/ as they complete. After a
crash (even ``kill -9``) rerun the same command: only missing (id, sample index) pairs are generated
and the artifact holds each exactly once. The hash covers what changes the samples (teacher,
dataset content, columns, prompt, sampling, seed...), not engine/infrastructure options; another
config under the same name makes a new version, and rerunning a finished command reuses its version.
A resumed run reseeds the engine (seed derived from --seed and the run number, recorded per run).

Data parallel (GPUs or nodes sharing HOME): start one process per GPU with the same command plus
``--shard i/N``. Each generates prompts i, i+N, ... into the shared partial dir; the last to finish
builds the one version (or run the same command with ``--merge-shards`` once all parts are done).

    for i in 0 1 2 3; do CUDA_VISIBLE_DEVICES=$i distill generate --teacher T --dataset D --shard $i/4 & done

A teacher too big for one node (DeepSeek-R1 671B): serve it with vLLM or SGLang across nodes (e.g.
``vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --pipeline-parallel-size 2`` over Ray,
or ``python -m sglang.launch_server --tp 16 --nnodes 2 ...``), put replicas behind a router
(vllm-router, sglang-router, nginx), add ``--reasoning-parser deepseek_r1`` if you like (the
reasoning is merged back), and point one or more shards at it:

    distill generate --engine openai --base-url http://router:8000/v1 --teacher deepseek-ai/DeepSeek-R1 \\
        --tokenizer deepseek-ai/DeepSeek-R1 --max-concurrency 512 --dataset D

(--tokenizer records the server's chat template and caps --max-tokens by its context.)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any, Optional

from distill import log
from distill.config import option, to_dict
from distill.engines import EngineOptions
from distill.engines import chat as prompting
from distill.errors import UserError
from distill.stages.generate import shots as shots_module
from distill.stages.generate.loop import GenerationJob, run_seed  # noqa: F401 - run_seed: part of this stage's API
from distill.stages.generate.prompts import (  # noqa: F401 - re-exported: part of this stage's API
    ANSWER_COLUMNS,
    Prompts,
    build_prompts,
    effective_id_column,
)
from distill.stages.generate.store import PartialStore


@dataclass
class GenerateConfig(EngineOptions):
    """Generate teacher reasoning traces into a versioned `traces` artifact (see `distill generate --help`)."""

    teacher: str = option("", "Teacher: Hub id, local model dir, 'bundled' or a checkpoint ref (NAME@vN); with "
                              "--engine openai, the model name the server serves.")
    dataset: str = option("", "Prompts: Hub dataset id, local jsonl/json/parquet/csv file, or an artifact ref.")
    split: str | None = option(None, "Dataset split (default: train).")
    dataset_config: str | None = option(None, "Hub dataset config (subset) name.", flag="--config")
    revision: str | None = option(None, "Hub dataset revision (branch, tag or commit).")
    problem_column: str = option("problem", "Column with the problem (or with a list of chat messages); "
                                            "--prompt-column is its old name.")
    answer_column: str | None = option(None, "Column with the reference answer, carried along for `distill "
                                             f"filter`; default: the first of {', '.join(ANSWER_COLUMNS)}.")
    id_column: str | None = option(None, "Column with a unique row id (default: the data's 'id' column when it has "
                                         "one, else a hash of the prompt; 'none': always the hash).")
    limit: Optional[int] = option(None, "Use only the first N rows (after leaving out --few-shot-from's "
                                        "problems).")
    system_prompt: str | None = option(None, "System prompt (default: none, i.e. the template's own default).")
    prompt_template: str = option(prompting.DEFAULT_PROMPT_TEMPLATE, "User turn; {problem} is replaced by the "
                                                                     "problem.")
    few_shot: str | None = option(None, "JSON/YAML file: a list of {role, content} messages put before each question.")
    few_shot_from: str | None = option(None, "DATASET:K: the first K worked solutions of DATASET (file, artifact "
                                             "or Hub id with a solution / completion column or GSM8K's '#### N' "
                                             "answers) as <think> examples before each question; their problems "
                                             "are left out of the prompts.")
    prefill: str | None = option(None, "Start the teacher's answer with this text, e.g. '<think>\\n' (\\n: a "
                                       "line break); stored completions start with it. openai: the server "
                                       "must support continue_final_message (vLLM, SGLang).")
    num_generations: int = option(4, "Samples per prompt (with --until-verified: per round).", short="-n")
    until_verified: Optional[int] = option(None, "Adaptive sampling: sample in rounds of -n and close a prompt once "
                                                 "K of its samples verify (complete, well-formed, correct against "
                                                 "the answer column) or --max-samples were tried.")
    max_samples: Optional[int] = option(None, "With --until-verified: most samples per prompt (default: 4 rounds, "
                                              "4 x -n).")
    answer_extraction: str = option("standard", "With --until-verified: where answers are read, strict | standard | "
                                                "lenient (as in `distill filter`).")
    domain: str = option("math", "With --until-verified: how answers are checked, math or multiple_choice.")
    grade_timeout: float = option(5.0, "With --until-verified: limit per answer check (s); an overrun is unverified.")
    temperature: float = option(0.6, "Sampling temperature.")
    top_p: float = option(0.95, "Nucleus sampling top-p.")
    max_tokens: int = option(32768, "Max completion tokens per sample (capped by the model's context).")
    name: str = option("traces", "Name of the output artifact.")
    chat_template: str | None = option(None, "Chat template override (text or .jinja file); openai: recorded "
                                             "only, start the server with the same template.")
    tokenizer: str | None = option(None, "openai: the served model's tokenizer (dir or Hub id) to record its chat "
                                         "template, cap --max-tokens by its context and map --logprobs tokens "
                                         "to ids.")
    logprobs: Optional[int] = option(None, "Also store the teacher's top-K log-probabilities of every completion "
                                           "token (K from 1 to 20), for logit distillation.")
    price_in: Optional[float] = option(None, "USD per million prompt tokens (cost in the manifest).")
    price_out: Optional[float] = option(None, "USD per million completion tokens.")
    shard: str | None = option(None, "Data parallel part i/N (e.g. 0/4): this process generates prompts i, i+N, ...")
    merge_shards: bool = option(False, "Build the artifact from finished shard parts (no generation).")
    push_to_hub: str | None = option(None, "Also upload the artifact to this Hub dataset repo.")
    progress: bool = option(True, "Show a progress bar.")
    # The old name of problem_column, still accepted as a config key (YAML, --set, Python) and, through
    # FLAG_ALIASES (read by distill.cli.options), as the flag --prompt-column.
    prompt_column: InitVar[Optional[str]] = None
    FLAG_ALIASES = {"prompt_column": "problem_column"}

    def __post_init__(self, prompt_column: Optional[str]) -> None:
        if prompt_column is not None:
            if self.problem_column not in ("problem", str(prompt_column)):
                raise UserError(f"--prompt-column {prompt_column!r} and --problem-column {self.problem_column!r}: "
                                "--prompt-column is the old name of --problem-column, pass one")
            self.problem_column = str(prompt_column)
        if isinstance(self.prefill, str):
            self.prefill = unescape(self.prefill)

    def validate(self) -> None:
        if not self.teacher:
            raise UserError("pass --teacher (a Hub id, a local model dir, 'bundled' or a checkpoint ref)")
        if not self.dataset:
            raise UserError("pass --dataset (a Hub id, a local jsonl/json/parquet file or an artifact ref)")
        if self.engine not in ("vllm", "openai"):
            raise UserError(f"unknown --engine {self.engine!r}: use vllm or openai")
        if self.engine == "openai" and not self.base_url:
            raise UserError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        self.validate_engine()
        from distill.config import MAX_SAMPLES
        from distill.engines import MAX_LOGPROBS

        # floats are finite by now (distill.config.coerce refuses nan / inf where they enter)
        checks = [(self.num_generations >= 1, f"-n/--num-generations must be at least 1, got {self.num_generations}"),
                  (self.num_generations <= MAX_SAMPLES,
                   f"-n/--num-generations must be at most {MAX_SAMPLES:,}, got {self.num_generations:,}: all samples "
                   "of a prompt are held in memory together (for more traces, use more prompts)"),
                  (self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}"),
                  (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
                  (self.max_tokens >= 1, f"--max-tokens must be at least 1, got {self.max_tokens}"),
                  (self.max_tokens < 2**31, f"--max-tokens must be below 2^31 (an int32 column), got {self.max_tokens}"),
                  (self.limit is None or self.limit >= 1, f"--limit must be at least 1, got {self.limit}"),
                  (self.logprobs is None or 1 <= self.logprobs <= MAX_LOGPROBS,
                   f"--logprobs must be between 1 and {MAX_LOGPROBS} (the top-K log-probabilities engines return), "
                   f"got {self.logprobs}"),
                  (self.max_concurrency >= 1, "--max-concurrency must be at least 1"),
                  ((self.price_in or 0) >= 0, f"--price-in must be >= 0, got {self.price_in}"),
                  ((self.price_out or 0) >= 0, f"--price-out must be >= 0, got {self.price_out}"),
                  (prompting.PROBLEM_SLOT in self.prompt_template, "--prompt-template needs a {problem} slot")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.prefill is not None:
            self.validate_prefill()
        from distill.stages.generate import adaptive

        adaptive.validate(self)
        if self.few_shot_from is not None:
            from distill.stages.generate.shots import parse_spec

            if self.few_shot:
                raise UserError("pass --few-shot FILE or --few-shot-from DATASET:K, not both")
            parse_spec(self.few_shot_from)
        if self.shard and len(self.shard) > 40:
            raise UserError(f"--shard {self.shard[:20]!r}... is too long: use i/N with 0 <= i < N, e.g. 0/4")
        self.shard_spec()

    def validate_prefill(self) -> None:
        if not self.prefill.strip():
            raise UserError("--prefill is empty: give the text the teacher's answer starts with, e.g. "
                            "--prefill '<think>\\n'")
        if self.logprobs:
            raise UserError("--prefill with --logprobs: the stored token ids would start after the prefill, which "
                            "`distill train --method logit` does not put in the student's prompt; drop one")

    def shard_spec(self) -> tuple[int, int]:
        if not self.shard:
            return 0, 1
        try:
            index, count = (int(x) for x in self.shard.split("/"))
        except ValueError:
            index, count = -1, 0
        if count < 1 or not 0 <= index < count:
            raise UserError(f"--shard {self.shard!r}: use i/N with 0 <= i < N, e.g. 0/4")
        return index, count


def unescape(text: str) -> str:
    """``\\n`` / ``\\t`` / ``\\\\`` as a line break / tab / backslash: a shell passes '<think>\\n' as typed,
    and a literal backslash-n is never the prefill meant."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


# ---------------------------------------------------------------------------- teacher and config identity


@dataclass
class Teacher:
    model: str  # what the engine loads (a path or Hub id) or, for servers, the served model name
    info: dict[str, Any]
    checkpoint: Any = None  # the checkpoint Artifact the teacher comes from, if any
    adapter: str | None = None  # a LoRA checkpoint's adapter folder (vLLM attaches it to `model`, the base)
    chat_template: str | None = None  # the adapter's trained chat template file, when the base has another


def resolve_teacher(cfg: GenerateConfig) -> Teacher:
    from distill import models

    ref = models.resolve(cfg.teacher, served=cfg.engine == "openai")
    checkpoint = ref.checkpoint
    if ref.adapter and cfg.engine != "vllm":
        raise UserError(f"{checkpoint.ref} is a LoRA adapter: generate with --engine vllm (which attaches it "
                        "to the base), or serve it and pass the served name")
    info = {"spec": cfg.teacher, "model": ref.path, "engine": cfg.engine,
            "checkpoint": checkpoint.ref if checkpoint else None,
            "checkpoint_sha256": checkpoint.content_sha256 if checkpoint else None}
    if ref.adapter:
        info["adapter"] = ref.adapter
    return Teacher(model=ref.path, info=info, checkpoint=checkpoint, adapter=ref.adapter,
                   chat_template=ref.chat_template)


def config_hash(cfg: GenerateConfig, source_info: dict, teacher: Teacher, few_shot,
                id_column: str | None = None) -> str:
    """Hash of everything that changes the samples (not infrastructure: engine, URLs, parallelism)."""
    identity = teacher.info["checkpoint_sha256"] or teacher.model
    template = prompting.template_text(None, cfg.chat_template) if cfg.chat_template else None
    payload = {
        "teacher": identity, "source": {k: v for k, v in source_info.items() if k != "path"},
        "columns": [cfg.problem_column, cfg.answer_column, id_column or cfg.id_column], "limit": cfg.limit,
        "system_prompt": cfg.system_prompt, "prompt_template": cfg.prompt_template, "few_shot": few_shot,
        "chat_template": template, "n": cfg.num_generations, "temperature": cfg.temperature, "top_p": cfg.top_p,
        "max_tokens": cfg.max_tokens, "seed": cfg.seed, "max_model_len": cfg.max_model_len, "dtype": cfg.dtype,
    }
    if cfg.logprobs:  # only when asked: runs without it keep the hash (and the partial dir) they always had
        payload["logprobs"] = cfg.logprobs
    if cfg.prefill is not None:  # likewise
        payload["prefill"] = cfg.prefill
    if cfg.until_verified:  # likewise
        from distill.stages.generate import adaptive

        payload["adaptive"] = adaptive.hash_payload(cfg)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- the run


def run(cfg: GenerateConfig, engine=None):
    """Generate (or resume, or merge) and return the committed traces Artifact (None: a shard's part is done).

    ``engine``: an open engine to use (and leave open) instead of starting one from ``cfg`` (tests,
    benchmarks, notebooks); it must serve ``cfg.teacher``."""
    import datasets

    from distill import artifacts
    from distill.artifacts.sources import load_input

    datasets.disable_progress_bars()
    if cfg.until_verified:
        from distill.verify.grader import prestart_pool

        prestart_pool()  # math-verify loads in the grading workers' fork server meanwhile
    shard, count = cfg.shard_spec()
    artifacts.validate_name(cfg.name)
    artifacts.check_name_kind(cfg.name, "traces")
    teacher = resolve_teacher(cfg)
    few_shot = prompting.load_few_shot(cfg.few_shot) if cfg.few_shot else None
    local = Path(cfg.dataset).expanduser()
    if local.is_file() and local.stat().st_size == 0:
        raise UserError(f"dataset {cfg.dataset} is empty: nothing to generate")
    shot_count = shots_module.parse_spec(cfg.few_shot_from)[1] if cfg.few_shot_from else 0
    # a Hub dataset is streamed up to --limit rows: read as many more as the examples may leave out
    data, source = load_input(cfg.dataset, split=cfg.split, config=cfg.dataset_config, revision=cfg.revision,
                              limit=cfg.limit + shot_count if cfg.limit else None)
    shots = shots_module.load_shots(cfg, data, source) if cfg.few_shot_from else None
    if shots is not None:
        few_shot = shots.messages
    prompts = build_prompts(data, cfg, few_shot, frozenset(shots.problems) if shots else frozenset())
    references = None
    if cfg.until_verified:
        from distill.stages.generate import adaptive

        references = adaptive.check_references(cfg, data, prompts)  # before anything starts or is written
    chash = config_hash(cfg, source.info, teacher, few_shot, prompts.id_column)
    if shots is not None:
        log.say(f"{len(shots.problems)} worked solution(s) of {shots.record['spec'].rpartition(':')[0]} as <think> "
                f"examples; {prompts.excluded} row(s) of the dataset showing their problems left out of the prompts")
    if prompts.duplicates:
        log.say(f"{prompts.duplicates} row(s) repeat a prompt already taken: each prompt is sampled once "
                f"({len(prompts)} prompts from {len(prompts) + prompts.duplicates} rows; recorded in the manifest)")
    name_dir = artifacts.home() / artifacts.KIND_DIRS["traces"] / cfg.name
    store = PartialStore(name_dir / f"{artifacts.PARTIAL_PREFIX}{chash}")
    if not store.exists():
        existing = committed_version(cfg.name, chash)
        if existing is not None:
            print(f"{existing.ref} already holds these traces (same config {chash}); nothing to do. "
                  "Change --name or --seed to sample again.")
            if cfg.push_to_hub:
                from distill.artifacts import hub

                print(f"pushed {existing.ref} to {hub.push(existing, cfg.push_to_hub)}")
            return existing
    job = GenerationJob(cfg=cfg, data=data, source=source, prompts=prompts, store=store, teacher=teacher,
                        few_shot=few_shot, config_hash=chash, engine=engine,
                        few_shot_from=shots.record if shots else None, references=references)
    if cfg.merge_shards:
        return finish(job)
    if cfg.temperature == 0 and (cfg.num_generations > 1 or cfg.until_verified):
        log.warn("--temperature 0 with more than one sample per prompt gives copies of the greedy sample")
    if cfg.until_verified:
        from distill.stages.generate import adaptive

        adaptive.generate(job, shard, count)
        return _done(job, shard, count)
    done = store.done_keys()
    missing_by_prompt = {p: [i for i in range(cfg.num_generations) if (prompts.ids[p], i) not in done]
            for p in range(shard, len(prompts), count)}
    missing_by_prompt = {p: indices for p, indices in missing_by_prompt.items() if indices}
    if missing_by_prompt:
        from distill.stages.generate.loop import generate_missing

        generate_missing(job, missing_by_prompt, shard, count)
    elif not store.exists():  # an empty shard (N > prompts): nothing to write but its done mark
        store.create({"config_hash": chash})
    return _done(job, shard, count)


def _done(job: GenerationJob, shard: int, count: int):
    """Mark this shard done; the last one to finish builds the artifact."""
    store = job.store
    store.mark_done(shard, count, {"finished_at": time.time()})
    waiting = sorted(set(range(count)) - store.done_shards(count))
    if waiting:
        print(f"shard {shard}/{count} done; shards {', '.join(map(str, waiting))} still running: the last to finish "
              "builds the artifact (or rerun this command with --merge-shards once they are done)")
        return None
    return finish(job)


def committed_version(name: str, chash: str):
    from distill import artifacts

    root = artifacts.home() / artifacts.KIND_DIRS["traces"] / name
    if not root.is_dir():
        return None
    for version_dir in reversed(artifacts.list_versions(root)):
        try:
            artifact = artifacts.resolve(str(version_dir))
        except UserError:
            continue
        if (artifact.manifest.get("generation") or {}).get("config_hash") == chash:
            return artifact
    return None


def finish(job: GenerationJob):
    """Build and commit the artifact from the partial dir (one process at a time), then remove it."""
    from distill import artifacts
    from distill.artifacts import hub
    from distill.stages.generate.loop import build_dataset, manifest_parts, print_summary

    cfg, store, prompts = job.cfg, job.store, job.prompts
    if not store.exists():
        raise UserError(f"no generated samples for this config under {store.path.parent}: run without "
                        "--merge-shards first")
    with store.merge_lock() as holder:
        if not holder:
            print("another process is building the artifact from these parts")
            return None
        existing = committed_version(cfg.name, job.config_hash)
        if existing is None:
            verdicts = None
            if cfg.until_verified:
                from distill.stages.generate import adaptive

                verdicts = adaptive.final_verdicts(job)  # raises while some prompt still needs samples
            else:
                wanted = {(key, i) for key in prompts.ids for i in range(cfg.num_generations)}
                missing = len(wanted - store.done_keys())
                if missing:
                    raise UserError(f"{missing} of {len(wanted)} samples are still missing: run the unfinished "
                                    "shards (or this command without --merge-shards) to generate them")
            dataset, totals = build_dataset(job, verdicts)
            parents = [a for a in (job.source.artifact, job.teacher.checkpoint) if a is not None]
            config = {**to_dict(cfg), "source": job.source.info}
            with artifacts.create(cfg.name, "traces", config=config, parents=parents) as writer:
                writer.save_dataset(dataset)
                stats, extra = manifest_parts(job, totals)
                if verdicts is not None:
                    extra["adaptive"] = adaptive.manifest_record(job, verdicts, totals, stats["cost_usd"])
                    stats.update({k: extra["adaptive"][k] for k in ("verified_rows", "mean_samples_per_prompt",
                                                                    "completion_tokens_per_verified_row")})
                writer.stats.update(stats)
                writer.extra.update(extra)
            existing = artifacts.resolve(str(writer.path))
            print_summary(existing)
        else:
            print(f"{existing.ref} already holds these traces (same config {job.config_hash})")
    store.remove()
    if cfg.push_to_hub:
        print(f"pushed {existing.ref} to {hub.push(existing, cfg.push_to_hub)}")
    return existing


HELP = """Generate teacher reasoning traces into a versioned `traces` artifact (resumable: rerun the same
command after a crash; data parallel with --shard i/N).

\b
  distill generate --teacher deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --dataset openai/gsm8k --config main -n 4
  distill generate --teacher bundled --dataset data/demo/train.jsonl --few-shot data/demo/few_shot.json \\
      --limit 8 -n 2 --max-tokens 256
  distill generate --teacher HuggingFaceTB/SmolLM2-1.7B-Instruct --dataset gsm8k_train.jsonl \\
      --problem-column question --few-shot-from gsm8k_train.jsonl:4 --prefill '<think>\\n'
  distill generate --teacher deepseek-reasoner --engine openai --base-url https://api.deepseek.com \\
      --api-key-env DEEPSEEK_API_KEY --price-in 0.55 --price-out 2.19 --dataset ...
  distill generate --teacher bundled --dataset data/demo/train.jsonl --few-shot data/demo/few_shot.json \\
      -n 2 --until-verified 2 --max-samples 8     # adaptive: stop a prompt once 2 samples verify

A teacher that is not a reasoning model (an instruct model, the bundled one) writes no <think> block by
itself: show it worked examples (--few-shot FILE, --few-shot-from DATASET:K) and/or start its answer with
--prefill '<think>\\n'. The bundled 135M model is for trying the commands: on one-digit sums (data/demo/, in the
repository) about 18 % of its few-shot samples verify, on GSM8K well under 1 %, so `distill filter` keeps
next to nothing there; real traces need a real teacher. See the docstring of distill/stages/generate/__init__.py
for resuming, sharding and multi-node teachers."""
