"""Commit a finished training run as a checkpoint version: model files, manifest, model card.

    artifact = commit(cfg, TrainingRun(name=..., inputs=..., trainer=..., ...))   # rank 0, after trainer.train()
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill import artifacts, log
from distill.config import build, to_dict
from distill.conversation import Conversation
from distill.stages.train import card
from distill.stages.train.config import TrainConfig
from distill.stages.train.recipes import load_recipe


def say(message: str) -> None:
    log.say(f"[train] {message}")  # rank 0 only: one voice in a distributed run


@dataclass
class TrainingRun:
    """What a finished training run hands to the commit (rank 0)."""

    name: str
    inputs: list            # data.Input: each dataset with its source artifact and conversation
    mix: dict               # the mixture: datasets, weights, rows used
    plan: Any               # templates.TemplatePlan: chat template, end of turn, loss masks
    conversation_in: dict   # the inputs' recorded conversation
    student_path: str
    student_artifact: Any   # the checkpoint the student started from, or None
    tokenizer: Any
    special: dict           # stop / pad tokens set on the tokenizer
    precision: str
    train_stats: dict
    eval_stats: dict
    metrics: dict
    trainer: Any            # the TRL trainer (its state and args are recorded)
    run_dir: Path
    final_dir: Path         # where the trainer saved the final model
    train_rows: Any         # the training conversations (datasets.Dataset)
    prompt_template: str | None
    accumulation: int
    method: dict            # the method and its settings (prepare.Prepared.method)
    teacher: dict | None = None  # on-policy: the teacher's spec, resolved path, artifact, content hash
    precision_reason: str = ""   # why --precision resolved as it did (printed at the start too)


def commit(cfg: TrainConfig, run: TrainingRun):
    """Write the checkpoint version: model files, manifest, model card."""
    from distill import models

    parents = [i.source.artifact for i in run.inputs if i.source.artifact is not None]
    if run.student_artifact is not None:
        parents.append(run.student_artifact)
    if run.teacher and run.teacher.get("artifact") is not None and run.teacher["artifact"] not in parents:
        parents.append(run.teacher["artifact"])  # the teacher is a lineage parent of an on-policy student
    licenses = {"student": models.BUNDLED_LICENSE} if models.is_bundled(cfg.model) else {}
    plan = run.plan
    conversation = Conversation(
        chat_template=plan.inference, chat_template_sha256=plan.sha256, system_prompt=_system_prompt_used(run.train_rows),
        few_shot=run.conversation_in.get("few_shot") if cfg.keep_few_shot else None,
        prompt_template=run.prompt_template,
        extra={"source": plan.source, "family": plan.family, "end_of_turn": plan.end_of_turn,
               "loss_masks": plan.method}).to_record()
    teachers = sorted({t for t in (card.find_teacher(i.source.artifact) for i in run.inputs) if t})
    if run.teacher:
        teachers = [run.teacher["spec"]] + [t for t in teachers if t != run.teacher["spec"]]
    with artifacts.create(run.name, "checkpoint", config=to_dict(cfg), parents=parents, licenses=licenses) as writer:
        _write_model_files(cfg, run, writer)
        _record_manifest(cfg, run, writer, conversation, teachers)
        (writer.path / "README.md").write_text(card.model_card(
            name=run.name, version=next_version(run.name), base_model=_card_base_model(cfg.model, run.student_path),
            teachers=teachers, datasets=run.mix["datasets"], cfg=to_dict(cfg), metrics=run.metrics,
            conversation=conversation, adapter=bool(cfg.lora), merged=bool(cfg.merge),
            licenses=_licenses(parents, licenses), stats=run.train_stats, method=run.method))
    return artifacts.resolve(str(writer.path))


def _write_model_files(cfg: TrainConfig, run: TrainingRun, writer) -> None:
    """model/ (and merged/), each with the tokenizer, chat template and generation config; curves, metrics."""
    from distill.stages.train import callbacks as cb
    from distill.stages.train import model as student

    shutil.move(str(run.final_dir), str(writer.model_path))
    (writer.model_path / "training_args.bin").unlink(missing_ok=True)
    tokenizer = run.tokenizer
    eos_ids = student.stop_token_ids(tokenizer, getattr(run.trainer.model, "generation_config", None))
    targets = [writer.model_path]
    if cfg.merge:
        say("merging the adapter into the base model")
        student.merge_adapter(run.student_path, writer.model_path, writer.path / "merged", run.precision,
                              cfg.model_revision, len(tokenizer) if run.special["pad_added"] else None)
        targets.append(writer.path / "merged")
    for target in targets:
        student.save_tokenizer(tokenizer, target, run.plan.inference)
        student.write_generation_config(target, tokenizer, eos_ids, cfg.temperature, cfg.top_p)
        student.fix_model_config(target, tokenizer)
    run.trainer.state.save_to_json(str(writer.path / "trainer_state.json"))
    cb.plot_loss_curve(run.trainer.state.log_history, writer.path / "loss_curve.png", f"{run.name} ({cfg.model})")
    if cfg.method == "grpo":
        cb.plot_reward_curve(run.trainer.state.log_history, writer.path / "reward_curve.png",
                             f"{run.name}: GRPO rewards")
    if (run.run_dir / "runs").is_dir():
        shutil.copytree(run.run_dir / "runs", writer.path / "tensorboard")
    (writer.path / "metrics.json").write_text(json.dumps(run.metrics, indent=2) + "\n")


def _record_manifest(cfg: TrainConfig, run: TrainingRun, writer, conversation: dict, teachers: list[str]) -> None:
    from distill.stages.train import launch

    state, args, metrics = run.trainer.state, run.trainer.args, run.metrics
    writer.counts.update(train_examples=run.train_stats["kept"], eval_examples=run.eval_stats.get("kept", 0))
    writer.stats.update(train=run.train_stats, eval=run.eval_stats, mixture=run.mix, metrics=metrics)
    writer.extra.update(
        conversation=conversation, base_model=run.student_path, teacher=teachers[0] if teachers else None,
        method=run.method,
        student={"spec": cfg.model, "resolved": run.student_path, "revision": cfg.model_revision,
                 "ref": run.student_artifact.ref if run.student_artifact else None},
        datasets=[{**d, "sha256": d["source"].get("sha256")} for d in run.mix["datasets"]],
        training={"recipe": cfg.recipe, "overrides": overrides(cfg), "precision": run.precision,
                  "precision_reason": run.precision_reason,
                  "gradient_accumulation_steps": run.accumulation, "world_size": args.world_size,
                  "adapter": bool(cfg.lora), "merged": bool(cfg.merge), "run_name": args.run_name,
                  "report_to": args.report_to, "special_tokens": run.special,
                  "distributed": launch.distributed_summary(run.trainer)},
        trainer_state={"global_step": state.global_step, "epoch": state.epoch, "max_steps": state.max_steps,
                       "num_input_tokens_seen": state.num_input_tokens_seen, "total_flos": state.total_flos,
                       "train_loss": metrics.get("train_loss"), "eval_loss": metrics.get("eval_loss")})


def overrides(cfg: TrainConfig) -> dict:
    """The config keys that differ from the recipe's (or the defaults')."""
    reference = to_dict(build(TrainConfig, load_recipe(cfg.recipe))) if cfg.recipe else to_dict(TrainConfig())
    return {k: v for k, v in to_dict(cfg).items() if k != "recipe" and reference.get(k) != v}


def _card_base_model(spec: str, resolved: str) -> str:
    from distill import models

    if models.is_bundled(spec):
        return "HuggingFaceTB/SmolLM2-135M-Instruct"
    return spec if Path(resolved).exists() else resolved


def _licenses(parents, own: dict) -> dict:
    merged: dict = {}
    for parent in parents:
        merged.update(parent.manifest.get("licenses") or {})
    return {**merged, **own}


def _system_prompt_used(train_rows) -> str | None:
    """The system prompt most training conversations carry (None when most carry none)."""
    if train_rows is None:
        return None
    sample = train_rows.select(range(min(len(train_rows), 1000)))["messages"]
    counts = Counter(m[0]["content"] if m and m[0]["role"] == "system" else None for m in sample)
    return counts.most_common(1)[0][0] if counts else None


def next_version(name: str) -> str:
    folder = artifacts.home() / artifacts.KIND_DIRS["checkpoint"] / name
    versions = artifacts.list_versions(folder) if folder.is_dir() else []
    return artifacts.format_version(int(versions[-1].name[1:]) + 1 if versions else 1)
