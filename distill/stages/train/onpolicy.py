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

    class ServerTeacherTrainer(ContextDistillationTrainer):
        """The teacher's top-K logprobs come from a vLLM server (distill.engines.teacher_server); the divergence
        is taken on those K tokens plus a tail bucket (the logit method's loss), for every completion token."""

        def __init__(self, *args, teacher_server, **kwargs):
            super().__init__(*args, teacher_model=None, **kwargs)
            self.teacher_server = teacher_server

        def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
            import math as _math

            from distill.stages.train.divergence import sparse_divergence

            completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
            input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
            attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
            width = completion_ids.size(1)
            hidden = self._get_last_hidden_state(unwrapped_student, input_ids, attention_mask, width)
            logprobs = torch.log_softmax(unwrapped_student.get_output_embeddings()(hidden).float(), dim=-1)
            teacher_ids = inputs.get("teacher_prompt_ids", inputs["prompt_ids"])
            teacher_mask = inputs.get("teacher_prompt_mask", inputs["prompt_mask"])
            sequences, starts = [], []
            for row in range(completion_ids.size(0)):
                prompt = teacher_ids[row][teacher_mask[row].bool()].tolist()
                sequences.append(prompt + completion_ids[row][completion_mask[row].bool()].tolist())
                starts.append(len(prompt))
            k = self.teacher_server.k
            top_ids = torch.zeros((*completion_ids.shape, k), dtype=torch.long, device=logprobs.device)
            top_values = torch.full((*completion_ids.shape, k), -_math.inf, device=logprobs.device)
            for row, (ids, values) in enumerate(self.teacher_server.score(sequences, starts)):
                top_ids[row, : len(ids)] = torch.from_numpy(ids)
                top_values[row, : len(values)] = torch.from_numpy(values)
            mask = completion_mask.bool()
            divergence = sparse_divergence(logprobs[mask], top_ids[mask], top_values[mask],
                                           torch.isfinite(top_values[mask]), self.beta)
            denominator = num_items_in_batch if num_items_in_batch is not None else mask.sum().clamp(min=1)
            entropy = -(logprobs[mask].exp() * logprobs[mask]).sum(-1)
            return divergence.sum() / denominator, entropy.sum().detach(), mask.sum()

    return ContextDistillationTrainer, ServerTeacherTrainer


def resolve_server_teacher(cfg, student_tokenizer, student: str):
    """The served teacher, reached (and its vocabulary checked when its tokenizer loads here) before any
    weights load."""
    from distill import log, models
    from distill.engines.teacher_server import TeacherServer
    from distill.stages.train import model as loader

    server = TeacherServer(cfg.teacher_base_url, k=cfg.teacher_logprobs, model=cfg.teacher)
    try:
        tokenizer = loader.load_tokenizer(models.resolve(server.model, adapters=False).path)
    except UserError:
        log.warn(f"cannot load the served teacher's tokenizer ({server.model}) here: its vocabulary is assumed to "
                 "be the student's")
    else:
        check_vocabularies(student_tokenizer, tokenizer, student, server.model)
    return server


def make_trainer(cfg, common: dict, model, teacher_model, tokenizer, train_ds, peft_config, callbacks,
                 teacher_server=None):
    from trl import DistillationConfig

    from distill.stages.train import methods

    vllm, mode = methods.use_vllm(cfg)
    args = DistillationConfig(
        **common, beta=methods.beta_of(cfg), max_completion_length=cfg.max_completion_length,
        temperature=cfg.rollout_temperature, top_p=1.0, use_vllm=vllm, vllm_mode=mode,
        remove_unused_columns=False, eval_strategy="no", disable_dropout=True)
    local, served = make_trainer_class()
    common_kwargs = dict(args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=peft_config,
                         callbacks=callbacks, lmbda=cfg.lmbda, seed=cfg.seed)
    if teacher_server is not None:
        return served(model=model, teacher_server=teacher_server, **common_kwargs)
    return local(model=model, teacher_model=teacher_model, **common_kwargs)
