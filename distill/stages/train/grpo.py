"""`distill train --method grpo`: RL with verifiable rewards from the filter's own grader (TRL GRPOTrainer).

    distill train --method grpo --model sft-student@latest --dataset filtered@latest \\
        --reward accuracy:1.0 --reward format:0.2 --num-generations 8 --set max_steps=200
    distill train --recipe qwen-1.5b-grpo --dataset deepscaler@latest      # DeepScaleR-style
    distill train --recipe smol-demo-grpo --dataset demo-filtered@latest   # the bundled model on CPU

For each prompt the student samples a group of --num-generations completions; each reward (named, weighted)
scores them; the advantage is the reward's z-score inside the group (--scale-rewards), the loss a clipped
ratio (--epsilon, --epsilon-high) aggregated as --loss-type, with a KL to the starting model when --beta > 0
(0 loads no reference model). `accuracy` is graded by the same verifiers as `distill filter` / `distill eval`,
in their killable worker pool: a hanging check costs one timeout and a reward of 0.
"""

from __future__ import annotations

from distill.errors import UserError


def check_batch(cfg, world: int, accumulation: int) -> None:
    """TRL needs whole groups in a generation batch: say so in one line, before any model loads."""
    completions = cfg.per_device_train_batch_size * world * accumulation
    if completions % cfg.num_generations:
        raise UserError(f"a step holds {completions} completions (per-device batch {cfg.per_device_train_batch_size}"
                        f" x {world} device(s) x accumulation {accumulation}), not a multiple of --num-generations "
                        f"{cfg.num_generations}: make the batch a multiple of the group size")


def make_trainer(cfg, common: dict, model, tokenizer, train_ds, peft_config, callbacks, num_proc: int | None):
    from trl import GRPOConfig, GRPOTrainer

    from distill.stages.train import methods, rewards
    from distill.verify.grader import GradeConfig

    vllm, mode = methods.use_vllm(cfg)
    specs = rewards.parse_reward_specs(cfg.reward)
    functions, weights = rewards.make_reward_functions(
        specs, GradeConfig(answer_extraction=cfg.answer_extraction), rewards.RewardColumns(), max_completion_length=cfg.max_completion_length,
        num_proc=num_proc)
    args = GRPOConfig(
        **common, beta=methods.beta_of(cfg), num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length, temperature=cfg.rollout_temperature, top_p=1.0,
        epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards, reward_weights=weights, use_vllm=vllm, vllm_mode=mode,
        remove_unused_columns=False, eval_strategy="no", log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=functions, args=args, train_dataset=train_ds,
                          processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    trainer.distill_reward_functions = functions  # closed after training (their grader pools)
    return trainer


def close_rewards(trainer) -> None:
    for function in getattr(trainer, "distill_reward_functions", []):
        close = getattr(function, "close", None)
        if close:
            close()
