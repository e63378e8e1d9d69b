"""`distill train --method on-policy`: the student samples, the teacher scores every token (TRL DistillationTrainer).

    distill train --method on-policy --model sft-student@latest --teacher Qwen/QwQ-32B --dataset filtered@latest
    distill train --method on-policy --model bundled --teacher bundled --teacher-few-shot data/demo/few_shot.json \\
        --dataset demo-filtered@latest --set max_steps=20          # context distillation, on CPU

The loss is TRL's chunked generalized JSD between the student's and the teacher's next-token distributions
on the student's own completions (`--beta` 1 = reverse KL, 0 = forward KL). Two things TRL's trainer does
not do, added here in a subclass (each a few lines around TRL's own code):
  * the teacher's own context (`--teacher-system-prompt`, `--teacher-few-shot`): the teacher scores the
    student's completion after *its* prompt, which the student never sees (context distillation);
  * `--lmbda` < 1: that share of batches trains on the dataset's teacher completions instead of sampling
    (GKD's mixture; TRL 1.16 keeps it only in the experimental GKD trainer).
"""

from __future__ import annotations

import random

from distill.errors import UserError


def check_vocabularies(student_tokenizer, teacher_tokenizer, student: str, teacher: str) -> None:
    """A teacher whose tokenizer differs from the student's scores different tokens: refuse before loading
    any weights (TRL would only compare vocabulary sizes, after both models are loaded)."""
    import hashlib

    def describe(tokenizer):
        vocab = tokenizer.get_vocab()
        digest = hashlib.sha256("\n".join(f"{t}\t{i}" for t, i in sorted(vocab.items(), key=lambda x: x[1]))
                                .encode()).hexdigest()[:12]
        return len(vocab), digest

    (n_student, h_student), (n_teacher, h_teacher) = describe(student_tokenizer), describe(teacher_tokenizer)
    if h_student != h_teacher:
        raise UserError(f"the teacher {teacher} has another vocabulary ({n_teacher} tokens, sha {h_teacher}) than "
                        f"the student {student} ({n_student} tokens, sha {h_student}): distillation compares "
                        "the two models token by token, so they must share a tokenizer (cross-tokenizer "
                        "distillation, GOLD, is not in distill yet)")


def make_trainer_class():
    """The DistillationTrainer subclass (built lazily: importing TRL takes seconds)."""
    import torch
    from trl import DistillationTrainer
    from trl.trainer.utils import pad

    class ContextDistillationTrainer(DistillationTrainer):
        """DistillationTrainer + a teacher-only prompt + GKD's lambda (see the module docstring)."""

        def __init__(self, *args, lmbda: float = 1.0, seed: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.lmbda = lmbda
            self._coin = random.Random(seed)
            self._rows = None
            self._teacher_prompt = None

        # ---- which batches are on-policy
        def _generate_and_score_completions(self, inputs):
            self._rows = inputs
            output = super()._generate_and_score_completions(inputs)
            if inputs and "teacher_prompt" in inputs[0]:
                ids = self._tokenize_prompts([row["teacher_prompt"] for row in inputs])[0]
                tensors = [torch.tensor(x) for x in ids]
                device = output["prompt_ids"].device
                output["teacher_prompt_ids"] = pad(tensors, padding_value=self._tokenizer.pad_token_id,
                                                   padding_side="left").to(device)
                output["teacher_prompt_mask"] = pad([torch.ones_like(t) for t in tensors], padding_value=0,
                                                    padding_side="left").to(device)
            return output

        def _generate(self, prompts):
            on_policy = not self.model.training or self.lmbda >= 1 or self._coin.random() < self.lmbda
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["on_policy_share"].append(1.0 if on_policy else 0.0)
            if on_policy:
                return super()._generate(prompts)
            # Off-policy batch: the dataset's teacher completion, tokenized as the student would emit it
            # (its end-of-turn token closes it), cut to max_completion_length.
            prompt_ids = self._tokenize_prompts(prompts)[0]
            eos = self.eos_token_ids[0] if self.eos_token_ids else self._tokenizer.eos_token_id
            completion_ids = []
            for row in self._rows:
                ids = self._tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [eos]
                completion_ids.append(ids[: self.max_completion_length])
            return prompt_ids, completion_ids, None, None, []

        # ---- the teacher reads its own prompt before the same completion tokens
        def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
            self._teacher_prompt = ((inputs["teacher_prompt_ids"], inputs["teacher_prompt_mask"])
                                    if "teacher_prompt_ids" in inputs else None)
            try:
                return super()._compute_loss(unwrapped_student, inputs, num_items_in_batch)
            finally:
                self._teacher_prompt = None

        def _get_last_hidden_state(self, unwrapped_model, input_ids, attention_mask, logits_to_keep, **kwargs):
            if self._teacher_prompt is not None and self.teacher_model is not None and \
                    unwrapped_model is self.accelerator.unwrap_model(self.teacher_model):
                # input_ids = [student prompt | completion]; the completion is the last logits_to_keep columns.
                # The teacher's prompt is left-padded too, so its last logits_to_keep hidden states are the
                # completion positions, aligned with the student's.
                prompt_ids, prompt_mask = self._teacher_prompt
                input_ids = torch.cat([prompt_ids, input_ids[:, -logits_to_keep:]], dim=1)
                attention_mask = torch.cat([prompt_mask, attention_mask[:, -logits_to_keep:]], dim=1)
            return super()._get_last_hidden_state(unwrapped_model, input_ids, attention_mask, logits_to_keep,
                                                  **kwargs)

    return ContextDistillationTrainer


def make_trainer(cfg, common: dict, model, teacher_model, tokenizer, train_ds, peft_config, callbacks):
    from trl import DistillationConfig

    from distill.stages.train import methods

    vllm, mode = methods.use_vllm(cfg)
    args = DistillationConfig(
        **common, beta=methods.beta_of(cfg), max_completion_length=cfg.max_completion_length,
        temperature=cfg.rollout_temperature, top_p=1.0, use_vllm=vllm, vllm_mode=mode,
        remove_unused_columns=False, eval_strategy="no", disable_dropout=True)
    trainer_class = make_trainer_class()
    return trainer_class(model=model, teacher_model=teacher_model, args=args, train_dataset=train_ds,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
                         lmbda=cfg.lmbda, seed=cfg.seed)
