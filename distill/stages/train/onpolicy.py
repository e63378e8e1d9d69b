"""`distill train --method on-policy`: the student samples, the teacher scores every token (TRL DistillationTrainer).

    distill train --method on-policy --model sft-student@latest --teacher Qwen/QwQ-32B --dataset filtered@latest
    distill train --method on-policy --model bundled --teacher bundled --teacher-few-shot data/demo/few_shot.json \\
        --dataset demo-filtered@latest --set max_steps=20          # context distillation, on CPU

    distill train --method on-policy --model sft-student@latest --teacher meta-llama/Llama-3.1-8B-Instruct \
        --cross-tokenizer --dataset filtered@latest       # a teacher with another tokenizer (GOLD / ULD)

The loss is TRL's chunked generalized JSD between the student's and the teacher's next-token distributions
on the student's own completions (`--beta` 1 = reverse KL, 0 = forward KL). What TRL's trainer does not do,
added here in subclasses (each a few lines around TRL's own code):
  * the teacher's own context (`--teacher-system-prompt`, `--teacher-few-shot`): the teacher scores the
    student's completion after *its* prompt, which the student never sees (context distillation);
  * `--lmbda` < 1: that share of batches trains on the dataset's teacher completions instead of sampling
    (GKD's mixture; TRL 1.16 keeps it only in the experimental GKD trainer);
  * `--cross-tokenizer` (crosstokenizer.py): a teacher whose tokenizer differs reads the completion's text in
    its own tokens after its own chat template, and the loss is TRL's universal logit distillation (GOLD);
    without the flag such a teacher is refused before any weights load;
  * the `teacher_student_logprob_gap` metric beside TRL's (loss, entropy, completion lengths): the mean over
    completion tokens of teacher minus student logprob of the sampled token, measured on the steps that are
    logged (it needs both full next-token distributions, which the chunked loss never materialises).
"""

from __future__ import annotations

import random

from distill.errors import UserError

ON_POLICY_REMEDY = "or pass --cross-tokenizer to distill across tokenizers (GOLD's universal logit distillation)"


def vocabulary_signature(tokenizer) -> tuple[int, str]:
    """(size, short sha256 of the token -> id table): two tokenizers score the same tokens iff these agree."""
    import hashlib

    vocab = tokenizer.get_vocab()
    table = "\n".join(f"{t}\t{i}" for t, i in sorted(vocab.items(), key=lambda x: x[1]))
    return len(vocab), hashlib.sha256(table.encode()).hexdigest()[:12]


def check_vocabularies(student_tokenizer, teacher_tokenizer, student: str, teacher: str, *,
                       cross_tokenizer: bool = False, remedy: str | None = None) -> bool:
    """True when both share a vocabulary. A teacher whose tokenizer differs scores different tokens: refused
    before any weights load (TRL would only compare vocabulary sizes, after both models are loaded), unless
    `cross_tokenizer` (then False is returned)."""
    (n_student, h_student) = vocabulary_signature(student_tokenizer)
    (n_teacher, h_teacher) = vocabulary_signature(teacher_tokenizer)
    if h_student == h_teacher:
        return True
    if cross_tokenizer:
        return False
    raise UserError(f"the teacher {teacher} has another vocabulary ({n_teacher} tokens, sha {h_teacher}) than "
                    f"the student {student} ({n_student} tokens, sha {h_student}): distillation compares "
                    "the two models token by token, so they must share a tokenizer, "
                    + (remedy or "or train with --method on-policy --cross-tokenizer and a local --teacher "
                       "(GOLD's universal logit distillation)"))


GAP_METRIC = "teacher_student_logprob_gap"


def sampled_logprobs(model, hidden, token_ids, temperature: float, chunk: int = 1024):
    """Log-probability of each `token_ids[i]` under `model`'s head applied to `hidden[i]` (N, H), at the loss's
    temperature; projected `chunk` positions at a time so the (N, V) logits never exist whole. Applies the
    Cohere-style logit scale and Gemma-style soft-capping the model's own forward applies."""
    import torch

    config = model.config.get_text_config()
    scale = getattr(config, "logit_scale", None) or 1.0
    cap = getattr(config, "final_logit_softcapping", None)
    head = model.get_output_embeddings()
    out = []
    with torch.no_grad():
        for start in range(0, hidden.size(0), chunk):
            logits = head(hidden[start: start + chunk].to(head.weight.device)).float() * scale
            if cap:
                logits = cap * torch.tanh(logits / cap)
            logits = logits / temperature
            ids = token_ids[start: start + chunk].to(logits.device)
            out.append(logits.gather(-1, ids[:, None]).squeeze(-1) - logits.logsumexp(-1))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def make_trainer_class():
    """The DistillationTrainer subclasses (built lazily: importing TRL takes seconds)."""
    import torch
    from trl import DistillationTrainer
    from trl.trainer.utils import pad

    class ContextDistillationTrainer(DistillationTrainer):
        """DistillationTrainer + a teacher-only prompt + GKD's lambda + the logprob gap (see the module docstring)."""

        def __init__(self, *args, lmbda: float = 1.0, seed: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.lmbda = lmbda
            self._coin = random.Random(seed)
            self._rows = None
            self._teacher_prompt = None
            self._hidden = None    # the last hidden states of both models, kept on a step whose metrics are logged
            self._gap_sums = None  # (sum of teacher - student logprobs, tokens) of this micro-batch

        # ---- which batches are on-policy
        def _generate_and_score_completions(self, inputs):
            self._rows = inputs
            output = super()._generate_and_score_completions(inputs)
            if inputs:
                output.update(self._teacher_fields(inputs, output["prompt_ids"].device))
            return output

        def _teacher_fields(self, rows, device) -> dict:
            """What the teacher reads instead of the student's prompt, one entry per row (shuffled and split
            into micro-batches with the rest of the batch)."""
            if "teacher_prompt" not in rows[0]:
                return {}
            ids = self._tokenize_prompts([row["teacher_prompt"] for row in rows])[0]
            tensors = [torch.tensor(x) for x in ids]
            return {"teacher_prompt_ids": pad(tensors, padding_value=self._tokenizer.pad_token_id,
                                              padding_side="left").to(device),
                    "teacher_prompt_mask": pad([torch.ones_like(t) for t in tensors], padding_value=0,
                                               padding_side="left").to(device)}

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

        # ---- the teacher/student logprob gap, on the steps whose metrics are logged
        def _logprob_gap_due(self) -> bool:
            """Measured only on a step the trainer will log: it costs a full head projection of both models,
            a few % of an on-policy step, which the other steps do not pay."""
            if not self.model.training:
                return False
            step = self.state.global_step  # the step being taken is step + 1
            # the trainer's state holds logging_steps in steps (TrainingArguments may give a share of the run)
            every = max(1, int(getattr(self.state, "logging_steps", None) or self.args.logging_steps))
            return (step + 1) % every == 0 or (step == 0 and bool(self.args.logging_first_step))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self._gap_sums = None
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self._gap_sums is not None:  # gathered here, outside the wrapped forward (as TRL's entropy)
                totals = self.accelerator.gather(self._gap_sums.reshape(1, 2)).reshape(-1, 2).sum(0)
                if totals[1] > 0:
                    self._metrics["train"][GAP_METRIC].append((totals[0] / totals[1]).item())
                self._gap_sums = None
            return result

        def _record_gap(self, teacher_minus_student, tokens) -> None:
            """Sum of teacher - student logprobs over `tokens` sampled tokens of this micro-batch."""
            self._gap_sums = torch.stack([torch.as_tensor(teacher_minus_student, dtype=torch.float32).sum(),
                                          torch.as_tensor(tokens, dtype=torch.float32)]).to(self.accelerator.device)

        # ---- the teacher reads its own prompt before the same completion tokens
        def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
            self._teacher_prompt = ((inputs["teacher_prompt_ids"], inputs["teacher_prompt_mask"])
                                    if "teacher_prompt_ids" in inputs else None)
            self._hidden = {} if self._logprob_gap_due() else None
            try:
                result = super()._compute_loss(unwrapped_student, inputs, num_items_in_batch)
                if self._hidden is not None and len(self._hidden) == 2:
                    self._local_gap(unwrapped_student, inputs)
                return result
            finally:
                self._teacher_prompt = None
                self._hidden = None

        def _local_gap(self, unwrapped_student, inputs) -> None:
            mask = inputs["completion_mask"].bool()
            if "tool_mask" in inputs:
                mask = mask & inputs["tool_mask"].bool()
            ids = inputs["completion_ids"][mask]
            teacher = self.accelerator.unwrap_model(self.teacher_model)
            student_lp = sampled_logprobs(unwrapped_student, self._hidden["student"][mask], ids, self.temperature)
            teacher_lp = sampled_logprobs(teacher, self._hidden["teacher"][mask], ids, self.temperature)
            self._record_gap(teacher_lp - student_lp.to(teacher_lp.device), mask.sum())

        def _get_last_hidden_state(self, unwrapped_model, input_ids, attention_mask, logits_to_keep, **kwargs):
            is_teacher = self.teacher_model is not None and \
                unwrapped_model is self.accelerator.unwrap_model(self.teacher_model)
            if self._teacher_prompt is not None and is_teacher:
                # input_ids = [student prompt | completion]; the completion is the last logits_to_keep columns.
                # The teacher's prompt is left-padded too, so its last logits_to_keep hidden states are the
                # completion positions, aligned with the student's.
                prompt_ids, prompt_mask = self._teacher_prompt
                input_ids = torch.cat([prompt_ids, input_ids[:, -logits_to_keep:]], dim=1)
                attention_mask = torch.cat([prompt_mask, attention_mask[:, -logits_to_keep:]], dim=1)
            hidden = super()._get_last_hidden_state(unwrapped_model, input_ids, attention_mask, logits_to_keep,
                                                    **kwargs)
            if self._hidden is not None:
                self._hidden["teacher" if is_teacher else "student"] = hidden.detach()
            return hidden

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
            if self._logprob_gap_due():
                self._served_gap(logprobs[mask].detach(), completion_ids[mask], top_ids[mask], top_values[mask])
            return divergence.sum() / denominator, entropy.sum().detach(), mask.sum()

        def _served_gap(self, student_logprobs, sampled, top_ids, top_values) -> None:
            """The gap on the divergence's own support: a sampled token in the teacher's top-K is compared as
            itself, one outside it as the tail bucket of both models (the server returns no exact logprob
            for it)."""
            valid = torch.isfinite(top_values)
            hit = (top_ids == sampled[:, None]) & valid
            in_top = hit.any(-1)
            teacher_token = torch.where(hit, top_values, torch.full_like(top_values, -float("inf"))).max(-1).values
            teacher_mass = torch.logsumexp(torch.where(valid, top_values, -float("inf")), dim=-1)
            student_top = torch.where(valid, student_logprobs.gather(-1, top_ids), -float("inf"))
            student_mass = torch.logsumexp(student_top, dim=-1)

            def tail(log_mass):  # log(1 - exp(log_mass)), kept finite
                return torch.log(-torch.expm1(log_mass.clamp(max=-1e-7)))

            teacher_lp = torch.where(in_top, teacher_token, tail(teacher_mass))
            student_lp = torch.where(in_top, student_logprobs.gather(-1, sampled[:, None]).squeeze(-1),
                                     tail(student_mass))
            self._record_gap(teacher_lp - student_lp, sampled.numel())

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
                 teacher_server=None, teacher_tokenizer=None):
    """The on-policy trainer: a served teacher, a teacher with another tokenizer (`teacher_tokenizer` given:
    --cross-tokenizer), or a local teacher sharing the student's vocabulary."""
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
    if teacher_tokenizer is not None:
        from distill.stages.train import crosstokenizer

        uld = crosstokenizer.uld_settings(tokenizer, teacher_tokenizer, cfg.rollout_temperature)
        cross = crosstokenizer.make_trainer_class(local)
        return cross(model=model, teacher_model=teacher_model, teacher_tokenizer=teacher_tokenizer, uld=uld,
                     **common_kwargs)
    return local(model=model, teacher_model=teacher_model, **common_kwargs)
