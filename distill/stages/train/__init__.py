"""`distill train`: supervised fine-tuning of a student on teacher traces (TRL SFTTrainer).

    distill train --recipe qwen-7b --dataset filtered@v3                        # full fine-tune, 8 GPUs, ZeRO-3
    distill train --recipe qwen-7b --lora --num-gpus 1 --set learning_rate=1e-4  # LoRA on one GPU
    distill train --recipe qwen-7b --load-in-4bit --num-gpus 1 --merge          # QLoRA, plus a merged model
    distill train --recipe smol-demo --dataset filtered@latest                  # bundled SmolLM2-135M on CPU
    distill train --recipe qwen-1.5b --dataset a@v1:0.7 --dataset b@v2:0.3      # a weighted mixture
    distill train --recipe openthoughts-7b --dataset openthoughts-114k          # the OpenThinker-7B recipe

Each example is the conversation the traces were made with (system prompt, user = problem) plus the
assistant turn `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`; only the assistant turn and its
end-of-turn token reach the loss. Examples longer than --max-length are dropped (counted) unless
--truncate. Writes HOME/checkpoints/NAME/vNNNN/ (NAME: --name, else the recipe name): model/ (the full
model or the LoRA adapter, the tokenizer with the chat template used, generation_config.json), merged/
with --merge, README.md (model card), loss_curve.png, metrics.json, trainer_state.json and manifest.json
(lineage with dataset hashes, recipe + overrides, `conversation`, `base_model`, trainer state).
Resumable trainer checkpoints live in HOME/checkpoints/NAME/.runs/<run hash>/ until the run succeeds:
the same command resumes there; SIGTERM (preemption) saves one and exits 143.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from distill import artifacts
from distill.artifacts import hub
from distill.config import to_dict
from distill.errors import UserError
from distill.stages.train.commit import TrainingRun, commit, next_version, overrides, say
from distill.stages.train.config import NOT_HASHED, TrainConfig


def run(cfg: TrainConfig):
    """Train and commit a checkpoint artifact (returns it; None on non-zero ranks)."""
    import torch

    from distill.stages.train import launch

    if not torch.cuda.is_available():  # DeepSpeed (imported by the trainers) would say so in a warning line
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if launch.should_relaunch(cfg):
        code = launch.relaunch(cfg)
        if code:
            raise SystemExit(code)
        return None
    import datasets

    caching = datasets.is_caching_enabled()
    datasets.disable_caching()  # never write cache files into the input artifacts (maps go to a temp dir)
    try:
        return _train(cfg)
    finally:
        if caching:
            datasets.enable_caching()


def _train(cfg: TrainConfig):
    from distill.stages.train import data, launch, prepare, templates
    from distill.stages.train import model as student

    name = artifacts.validate_name(cfg.output_name)
    artifacts.check_name_kind(name, "checkpoint")
    prepare.trainer_overrides(cfg)  # a misspelt trainer.KEY fails before anything loads
    inputs = data.load_inputs(cfg.dataset, cfg.split, cfg)
    conversation_in = next((i.conversation for i in inputs if i.conversation), None) or {}

    student_path, student_artifact = student.resolve_student(cfg.model)
    tokenizer = student.load_tokenizer(student_path, cfg.model_revision)
    plan = templates.choose_plan(cfg.chat_template, tokenizer, conversation_in.get("chat_template"))
    special = templates.set_stop_and_pad(tokenizer, plan.end_of_turn)
    for note in plan.notes:
        say(note)
    say(f"chat template: {plan.source} ({plan.family or 'unrecognised'}, masks by {plan.method}); end of turn "
         f"{plan.end_of_turn!r}, pad {tokenizer.pad_token!r}")

    default_system = _default_system(conversation_in, plan, tokenizer)
    prompt_template = cfg.prompt_template if cfg.prompt_template is not None else conversation_in.get(
        "prompt_template")
    prepared = prepare.prepare_data(cfg, inputs, tokenizer, plan, conversation_in, default_system, prompt_template)
    if cfg.method == "on-policy":  # the vocabulary check comes before any weights load
        prepared.teacher = prepare.resolve_teacher(cfg, tokenizer, cfg.model)
        prepared.method["teacher"] = {k: v for k, v in prepared.teacher.items() if k not in ("artifact", "server")}
    padding_side = tokenizer.padding_side
    if cfg.method in ("on-policy", "grpo"):
        tokenizer.padding_side = "left"  # TRL's samplers left-pad prompts; restored before the tokenizer is saved
        tokenizer.chat_template = plan.inference  # the student is prompted with the template it is trained with

    choice = student.choose_precision(cfg.precision)
    precision = choice["precision"]
    say(f"precision {precision}: {choice['reason']}")
    accumulation = _accumulation(cfg, launch.world_size())
    if cfg.method == "grpo":
        from distill.stages.train import grpo

        grpo.check_batch(cfg, launch.world_size(), accumulation)
    run_dir = _run_dir(name, cfg, inputs, plan, launch.world_size())
    say(f"method {cfg.method}; recipe {cfg.recipe}, overrides {json.dumps(overrides(cfg), default=str)}; "
        f"{precision}, {launch.world_size()} process(es) x batch {cfg.per_device_train_batch_size} x accumulation "
        f"{accumulation}")
    if os.environ.get("RANK", "0") == "0":
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "distill_config.json").write_text(json.dumps(to_dict(cfg), indent=2, default=str) + "\n")
    common = prepare.common_args(cfg, f"{name}@{next_version(name)}", _report_to(cfg), precision, accumulation,
                                 run_dir, launch.world_size())
    trainer, callbacks = prepare.make_trainer(cfg, prepared, common, student_path, tokenizer, special, precision)
    train_ds, eval_ds = prepared.train_ds, prepared.eval_ds
    say(_plan_line(cfg, len(train_ds) * prepared.rows_per_step_divisor, len(eval_ds) if eval_ds is not None else 0,
                   launch.world_size(), accumulation))
    try:
        metrics = _fit(cfg, trainer, callbacks[0], run_dir, eval_ds is not None)
    finally:
        if cfg.method == "grpo":
            grpo.close_rewards(trainer)
    tokenizer.padding_side = padding_side
    final_dir = run_dir / "final"
    trainer.save_model(str(final_dir))
    if not trainer.is_world_process_zero():
        return None
    artifact = commit(cfg, TrainingRun(
        name=name, inputs=inputs, mix=prepared.mix, plan=plan, conversation_in=conversation_in, student_path=student_path,
        student_artifact=student_artifact, tokenizer=tokenizer, special=special, precision=precision,
        train_stats=prepared.train_stats, eval_stats=prepared.eval_stats, metrics=metrics, trainer=trainer,
        run_dir=run_dir, final_dir=final_dir, train_rows=prepared.train_rows, prompt_template=prompt_template,
        accumulation=accumulation, method=prepared.method, teacher=prepared.teacher,
        precision_reason=choice["reason"]))
    if not cfg.keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    say(f"wrote {artifact.ref} at {artifact.path}" + (f" (eval loss {metrics['eval_loss']:.4f})"
                                                       if "eval_loss" in metrics else ""))
    if cfg.push_to_hub:
        say(f"pushed to {hub.push(artifact, cfg.push_to_hub)}")
    print(artifact.ref)
    return artifact



def _plan_line(cfg: TrainConfig, train_rows: int, eval_rows: int, world: int, accumulation: int) -> str:
    """What is about to run, before it runs: optimizer steps and how much validation."""
    per_step = cfg.per_device_train_batch_size * world * accumulation
    per_epoch = max(1, math.ceil(train_rows / per_step))
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * per_epoch)
    every = cfg.eval_steps or cfg.save_steps
    validation = (f"validation on {eval_rows} rows every {every} steps and at the end" if eval_rows
                  else "no validation split")
    packing = " (packing makes fewer, fuller rows: fewer steps)" if cfg.packing else ""
    return (f"{'at most ' if cfg.packing else ''}{steps} optimizer steps of {per_step} sequences over {train_rows} "
            f"examples ({steps / per_epoch:.2f} epochs){packing}; {validation}; the progress bar shows the time left")


def _fit(cfg: TrainConfig, trainer, preemption, run_dir: Path, has_eval: bool) -> dict:
    """Train (resuming from the run dir's last checkpoint), then the final validation; exit 143 on SIGTERM."""
    from distill.stages.train import callbacks as cb
    from distill.stages.train import launch

    last = _last_checkpoint(run_dir) if cfg.resume else None
    if last:
        say(f"resuming from {last}")
    preemption.install()
    try:
        result = trainer.train(resume_from_checkpoint=last)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    except cb.StepBudgetReached:
        say(f"{last} already holds all {trainer.state.global_step} steps: finishing from it")
        metrics = cb.train_metrics_from_log(trainer.state.log_history)
    finally:
        preemption.uninstall()
    if preemption.preempted:
        launch.mark_preempted()
        say(f"SIGTERM: saved a resumable checkpoint in {run_dir}; run the same command to resume")
        raise SystemExit(launch.PREEMPTED_EXIT)
    if has_eval:
        # transformers already validates at the last step of a step-based schedule: reuse it, never run twice
        final = [entry for entry in trainer.state.log_history
                 if "eval_loss" in entry and entry.get("step") == trainer.state.global_step]
        evaluated = final[-1] if final else trainer.evaluate()
        metrics.update({k: v for k, v in evaluated.items() if isinstance(v, (int, float)) and k.startswith("eval_")})
    return metrics


# ---------------------------------------------------------------------------- pieces


def _default_system(conversation: dict, plan, tokenizer) -> str | None:
    """The traces' system prompt, unless the chosen template already writes it by default."""
    system = conversation.get("system_prompt")
    if not system:
        return None
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], chat_template=plan.inference,
                                             tokenize=False)
    return None if system in rendered else system


def _accumulation(cfg: TrainConfig, world: int) -> int:
    if not cfg.global_batch_size:
        return cfg.gradient_accumulation_steps
    per_step = cfg.per_device_train_batch_size * world
    if cfg.global_batch_size % per_step:
        raise UserError(f"global_batch_size {cfg.global_batch_size} is not a multiple of per-device batch "
                        f"{cfg.per_device_train_batch_size} x {world} device(s): adjust one of them")
    return cfg.global_batch_size // per_step


def _run_dir(name: str, cfg: TrainConfig, inputs, plan, world: int) -> Path:
    """HOME/checkpoints/NAME/.runs/<hash of everything that shapes the training>/."""
    key = {k: v for k, v in to_dict(cfg).items() if k not in NOT_HASHED}
    key.update(inputs=[i.source.info for i in inputs], template=plan.sha256, world=world)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return artifacts.home() / artifacts.KIND_DIRS["checkpoint"] / name / artifacts.RUNS_DIR / digest


def _last_checkpoint(run_dir: Path) -> str | None:
    """The newest complete trainer checkpoint (trainer_state.json is written last)."""
    if not run_dir.is_dir():
        return None
    done = [p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _report_to(cfg: TrainConfig) -> list[str]:
    import importlib.util

    if cfg.report_to in (["auto"], []):
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    return [t for t in cfg.report_to if t not in ("none", "auto")]
