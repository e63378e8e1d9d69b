"""Data and trainer per method (sft, on-policy, logit, grpo), behind one call `_train` makes.

    prepared = prepare_data(cfg, inputs, tokenizer, plan, conversation_in, default_system, prompt_template)
    trainer, callbacks = make_trainer(cfg, prepared, common_args(...), student_path, tokenizer, special, precision)

Everything else a run does -- recipes, LoRA/QLoRA, launch, resume, SIGTERM save, tracking, commit, card,
lineage -- is shared by all methods and lives in the package's `__init__` and `commit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import to_dict
from distill.errors import UserError
from distill.stages.train.commit import say
from distill.stages.train.config import TrainConfig


@dataclass
class Prepared:
    """One method's training data and what the commit records about it."""

    train_ds: Any
    eval_ds: Any
    train_rows: Any                 # conversations (a `messages` column) for the commit's system prompt, or None
    mix: dict
    train_stats: dict
    eval_stats: dict = field(default_factory=dict)
    rows_per_step_divisor: int = 1  # grpo: a step's sequences are G completions of each prompt
    teacher: dict | None = None     # on-policy: spec, resolved path, artifact, context
    method: dict = field(default_factory=dict)


def prepare_data(cfg: TrainConfig, inputs, tokenizer, plan, conversation_in: dict, default_system, prompt_template,
                 ) -> Prepared:
    from distill.stages.train import data, methods

    if cfg.method == "sft":
        train_rows, eval_rows, mix = data.build_conversations(inputs, cfg, default_system, prompt_template,
                                                              cfg.dataset_num_proc)
        train_ds, stats = data.tokenize(train_rows, tokenizer, plan, cfg, cfg.dataset_num_proc)
        if not len(train_ds):
            raise UserError(f"no training example fits: {stats['rows']} rows, {stats.get('dropped_too_long')} longer "
                            f"than max_length={cfg.max_length} (longest {stats['longest']} tokens); raise "
                            "--max-length or pass --truncate")
        eval_ds, eval_stats = (data.tokenize(eval_rows, tokenizer, plan, cfg, cfg.dataset_num_proc, "eval")
                               if eval_rows is not None else (None, {}))
        eval_ds = eval_ds if eval_ds is not None and len(eval_ds) else None
        say(f"{stats['kept']} training examples ({stats['trained_tokens']} trained tokens), "
            f"{len(eval_ds) if eval_ds else 0} eval; dropped {stats.get('dropped_too_long', 0)} longer than "
            f"{cfg.max_length} tokens" + (f", truncated {stats['truncated']}" if cfg.truncate else ""))
        return Prepared(train_ds, eval_ds, train_rows, mix, stats, eval_stats, method={"name": "sft"})
    if cfg.method == "logit":
        from distill.stages.train import logit

        train_ds, stats = logit.build_rows(inputs, cfg, tokenizer, plan, default_system, prompt_template)
        say(f"{stats['kept']} rows with the teacher's top-{stats['k']} logprobs ({stats['trained_tokens']} "
            f"completion tokens); dropped {stats['dropped_too_long']} longer than {cfg.max_length}, "
            f"{stats['unusable']} unusable")
        mix = {"datasets": [{"spec": i.spec, "weight": i.weight, "format": "logprobs", "rows": len(i.data),
                             "source": i.source.info} for i in inputs]}
        return Prepared(train_ds, None, None, mix, stats, method={
            "name": "logit", "beta": methods.beta_of(cfg), "kl_weight": cfg.logit_kl_weight, "top_k": stats["k"]})
    few_shot = _teacher_few_shot(cfg)
    rates = methods.measured_pass_rates(inputs, cfg, default_system, prompt_template) \
        if cfg.method == "grpo" and cfg.pass_rate_range else None
    if cfg.pass_rate_range and rates is None:
        raise UserError("--pass-rate-range needs measured pass rates: give a filtered artifact (its kept and rejected "
                        "rows hold every sample's verdict) as --dataset")
    train_ds, info = methods.build_prompt_rows(inputs, cfg, default_system, prompt_template, few_shot, rates)
    say(f"{len(train_ds)} prompts ({info['duplicate_prompts']} repeated samples of the same problem merged, "
        f"{info['rows_unusable']} rows without a prompt" + (f", {info['dropped_by_pass_rate']} outside pass rate "
                                                           f"{cfg.pass_rate_range}" if cfg.pass_rate_range else "")
        + ")")
    stats = {"kept": len(train_ds), "rows": sum(len(i.data) for i in inputs), **info}
    mix = {"datasets": info.pop("datasets")}
    rows = train_ds.select_columns(["prompt"]).rename_column("prompt", "messages")
    method: dict[str, Any] = {"name": cfg.method, "beta": methods.beta_of(cfg),
                              "max_completion_length": cfg.max_completion_length,
                              "rollout_temperature": cfg.rollout_temperature}
    if cfg.method == "on-policy":
        method.update(lmbda=cfg.lmbda, teacher_context={"system_prompt": cfg.teacher_system_prompt,
                                                        "few_shot": few_shot})
        return Prepared(train_ds, None, rows, mix, stats, method=method)
    method.update(num_generations=cfg.num_generations, rewards=cfg.reward, epsilon=cfg.epsilon,
                  epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards,
                  pass_rate_range=cfg.pass_rate_range, dropped_by_pass_rate=info["dropped_by_pass_rate"],
                  reference_model=method["beta"] > 0, answer_extraction=cfg.answer_extraction)
    return Prepared(train_ds, None, rows, mix, stats, rows_per_step_divisor=cfg.num_generations, method=method)


def _teacher_few_shot(cfg: TrainConfig):
    if not cfg.teacher_few_shot:
        return None
    from distill.engines import chat

    return chat.load_few_shot(cfg.teacher_few_shot)


def resolve_teacher(cfg: TrainConfig, student_tokenizer, student_spec: str) -> dict:
    """The teacher's ref, checked against the student's vocabulary before any weights load."""
    from distill import models
    from distill.stages.train import model as student
    from distill.stages.train import onpolicy

    if cfg.teacher_base_url:
        server = onpolicy.resolve_server_teacher(cfg, student_tokenizer, student_spec)
        return {"spec": server.model, "base_url": cfg.teacher_base_url, "top_k": server.k, "server": server,
                "artifact": models.checkpoint_of(cfg.teacher) if cfg.teacher else None, "ref": None, "sha256": None}
    ref = models.resolve(cfg.teacher, adapters=False)
    tokenizer = student.load_tokenizer(ref.path, cfg.teacher_revision)
    shared = onpolicy.check_vocabularies(student_tokenizer, tokenizer, student_spec, cfg.teacher,
                                         cross_tokenizer=cfg.cross_tokenizer, remedy=onpolicy.ON_POLICY_REMEDY)
    if cfg.cross_tokenizer:
        say(f"the teacher {cfg.teacher} shares the student's vocabulary: --cross-tokenizer is not needed, the exact "
            "token-level divergence is used" if shared else f"the teacher {cfg.teacher} has another vocabulary: "
            "cross-tokenizer distillation (GOLD's universal logit distillation)")
    return {"spec": cfg.teacher, "resolved": ref.path, "artifact": ref.checkpoint,
            "ref": ref.checkpoint.ref if ref.checkpoint else None, "sha256": _content_hash(ref)}


def _content_hash(ref) -> str | None:
    """The teacher's content hash: its artifact's, else the files' (local folders up to 4 GB)."""
    from distill import artifacts

    if ref.checkpoint is not None:
        return ref.checkpoint.content_sha256 or None
    path = Path(ref.path)
    if path.is_dir() and sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) < 4 << 30:
        return artifacts.files_sha256(path)
    return None


# Set by distill from its own options in every method's trainer config: not reachable by `trainer.KEY`.
MANAGED = ("use_vllm", "vllm_mode", "remove_unused_columns", "eval_strategy", "disable_dropout", "log_completions",
           "reward_weights", "packing_strategy", "include_num_input_tokens_seen", "output_dir", "bf16", "fp16",
           "save_strategy", "warmup_steps", "data_seed", "logging_first_step", "ddp_find_unused_parameters",
           "gradient_checkpointing_kwargs", "disable_tqdm", "use_cpu")


def trainer_config_class(method: str):
    if method == "sft":
        from trl import SFTConfig as config_class
    elif method == "on-policy":
        from trl import DistillationConfig as config_class
    elif method == "grpo":
        from trl import GRPOConfig as config_class
    else:
        from transformers import TrainingArguments as config_class
    return config_class


def trainer_overrides(cfg: TrainConfig) -> dict:
    """`--set trainer.KEY=VALUE` / `trainer_args`: any other field of the method's TRL config, checked by name
    before anything loads (as TRL's own CLI and LLaMA-Factory pass trainer arguments through)."""
    if not cfg.trainer_args:
        return {}
    import dataclasses
    import difflib

    import yaml

    known = {f.name for f in dataclasses.fields(trainer_config_class(cfg.method))}
    ours = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in cfg.trainer_args:
        key, sep, raw = str(pair).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"trainer argument {pair!r} must be KEY=VALUE")
        if key in ours or key in MANAGED:
            flag = f"--{key.replace('_', '-')}" if key in ours else "distill's own options"
            raise UserError(f"trainer.{key} is set by distill: use {flag} instead")
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise UserError(f"trainer.{key} is not a field of TRL's {trainer_config_class(cfg.method).__name__}"
                            + (f": did you mean {close[0]!r}?" if close else ""))
        try:
            out[key] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def common_args(cfg: TrainConfig, run_name: str, report_to: list[str], precision: str, accumulation: int,
                run_dir: Path, world: int) -> dict:
    """TrainingArguments every method shares (plus the `trainer.KEY` pass-through)."""
    from distill.stages.train.precision import trainer_args as precision_args

    extra = trainer_overrides(cfg)
    if cfg.project:
        extra["project"] = cfg.project
    return dict(
        output_dir=str(run_dir), run_name=cfg.run_name or run_name, report_to=report_to, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, optim=cfg.optim,
        per_device_train_batch_size=cfg.per_device_train_batch_size, gradient_accumulation_steps=accumulation,
        max_grad_norm=cfg.max_grad_norm, **precision_args(precision),
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        use_liger_kernel=cfg.use_liger_kernel, seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, ddp_find_unused_parameters=False if world > 1 else None,
        disable_tqdm=False, **extra)


def make_trainer(cfg: TrainConfig, prepared: Prepared, common: dict, student_path: str, tokenizer, special: dict,
                 precision: str):
    """The method's trainer with distill's callbacks (SIGTERM save, exact step budget, config to trackers)."""
    from distill.stages.train import callbacks as cb
    from distill.stages.train import model as student

    # The arguments come first: under `accelerate launch` with ZeRO-3 they register the DeepSpeed config, so
    # that from_pretrained below partitions the weights across ranks instead of loading them whole on each.
    args = _sft_args(cfg, common, prepared) if cfg.method == "sft" else None
    model = student.load_model(student_path, cfg, precision)
    if special["pad_added"]:
        model.resize_token_embeddings(len(tokenizer))
    callbacks = [cb.PreemptionCallback(), cb.TrackerConfigCallback(to_dict(cfg)), cb.StepBudgetCallback(),
                 cb.WallTimeSaveCallback(cfg.save_minutes)]
    peft = student.lora_config(cfg) if cfg.lora else None
    if cfg.method == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=args, train_dataset=prepared.train_ds, eval_dataset=prepared.eval_ds,
                             processing_class=tokenizer, peft_config=peft, callbacks=callbacks)
    elif cfg.method == "on-policy":
        from distill.stages.train import onpolicy

        server = prepared.teacher.get("server")
        teacher_tokenizer = _cross_tokenizer(cfg, prepared, tokenizer)
        teacher = None if server else student.load_model(prepared.teacher["resolved"], _teacher_cfg(cfg), precision)
        if teacher is not None and special["pad_added"] and teacher_tokenizer is None:
            teacher.resize_token_embeddings(len(tokenizer))
        trainer = onpolicy.make_trainer(cfg, common, model, teacher, tokenizer, prepared.train_ds, peft, callbacks,
                                        teacher_server=server, teacher_tokenizer=teacher_tokenizer)
    elif cfg.method == "grpo":
        from distill.stages.train import grpo

        trainer = grpo.make_trainer(cfg, common, model, tokenizer, prepared.train_ds, peft, callbacks,
                                    cfg.dataset_num_proc)
    else:
        from distill.stages.train import logit

        trainer = logit.make_trainer(cfg, common, model, tokenizer, prepared.train_ds, peft, callbacks)
    callbacks[1].handler = trainer.callback_handler
    return trainer, callbacks


def _cross_tokenizer(cfg: TrainConfig, prepared: Prepared, tokenizer):
    """The teacher's tokenizer when --cross-tokenizer applies (its vocabulary differs), else None; the
    manifest's method block records which loss ran."""
    from distill.stages.train import crosstokenizer, onpolicy
    from distill.stages.train import model as student

    teacher_tokenizer, signature = None, None
    if cfg.cross_tokenizer and not prepared.teacher.get("server"):
        loaded = student.load_tokenizer(prepared.teacher["resolved"], cfg.teacher_revision)
        signature = onpolicy.vocabulary_signature(loaded)
        if signature != onpolicy.vocabulary_signature(tokenizer):
            teacher_tokenizer = loaded
    prepared.method["cross_tokenizer"] = crosstokenizer.manifest_entry(crosstokenizer.uld_settings(
        tokenizer, teacher_tokenizer, cfg.rollout_temperature), signature) if teacher_tokenizer else False
    return teacher_tokenizer


def _teacher_cfg(cfg: TrainConfig):
    """The teacher loads like the student, unquantized, at its own revision."""
    from dataclasses import replace

    return replace(cfg, model_revision=cfg.teacher_revision, load_in_4bit=False)


def _sft_args(cfg: TrainConfig, common: dict, prepared: Prepared):
    from trl import SFTConfig

    return SFTConfig(
        **common, per_device_eval_batch_size=cfg.per_device_eval_batch_size or cfg.per_device_train_batch_size,
        eval_strategy="steps" if prepared.eval_ds is not None else "no", eval_steps=cfg.eval_steps or cfg.save_steps,
        max_length=cfg.max_length, packing=cfg.packing, packing_strategy="bfd",
        dataset_num_proc=cfg.dataset_num_proc, include_num_input_tokens_seen="non_padding",
        remove_unused_columns=True)
