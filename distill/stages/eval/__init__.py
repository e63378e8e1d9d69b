"""`distill eval`: score a model with the pipeline's own engine and verifiers (one grader, no second one).

    distill eval --model sft-qwen-7b@v2 --benchmark aime24 --benchmark math500 --benchmark gpqa-diamond
    distill eval --model bundled --benchmark tests/data/eval_small.jsonl --protocol greedy --max-tokens 64 --enforce-eager
    distill eval --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --benchmark gsm8k=gsm8k_test.jsonl -n 4
    distill eval --outputs traces@v1 --benchmark gsm8k      # grade precomputed completions, no generation
    distill eval --compare eval-smollm2-135m-instruct eval-sft-smol   # side-by-side markdown, paired deltas

Each run writes an `eval` artifact (HOME/evals/NAME/vNNNN: the evaluated checkpoint is its parent) with
every sample in `dataset/` (completion, verdict, lenient verdict, finish reason, tokens) and
`results.json`: per benchmark pass@1 averaged over n samples, pass@k (unbiased estimator), maj@n
(majority vote over the n samples, R1's cons@n), a lenient accuracy (the last number of the reply equals
the reference, whatever the format), the share of well-formed `<think>` answers, the share that stop on
the end token, the truncated share and the mean completion tokens, each with its standard error and 95%
interval (clustered over problems; see distill/metrics.py).

Protocols (explicit -n/--temperature/--top-p/--max-tokens override them; -n is --num-generations, as in
`distill generate`, and --n its old name):
    open-r1    lighteval as open-r1 reports it: temperature 0.6, top-p 0.95, 32768 new tokens; pass@1 over
               AIME24/25 64, MATH-500 4, GPQA-Diamond 8, LiveCodeBench 16 samples (GSM8K 1, files 4).
    evalchemy  the OpenThoughts numbers: temperature 0.7, top-p 1.0, 32768 new tokens; AIME averaged over 5
               samples, GPQA-Diamond 3, LiveCodeBench 6, MATH-500 and the rest 1.
    greedy     temperature 0, n 1: deterministic, for the CPU demo and quick checks.

Prompting: the conversation recorded in the checkpoint's manifest (`conversation`: system prompt, prompt
template, few-shot; looked up through its parents, e.g. the traces it was trained on) unless --system-prompt /
--prompt-template / --few-shot say otherwise; for a plain model, distill.engines.chat's defaults (DeepSeek-R1's
"Please reason step by step, and put your final answer within \\boxed{}."; lighteval words its math prompt
differently, --prompt-template reproduces any other). GPQA and LiveCodeBench bring their own lighteval
prompts (answer letter / code block). The checkpoint's saved chat template and generation config (eos ids)
are what vLLM loads; their sha256 are in results.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any, Optional

from distill import artifacts, log
from distill.config import option, to_dict
from distill.conversation import recorded_conversation
from distill.engines import EngineOptions
from distill.errors import UserError
from distill.verify.grader import GradeOptions


@dataclass(frozen=True)
class Protocol:
    temperature: float
    top_p: float
    max_tokens: int
    default_n: int  # samples per problem for benchmarks the protocol names no count for
    about: str


PROTOCOLS = {
    "open-r1": Protocol(0.6, 0.95, 32768, 4, "lighteval/open-r1: T 0.6, top-p 0.95, 32768 tokens"),
    "evalchemy": Protocol(0.7, 1.0, 32768, 1, "evalchemy/OpenThoughts: T 0.7, 32768 tokens"),
    "greedy": Protocol(0.0, 1.0, 32768, 1, "greedy decoding, one sample"),
}


@dataclass
class EvalConfig(GradeOptions, EngineOptions):
    """Score a model on benchmarks with the generate stage's engine and the filter's verifiers."""

    model: Optional[str] = option(None, "Model to score: 'bundled', a checkpoint (NAME@vN), a local HF dir or a Hub id.")
    benchmark: list[str] = option([], "Benchmark (repeatable): gsm8k, math500, aime24, aime25, gpqa-diamond, "
                                      "livecodebench, NAME=FILE (a local copy), or a jsonl/parquet/artifact.")
    protocol: str = option("open-r1", "Sampling preset: open-r1 | evalchemy | greedy (see the command docstring).")
    num_generations: Optional[int] = option(None, "Samples per problem (default: the protocol's count for each "
                                                  "benchmark); --n is its old name.", short="-n")
    max_tokens: Optional[int] = option(None, "Max new tokens per sample (default: the protocol's, 32768).")
    temperature: Optional[float] = option(None, "Sampling temperature (default: the protocol's).")
    top_p: Optional[float] = option(None, "Nucleus sampling top-p (default: the protocol's).")
    pass_at: list[int] = option([], "k for pass@k, repeatable (default: 1 and n).", flag="--pass-at")
    limit: Optional[int] = option(None, "Score only the first N problems of each benchmark.")
    problem_column: str = option("problem", "Problem column of a file/artifact benchmark.")
    answer_column: str = option("answer", "Reference column of a file/artifact benchmark (a worked solution "
                                          "ending in '#### N' or \\boxed{} also works).")
    id_column: str = option("id", "Id column of a file/artifact benchmark (row numbers when absent).")
    system_prompt: Optional[str] = option(None, "System prompt (default: the checkpoint's recorded conversation).")
    prompt_template: Optional[str] = option(None, "User prompt template with {problem} (default: the checkpoint's, "
                                               "else distill.engines.chat's).")
    few_shot: Optional[str] = option(None, "JSON/YAML file of few-shot messages to put before each problem.")
    outputs: Optional[str] = option(None, "Grade precomputed completions (a jsonl/parquet or a traces artifact) "
                                       "instead of generating; rows carry id + completion (+ answer).")
    completion_column: str = option("completion", "Completion column of --outputs.")
    name: Optional[str] = option(None, "Eval artifact name (default: eval-<model name>).")
    push_to_hub: Optional[str] = option(None, "Also upload the eval artifact to this Hub dataset repo.")
    compare: bool = option(False, "Compare saved evals: distill eval --compare EVAL_A EVAL_B ... (markdown table).")
    evals: list[str] = option([], "Eval artifact references for --compare.")
    paired_on_overlap: bool = option(False, "With --compare: pair evals of different sources of a benchmark (other "
                                            "files, revisions) on the problems they share instead of refusing.")
    # The old name of num_generations, still accepted as a config key (YAML, --set, Python) and, through
    # FLAG_ALIASES (read by distill.cli.options), as the flag --n.
    n: InitVar[Optional[int]] = None
    FLAG_ALIASES = {"n": "num_generations"}

    def __post_init__(self, n: Optional[int]) -> None:
        if n is not None:
            from distill.config import coerce

            n = coerce(type(self), "num_generations", n)
            if self.num_generations is not None and self.num_generations != n:
                raise UserError(f"--n {n} and -n/--num-generations {self.num_generations}: --n is the old name of "
                                "--num-generations, pass one")
            self.num_generations = n

    def validate(self) -> None:
        if self.evals and not self.compare:
            raise UserError(f"unexpected arguments {' '.join(self.evals)}: eval references are for --compare "
                            "(distill eval --compare EVAL_A EVAL_B)")
        if self.compare:
            if len(self.evals) < 2:
                raise UserError("--compare needs at least two eval references: distill eval --compare EVAL_A EVAL_B")
            return
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown --protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if not self.model and not self.outputs:
            raise UserError("no model to score: pass --model (bundled, NAME@vN, a dir or a Hub id) "
                            "or --outputs FILE with precomputed completions")
        if not self.benchmark and not self.outputs:
            raise UserError("no benchmark: pass --benchmark NAME_OR_FILE (e.g. --benchmark math500)")
        from distill.config import MAX_SAMPLES

        # floats are finite by now (distill.config.coerce refuses nan / inf where they enter)
        for flag, value, low in (("-n/--num-generations", self.num_generations, 1),
                                 ("--max-tokens", self.max_tokens, 1), ("--limit", self.limit, 1),
                                 ("--tensor-parallel-size", self.tensor_parallel_size, 1)):
            if value is not None and value < low:
                raise UserError(f"{flag} must be >= {low}, got {value}")
        if self.num_generations is not None and self.num_generations > MAX_SAMPLES:
            raise UserError(f"-n/--num-generations must be at most {MAX_SAMPLES:,}, got {self.num_generations:,}: all "
                            "samples of a problem are held in memory together")
        if self.max_tokens is not None and self.max_tokens >= 2**31:
            raise UserError(f"--max-tokens must be below 2^31, got {self.max_tokens}")
        if self.temperature is not None and self.temperature < 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if any(k < 1 for k in self.pass_at):
            raise UserError(f"--pass-at values must be >= 1, got {self.pass_at}")
        if any(k > MAX_SAMPLES for k in self.pass_at):
            raise UserError(f"--pass-at values must be at most {MAX_SAMPLES:,} (the most samples per problem), "
                            f"got {max(self.pass_at):,}")
        self.validate_engine()
        self.validate_grading()
        if self.name:
            artifacts.validate_name(self.name)

    def resolved(self) -> dict[str, Any]:
        """What the protocol fills in at run time (for --print-config): sampling and samples per problem."""
        from distill.benchmarks import builtin

        sampling = {k: v for k, v in sampling_of(self).items() if k != "protocol"}
        per_problem = {}
        for spec in self.benchmark:
            known = builtin(spec.partition("=")[0] if "=" in spec else spec)
            per_problem[known.name if known else spec] = samples_for(self, known)
        return {**sampling, "samples_per_problem": per_problem}


# ---------------------------------------------------------------------------- sampling & prompting


def samples_for(cfg: EvalConfig, builtin_spec) -> int:
    """Samples per problem: -n, else the protocol's count for a built-in benchmark, else its default."""
    if cfg.num_generations is not None:
        return cfg.num_generations
    if builtin_spec is not None:
        return builtin_spec.samples.get(cfg.protocol, PROTOCOLS[cfg.protocol].default_n)
    return PROTOCOLS[cfg.protocol].default_n


def sampling_of(cfg: EvalConfig) -> dict[str, Any]:
    preset = PROTOCOLS[cfg.protocol]
    return {"protocol": cfg.protocol,
            "temperature": preset.temperature if cfg.temperature is None else cfg.temperature,
            "top_p": preset.top_p if cfg.top_p is None else cfg.top_p,
            "max_tokens": preset.max_tokens if cfg.max_tokens is None else cfg.max_tokens,
            "seed": cfg.seed}


def conversation_of(cfg: EvalConfig, checkpoint) -> dict[str, Any]:
    """System prompt, prompt template and few-shot: flags > the checkpoint's record > prompting defaults."""
    from distill.conversation import recorded_conversation
    from distill.engines import chat as prompting

    found = recorded_conversation(checkpoint)
    recorded, recorded_from = (found.record, found.ref) if found else ({}, None)
    few_shot = recorded.get("few_shot")
    if cfg.few_shot:
        few_shot = prompting.load_few_shot(cfg.few_shot)
    elif isinstance(few_shot, str) and few_shot:
        few_shot = prompting.load_few_shot(few_shot)
    return {
        "system_prompt": cfg.system_prompt if cfg.system_prompt is not None else recorded.get("system_prompt"),
        "prompt_template": cfg.prompt_template or recorded.get("prompt_template") or prompting.DEFAULT_PROMPT_TEMPLATE,
        "prompt_template_forced": bool(cfg.prompt_template),
        "few_shot": few_shot or None,
        "prefill": recorded.get("prefill"),
        "recorded_from": recorded_from,
    }


def messages_for(problem, conversation: dict[str, Any]) -> list[dict[str, str]]:
    from distill.engines import chat as prompting

    template = conversation["prompt_template"]
    if problem.prompt_template and not conversation["prompt_template_forced"]:
        template = problem.prompt_template  # multiple choice / code keep their own instructions
    return prompting.build_messages(problem.problem, system_prompt=conversation["system_prompt"],
                                    prompt_template=template, few_shot=conversation["few_shot"])


# ---------------------------------------------------------------------------- model


def engine_model(cfg: EvalConfig):
    """What the engine loads (a checkpoint's full or merged model, or its base + adapter; a served name with
    the openai engine), or None when scoring precomputed --outputs without a model."""
    from distill import models

    return models.resolve(cfg.model, served=cfg.engine == "openai") if cfg.model else None


def model_info(cfg: EvalConfig, path: str | None, checkpoint, engine_format: dict[str, Any],
               adapter: str | None = None) -> dict[str, Any]:
    """What was scored: the checkpoint (ref + content hash), and the chat template and generation config
    (eos ids) the engine loaded from it, by sha256."""
    info: dict[str, Any] = {"spec": cfg.model, "path": path, "ref": checkpoint.ref if checkpoint else None,
                            "sha256": checkpoint.content_sha256 if checkpoint else None,
                            "base_model": checkpoint.manifest.get("base_model") if checkpoint else None,
                            "chat_template_sha256": engine_format.get("chat_template_sha256"), "engine": cfg.engine}
    if adapter:
        info["adapter"] = adapter  # LoRA attached by vLLM to the base model in `path`
    if cfg.engine == "openai":
        info["base_url"] = cfg.base_url  # a served model: the server's name for it is the spec
    gen = Path(adapter or path) / "generation_config.json" if (adapter or path) else None
    if gen is not None and gen.is_file():
        info["generation_config_sha256"] = hashlib.sha256(gen.read_bytes()).hexdigest()
        info["generation_config"] = json.loads(gen.read_text())
    return info


def default_name(cfg: EvalConfig, checkpoint, outputs_source) -> str:
    from distill.models import BUNDLED_NAME, is_bundled

    if checkpoint is not None:
        base = checkpoint.name
    elif is_bundled(cfg.model):
        base = BUNDLED_NAME
    elif cfg.model:
        base = Path(cfg.model.rstrip("/")).name
        if base == "model" and Path(cfg.model).is_dir():
            base = Path(cfg.model).absolute().parent.name
    elif outputs_source is not None and outputs_source.artifact is not None:
        base = outputs_source.artifact.name
    else:
        base = Path(str(cfg.outputs)).stem
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"
    return f"eval-{base}"


# ---------------------------------------------------------------------------- run


def run(cfg: EvalConfig, engine=None) -> str | None:
    """Score (or compare); returns the new eval artifact's reference. ``engine``: an open engine to reuse."""
    if cfg.compare:
        from distill.stages.eval.report import compare_table, load_results

        loaded = [load_results(ref) for ref in cfg.evals]
        print(compare_table([results for _, results in loaded], [artifact.ref for artifact, _ in loaded],
                            allow_overlap=cfg.paired_on_overlap))
        return None
    from distill.benchmarks import load_benchmark, load_outputs

    benches = [load_benchmark(spec, problem_column=cfg.problem_column, answer_column=cfg.answer_column,
                              id_column=cfg.id_column, limit=cfg.limit) for spec in cfg.benchmark]
    if len({b.name for b in benches}) != len(benches):
        raise UserError(f"the same benchmark is given twice: {', '.join(b.name for b in benches)}")
    if cfg.push_to_hub and any(b.gated for b in benches):
        raise UserError("gpqa-diamond must not be published (its authors ask that its questions stay off the web): "
                        "drop --push-to-hub or leave gpqa-diamond out of this eval")
    model_ref = engine_model(cfg)
    checkpoint = model_ref.checkpoint if model_ref else None
    path, adapter, adapter_template = (model_ref.path, model_ref.adapter, model_ref.chat_template) if model_ref \
        else (None, None, None)
    if adapter and cfg.engine != "vllm":
        raise UserError(f"{checkpoint.ref} is a LoRA adapter: evaluate it with --engine vllm (which attaches it to "
                        "the base), or serve it and pass the served name")
    outputs_source = None
    if cfg.outputs:
        rows, outputs_source, benches, sampling = load_outputs(
            cfg.outputs, benches, completion_column=cfg.completion_column, problem_column=cfg.problem_column,
            answer_column=cfg.answer_column, id_column=cfg.id_column)
        # Nothing is prompted here: record how the outputs were made, when their artifact says so.
        made_by = outputs_source.artifact or checkpoint
        found = recorded_conversation(made_by)
        conversation = found.record if found else {}
        engine_format: dict[str, Any] = {}
    else:
        sampling = sampling_of(cfg)
        conversation = conversation_of(cfg, checkpoint)
    name = cfg.name or default_name(cfg, checkpoint, outputs_source)
    artifacts.validate_name(name)
    artifacts.check_name_kind(name, "eval")  # before the expensive part
    if not cfg.outputs:
        for bench in benches:
            if cfg.pass_at and max(cfg.pass_at) > samples_for(cfg, bench.builtin):
                raise UserError(f"--pass-at {max(cfg.pass_at)} needs that many samples per problem, but {bench.name} "
                                f"gets n={samples_for(cfg, bench.builtin)}: raise -n")
        rows, engine_format = generate(cfg, path, benches, sampling, conversation, engine, adapter, adapter_template)
    records = grade_rows(rows, cfg)
    return save(cfg, name, records, benches, checkpoint, path, sampling, conversation, engine_format, outputs_source,
                adapter)


def generate(cfg: EvalConfig, path: str, benches, sampling: dict[str, Any], conversation: dict[str, Any],
             engine=None, adapter: str | None = None, chat_template: str | None = None):
    """Sample every benchmark's problems in one engine session; returns (rows, engine conversation format).
    ``engine``: an open engine to use (and leave open) instead of starting one from ``cfg``."""
    from distill.engines import Request, SamplingConfig, make_engine

    requests, index = [], {}
    for bench in benches:
        n = samples_for(cfg, bench.builtin)
        for problem in bench.problems:
            key = f"{bench.name}\x1f{problem.id}"
            messages = messages_for(problem, conversation)
            index[key] = (bench, problem, messages)
            requests.append(Request(key=key, messages=messages, n=n))
    total = sum(r.n for r in requests)
    if sampling["temperature"] == 0 and any(r.n > 1 for r in requests):
        log.warn("temperature 0 with n > 1 repeats the same greedy sample")
    engine_cfg = cfg.engine_config(path, system_prompt=conversation["system_prompt"], adapter=adapter,
                                   chat_template=chat_template)
    params = SamplingConfig(n=max(r.n for r in requests), temperature=sampling["temperature"],
                            top_p=sampling["top_p"], max_tokens=sampling["max_tokens"], seed=cfg.seed)
    log.say(f"generating {total} samples for {len(requests)} problems with {cfg.model} ({cfg.engine})")
    rows, started, step = [], time.monotonic(), max(1, total // 10)
    own = engine is None
    engine = make_engine(engine_cfg) if own else engine
    try:
        engine_format = dict(engine.conversation_format() or {})
        for sample in engine.generate(requests, params):
            bench, problem, messages = index[sample.key]
            rows.append({"benchmark": bench.name, "id": problem.id, "sample_index": sample.index,
                         "problem": problem.problem, "prompt": messages, "reference": problem.reference,
                         "domain": problem.domain, "completion": sample.text, "finish_reason": sample.finish_reason,
                         "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
                         "meta": json.dumps(problem.extra, default=str) if problem.extra else None,
                         "_problem": problem})
            if len(rows) % step == 0 or len(rows) == total:
                log.say(f"  {len(rows)}/{total} samples ({time.monotonic() - started:.0f}s)")
    finally:
        if own:
            engine.close()
    rows.sort(key=lambda r: (r["benchmark"], r["id"], r["sample_index"]))  # completion order -> stable order
    return rows, engine_format


def grade_rows(rows: list[dict[str, Any]], cfg: GradeOptions) -> list[dict[str, Any]]:
    """Grade every sample with the filter's grader (distill.verify.grader.grade_batch): the one code path."""
    from distill.benchmarks import MATH
    from distill.verify.grader import GradeItem, grade_batch, lenient_correct

    items = [GradeItem(completion=r["completion"], domain=r["_problem"].domain, reference=r["_problem"].reference,
                       finish_reason=r["finish_reason"], problem=r["_problem"].problem,
                       test_cases=r["_problem"].test_cases, fn_name=r["_problem"].fn_name,
                       starter_code=r["_problem"].starter_code) for r in rows]
    log.say(f"grading {len(items)} samples")
    graded = grade_batch(items, cfg.grade_config(), num_proc=cfg.num_proc)
    for row, result in zip(rows, graded, strict=True):
        verdict = result.verdict
        lenient = None
        if row["reference"] is not None and row["domain"] == MATH:  # a number to find: math only
            lenient = bool(lenient_correct(row["completion"], row["reference"]))
        row.update({"well_formed": bool(result.well_formed), "format_reason": result.format_reason,
                    "complete": bool(result.complete), "predicted": verdict.predicted, "status": verdict.status,
                    "verdict_reason": verdict.reason, "correct": bool(verdict.correct), "lenient": lenient})
    return rows


def save(cfg, name, records, benches, checkpoint, path, sampling, conversation, engine_format, outputs_source,
         adapter=None):
    import datasets

    from distill.artifacts import hub
    from distill.stages.eval.report import RESULTS_FILE, SCHEMA_VERSION, STDERR_NOTE, results_table, summarize

    summary = summarize(records, cfg.pass_at or None)
    by_name = {b.name: b for b in benches}
    for bench_name, entry in summary.items():
        bench = by_name.get(bench_name)
        entry.update({"spec": bench.spec if bench else None, "source": bench.source if bench else None,
                      "domain": bench.problems[0].domain if bench else None})
    conversation_record = {**{k: v for k, v in conversation.items() if k != "prompt_template_forced"},
                           **{k: engine_format.get(k) for k in ("chat_template_sha256", "prefill")
                              if engine_format.get(k) is not None}}
    if engine_format:  # what the model saw: our system message, else the template's hidden default
        effective = conversation.get("system_prompt")
        conversation_record["effective_system_prompt"] = effective if effective is not None else engine_format.get(
            "system_prompt")
    results = {"schema_version": SCHEMA_VERSION, "model": model_info(cfg, path, checkpoint, engine_format, adapter),
               "sampling": sampling, "conversation": conversation_record, "benchmarks": summary,
               "grading": {"answer_extraction": cfg.answer_extraction}, "error_bars": STDERR_NOTE}
    parents = [a for a in [checkpoint, outputs_source.artifact if outputs_source else None,
                           *(b.artifact for b in benches)] if a is not None]
    parents = list({a.ref: a for a in parents}.values())
    config = {**to_dict(cfg), "resolved_sampling": sampling,
              "samples_per_problem": {b: s["samples_per_problem"] for b, s in summary.items()}}
    with artifacts.create(name, "eval", config=config, parents=parents) as writer:
        writer.save_dataset(datasets.Dataset.from_list([_storable(r) for r in records]))
        text = json.dumps(results, indent=2, default=str) + "\n"
        (writer.path / RESULTS_FILE).write_text(text)
        writer.extra.update({"conversation": conversation_record, "model": results["model"],
                             "results_sha256": hashlib.sha256(text.encode()).hexdigest()})
        writer.stats.update({f"{b}/{m}": s["metrics"][m]["mean"] for b, s in summary.items()
                             for m in ("pass@1", "lenient_accuracy") if m in s["metrics"]})
    artifact = artifacts.resolve(str(writer.path), kind="eval")
    print(results_table(results))
    print(f"\nwrote {artifact.ref}  ({artifact.path})")
    if cfg.push_to_hub:
        print(f"pushed to {hub.push(artifact, cfg.push_to_hub)}")
    return artifact.ref


def _storable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}
