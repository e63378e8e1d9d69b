"""`TrainConfig`: every option of `distill train` (recipes are YAML files of these keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from distill.config import option
from distill.errors import UserError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ACCELERATE_CONFIGS = ("ddp", "zero2", "zero3", "zero3-offload", "fsdp")
TRACKERS = ("auto", "none", "tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml", "dvclive")
# Keys that do not change what is trained: left out of the run hash that names the resume directory.
NOT_HASHED = ("name", "push_to_hub", "report_to", "run_name", "project", "resume", "keep_run_dir", "merge", "dataset_num_proc",
              "logging_steps", "machine_rank", "main_process_ip", "main_process_port", "accelerate_config",
              "recipe", "save_total_limit", "save_minutes")


@dataclass
class TrainConfig:
    """SFT a student on teacher traces with TRL (full fine-tune, LoRA or 4-bit QLoRA)."""

    # ------------------------------------------------------------------ data
    dataset: list[str] = option(["filtered@latest"], help="Training data: artifact ref (filtered / imported), local "
                                "jsonl/parquet or Hub id. 'REF:WEIGHT' mixes datasets; the weight is the fraction of "
                                "that dataset used (2.0 repeats it twice). Repeatable.")
    split: Optional[str] = option(None, help="Split of the inputs (default: train, or the only split).")
    model: str = option("bundled", help="Student: 'bundled' (SmolLM2-135M), a local HF folder, a checkpoint ref "
                        "(NAME@vN) or a Hub id such as Qwen/Qwen2.5-7B-Instruct.")
    model_revision: Optional[str] = option(None, help="Hub revision of the student (branch, tag or commit).")
    name: Optional[str] = option(None, help="Output checkpoint name (default: the recipe name, else 'student').")
    limit: Optional[int] = option(None, help="Use at most this many training rows (after mixing; for quick trials).")
    problem_column: str = option("problem", help="Column with the problem, used when rows carry no prompt.")
    completion_column: str = option("completion", help="Column with the teacher's full <think>...</think> answer.")

    # ------------------------------------------------------------------ conversation format
    chat_template: str = option("auto", help="Chat template to train with: auto (the traces' template when the "
                                "student's vocabulary can encode it, else the student's own), traces, student, "
                                "chatml, qwen2.5, llama3.1, r1-distill, smollm2, or a .jinja file.")
    system_prompt: Optional[str] = option(None, help="System prompt of every example (default: the one the traces "
                                       "were made with; '' for none).")
    prompt_template: Optional[str] = option(None, help="User turn built from the problem column, '{problem}' replaced "
                                         "(default: the traces' template; only for rows without a prompt column).")
    keep_few_shot: bool = option(False, help="Keep few-shot turns of the traces' prompts (default: drop them).")
    reformat_reasoning: bool = option(True, help="Rewrite completions as '<think>\\n{reasoning}\\n</think>\\n\\n"
                                      "{answer}' (also converts <|begin_of_thought|>-style markers).")
    assistant_only_loss: bool = option(True, help="Loss on the assistant turn (incl. its end-of-turn token) only; "
                                       "--no-assistant-only-loss trains on the whole sequence.")

    # ------------------------------------------------------------------ lengths
    max_length: int = option(16384, help="Longest training sequence in tokens.")
    truncate: bool = option(False, help="Cut examples longer than max-length (keeps the start; the answer and end "
                            "token are lost) instead of dropping them.")
    packing: bool = option(False, help="Pack examples into max-length rows (best-fit decreasing); packed examples "
                           "never attend to each other.")
    eval_fraction: float = option(0.02, help="Share of rows held out for eval loss (0 = no validation split).")
    eval_max_rows: int = option(500, help="At most this many validation rows.")
    eval_steps: Optional[int] = option(None, help="Evaluate every N optimizer steps (default: with each save).")

    # ------------------------------------------------------------------ optimisation
    num_train_epochs: float = option(3.0, help="Epochs over the training rows.")
    max_steps: int = option(-1, help="Stop after this many optimizer steps (-1: run the epochs).")
    learning_rate: float = option(1e-5, help="Peak learning rate (AdamW).")
    lr_scheduler_type: str = option("cosine", help="Learning-rate schedule (transformers name).")
    warmup_ratio: float = option(0.1, help="Share of the steps spent warming up.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    optim: str = option("adamw_torch", help="Optimizer (transformers name, e.g. adamw_torch, adamw_8bit).")
    per_device_train_batch_size: int = option(1, help="Sequences per device per micro-batch.")
    per_device_eval_batch_size: Optional[int] = option(None, help="Eval micro-batch (default: the train one).")
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimizer step.")
    global_batch_size: Optional[int] = option(None, help="Sequences per optimizer step over all devices; sets "
                                           "gradient accumulation from the number of devices.")
    max_grad_norm: float = option(1.0, help="Gradient clipping norm.")
    precision: str = option("auto", help="auto (bf16 on a GPU that has it, bf16 autocast over fp32 weights on a CPU "
                            "with AVX-512 BF16 / AMX: 1.3-2.7x faster measured; else fp32), bf16, fp16 or fp32.")
    gradient_checkpointing: bool = option(True, help="Recompute activations in the backward pass (less memory).")
    attn_implementation: Optional[str] = option(None, help="Attention kernel: flash_attention_2, sdpa or eager "
                                             "(default: the model's).")
    use_liger_kernel: bool = option(False, help="Use Liger kernels (needs liger-kernel).")
    seed: int = option(42, help="Seed for shuffling, splits and initialisation.")
    dataset_num_proc: Optional[int] = option(None, help="Processes for tokenization.")

    # ------------------------------------------------------------------ LoRA / QLoRA
    lora: bool = option(False, help="Train LoRA adapters on all linear layers instead of every weight.")
    lora_r: int = option(16, help="LoRA rank.")
    lora_alpha: int = option(32, help="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = option(0.05, help="LoRA dropout.")
    lora_target_modules: list[str] = option(["all-linear"], help="Modules that get adapters (peft names).")
    load_in_4bit: bool = option(False, help="QLoRA: load the frozen base in 4-bit NF4 with double quantization "
                                "(bitsandbytes); implies --lora.")
    merge: bool = option(False, help="Also write the adapter merged into the base as a full model in merged/.")

    # ------------------------------------------------------------------ devices
    num_gpus: int = option(1, help="GPUs per machine; >1 (or one GPU with an offloading "
                         "--accelerate-config) relaunches under `accelerate launch`.")
    accelerate_config: str = option("ddp", help="Multi-GPU strategy: ddp, zero2, zero3, zero3-offload, fsdp "
                                    "(recipes/accelerate/) or an accelerate YAML file.")
    num_machines: int = option(1, help="Machines in a multi-node run (see recipes/slurm/).")
    machine_rank: int = option(0, help="Rank of this machine in a multi-node run.")
    main_process_ip: Optional[str] = option(None, help="Address of machine 0 in a multi-node run.")
    main_process_port: int = option(29500, help="Port of machine 0 in a multi-node run.")

    # ------------------------------------------------------------------ checkpoints and tracking
    save_steps: int = option(500, help="Save a resumable trainer checkpoint every N steps (outside the artifact).")
    save_minutes: float = option(10.0, help="Also save a resumable trainer checkpoint every N minutes of training "
                                 "(0 = only every save_steps): a run killed without warning loses at most that.")
    save_total_limit: int = option(2, help="Resumable trainer checkpoints kept.")
    logging_steps: int = option(10, help="Log the loss every N steps.")
    resume: bool = option(True, help="Resume from the last trainer checkpoint of an identical run.")
    keep_run_dir: bool = option(False, help="Keep the trainer checkpoints after a successful run.")
    report_to: list[str] = option(["auto"], help="Trackers: auto (tensorboard when installed), none, tensorboard, "
                                  "wandb, mlflow, ...")
    temperature: float = option(0.6, help="Sampling temperature recorded in generation_config.json.")
    top_p: float = option(0.95, help="Top-p recorded in generation_config.json.")
    push_to_hub: Optional[str] = option(None, help="Also upload the checkpoint to this Hub repo.")
    run_name: Optional[str] = option(None, help="Run name in the trackers (default NAME@vNNNN).")
    project: Optional[str] = option(None, help="Tracker project (wandb / trackio / comet; default: the tracker's).")
    trainer_args: list[str] = option([], help="KEY=VALUE for any other field of TRL's config of the method "
                                     "(SFTConfig, DistillationConfig, GRPOConfig, TrainingArguments): "
                                     "neftune_noise_alpha=5, dataloader_num_workers=2, ... Also `--set trainer.KEY=VALUE`.")
    recipe: Optional[str] = option(None, help="Recipe the defaults came from (set by --recipe).", cli=False)

    # ------------------------------------------------------------------ method (see distill/stages/train/methods.py)
    method: str = option("sft", help="sft: imitate teacher traces (TRL SFTTrainer). on-policy: the student samples, "
                         "the teacher scores every token (TRL DistillationTrainer). logit: cross-entropy plus KL to the "
                         "teacher's top-K logprobs stored by `distill generate --logprobs K` (no teacher at training "
                         "time). grpo: RL with the grader's rewards (TRL GRPOTrainer).")
    teacher: Optional[str] = option(None, help="on-policy: the teacher, any model ref like --model (it must share the "
                                    "student's vocabulary, unless --cross-tokenizer).")
    teacher_revision: Optional[str] = option(None, help="on-policy: Hub revision of the teacher.")
    teacher_base_url: Optional[str] = option(None, help="on-policy: a vLLM server (`vllm serve TEACHER "
                                             "--max-logprobs K`) scores the student's tokens instead of a local "
                                             "teacher: for teachers too big to sit beside the student.")
    cross_tokenizer: bool = option(False, help="on-policy: accept a teacher whose tokenizer differs from the "
                                   "student's and train with GOLD's universal logit distillation (TRL's ULD loss: "
                                   "the two tokenizations of each completion aligned by bytes, sorted probabilities "
                                   "matched; --beta does not apply). Needs a local --teacher.")
    teacher_logprobs: int = option(20, help="on-policy with --teacher-base-url: the teacher's top-K logprobs per "
                                   "token the loss compares (plus a tail bucket).")
    teacher_system_prompt: Optional[str] = option(None, help="on-policy: a system prompt only the teacher sees "
                                                  "(context distillation).")
    teacher_few_shot: Optional[str] = option(None, help="on-policy: JSON/YAML file of {role, content} messages put "
                                             "before each problem for the teacher only (context distillation: the "
                                             "student learns to do zero-shot what the teacher does with examples).")
    beta: Optional[float] = option(None, help="on-policy / logit: the divergence, 0 = forward KL ... 1 = reverse KL, "
                                   "0.5 = JSD (default: 1 on-policy, as on-policy distillation recipes; 0 logit). "
                                   "grpo: KL coefficient to the reference model (default 0: no reference loaded).")
    lmbda: float = option(1.0, help="on-policy: share of batches the student samples itself; the others train on "
                          "the dataset's teacher completions (GKD's lambda; 1 = fully on-policy, best for a shared "
                          "tokenizer in HF's GOLD study).")
    logit_kl_weight: float = option(0.5, help="logit: loss = (1 - w) * cross-entropy on the sampled tokens + w * KL "
                                    "to the stored top-K (with a tail bucket).")
    max_completion_length: int = option(1024, help="on-policy / grpo: tokens sampled per completion.")
    rollout_temperature: float = option(1.0, help="on-policy / grpo: sampling temperature of the student's "
                                        "completions (on-policy also scores with it).")
    rollout_engine: str = option("auto", help="on-policy / grpo: who samples: auto (vLLM colocated on a GPU when "
                                 "vLLM is installed, else transformers), transformers, vllm, vllm-server.")
    num_generations: int = option(8, help="grpo: completions per prompt (G); rewards are normalised in the group.")
    reward: list[str] = option(["accuracy:1.0", "format:0.2"], help="grpo: NAME[:WEIGHT], repeatable: accuracy "
                               "(the filter's grader: math, multiple choice, code), format, tag_count, language, "
                               "length (DAPO's soft overlong penalty).")
    epsilon: float = option(0.2, help="grpo: lower clipping range of the probability ratio.")
    epsilon_high: Optional[float] = option(0.28, help="grpo: upper clipping range (DAPO's clip-higher 0.28; "
                                           "none = epsilon).")
    loss_type: str = option("dapo", help="grpo: TRL's loss aggregation: grpo, dr_grpo, dapo, bnpo.")
    scale_rewards: str = option("group", help="grpo: group (divide by the group's std, as GRPO), batch, none "
                                "(Dr. GRPO).")
    answer_column: str = option("answer", help="grpo: column with the reference answer (or `solution`).")
    answer_extraction: str = option("standard", help="grpo: where the accuracy reward reads the answer: strict "
                                    "(the last \\boxed{} only, R1's reward), standard or lenient, as `distill "
                                    "filter --answer-extraction`.")
    domain_column: str = option("domain", help="grpo: column naming each row's domain (math, multiple_choice, code); "
                                "rows without it are math.")
    pass_rate_range: Optional[str] = option(None, help="grpo: LO,HI keeps prompts whose measured pass rate (the "
                                            "filter's per-prompt statistics in the traces) lies in [LO, HI]: groups "
                                            "that are all right or all wrong teach nothing.")

    def validate(self) -> None:
        if self.load_in_4bit:
            self.lora = True  # QLoRA trains adapters on the frozen 4-bit base
        if self.merge and not self.lora:
            raise UserError("--merge needs --lora (a full fine-tune is already a full model)")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision {self.precision!r} unknown: use one of {', '.join(PRECISIONS)}")
        if not self.dataset:
            raise UserError("no --dataset given: pass a filtered/imported artifact ref, a file or a Hub id")
        if self.max_length < 16:
            raise UserError(f"max_length {self.max_length} is too small: use at least 16 tokens")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"eval_fraction {self.eval_fraction} must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio {self.warmup_ratio} must be in [0, 1)")
        for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "num_gpus", "num_machines",
                    "save_steps", "logging_steps", "lora_r"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be at least 1 (got {getattr(self, key)})")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise UserError("global_batch_size must be at least 1")
        self._validate_numbers()
        from distill.verify.extraction import MODES

        if self.answer_extraction not in MODES:
            raise UserError(f"--answer-extraction must be one of {', '.join(MODES)}, got {self.answer_extraction!r}")
        from distill.stages.train import methods

        methods.validate(self)
        unknown = [t for t in self.report_to if t not in TRACKERS]
        if unknown:
            raise UserError(f"unknown tracker {unknown[0]!r} in report_to: use {', '.join(TRACKERS)}")
        if self.num_machines > 1 and not self.main_process_ip:
            raise UserError("a multi-node run needs --main-process-ip (the address of machine 0)")

    def _validate_numbers(self) -> None:
        """Numbers that would train nothing, or something else than asked, without an error (found by probing:
        num_train_epochs=-1 committed an untrained checkpoint, lora_alpha=-5 trained)."""
        import math

        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"max_steps must be -1 (run the epochs) or at least 1 (got {self.max_steps})")
        if self.max_steps == -1 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise UserError(f"num_train_epochs must be > 0 (got {self.num_train_epochs}): nothing would be trained")
        checks = [("learning_rate", self.learning_rate, 0 < self.learning_rate < 1),
                  ("lora_alpha", self.lora_alpha, self.lora_alpha > 0),
                  ("lora_dropout", self.lora_dropout, 0 <= self.lora_dropout < 1),
                  ("weight_decay", self.weight_decay, self.weight_decay >= 0),
                  ("max_grad_norm", self.max_grad_norm, self.max_grad_norm > 0),
                  ("eval_max_rows", self.eval_max_rows, self.eval_max_rows >= 1),
                  ("save_total_limit", self.save_total_limit, self.save_total_limit >= 1),
                  ("temperature", self.temperature, self.temperature >= 0),
                  ("top_p", self.top_p, 0 < self.top_p <= 1),
                  ("save_minutes", self.save_minutes, 0 <= self.save_minutes <= 100_000)]
        for key, value, ok in checks:
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise UserError(f"{key} {value} is out of range (see `distill train --help`)")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be at least 1 (got {self.limit})")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise UserError(f"eval_steps must be at least 1 (got {self.eval_steps})")

    @property
    def output_name(self) -> str:
        return self.name or (self.recipe if self.recipe and "/" not in self.recipe and not
                             self.recipe.endswith((".yaml", ".yml")) else None) or "student"
