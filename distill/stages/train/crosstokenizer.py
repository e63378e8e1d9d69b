"""`distill train --method on-policy --cross-tokenizer`: a teacher whose tokenizer differs from the student's.

    distill train --method on-policy --model sft-student@latest --teacher meta-llama/Llama-3.1-8B-Instruct \\
        --cross-tokenizer --dataset filtered@latest

The student samples as in every on-policy run (TRL's DistillationTrainer: transformers or vLLM, `--lmbda`,
the teacher's own context). The teacher then reads the same completion *text* in its own tokens, after the
prompt rendered with its own chat template, and the loss is TRL's universal logit distillation (ULD, the loss
of HF's GOLD): the two tokenizations are aligned by byte offsets, tokens split differently are merged into
one probability per aligned span (chain rule), and the sorted probability vectors of both models are matched
(L1), which needs no shared vocabulary. `--beta` does not apply.

Why not TRL's GOLDTrainer itself: it is an SFTTrainer over prompt+completion rows (our on-policy prompts may
have no completion), it renders the teacher's prompt with the *student's* chat template (a Llama teacher
would read ChatML markers as text), it has no teacher-only context, and it would leave DistillationTrainer's
sampling and metrics. Its loss is used as is (`ULDLoss`, with TRL's byte-offset helpers); what is ours is
building both sides' inputs in the layout that loss expects.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

from distill.errors import UserError

# ULD settings that differ from GOLDConfig's defaults, and why:
#  * "bayesian": probs[k] predicts token k and a merged span's probability is the chain-rule product of its
#    tokens' (GOLDConfig's default "observed" multiplies in each token's probability at its own position);
#  * EOS is never in the aligned region: the student's stop token is left out of the completion text
#    here (its text would be foreign markup to the teacher), and the teacher gets none appended, so GOLD's
#    skip-the-last-token switches would cut a real token of a completion that hit max_completion_length.
OURS = {"uld_token_merge_strategy": "bayesian", "uld_skip_student_eos": False, "uld_skip_teacher_eos": False}


def uld_settings(student_tokenizer, teacher_tokenizer, temperature: float) -> dict:
    """GOLDConfig's ULD fields with distill's choices; `use_extended_uld` (alignment by byte offsets) needs
    two fast ByteLevel BPE tokenizers (Llama 3, Qwen, SmolLM, Mistral v0.3+), else positions are aligned."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRL warns on every import of trl.experimental
        from trl.experimental.gold import GOLDConfig
        from trl.experimental.utils import is_byte_level_tokenizer

    settings = {f.name: f.default for f in dataclasses.fields(GOLDConfig)
                if f.name.startswith("uld_") or f.name == "use_extended_uld"}
    settings.update(OURS, uld_student_temperature=temperature, uld_teacher_temperature=temperature)

    def byte_level(tokenizer) -> bool:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return backend is not None and is_byte_level_tokenizer(backend)

    settings["use_extended_uld"] = byte_level(student_tokenizer) and byte_level(teacher_tokenizer)
    return settings


def manifest_entry(settings: dict, teacher_vocabulary: tuple[int, str]) -> dict:
    """What the manifest's method block records about the cross-tokenizer loss (`teacher_vocabulary`: the
    teacher's (size, sha) from onpolicy.vocabulary_signature)."""
    size, sha = teacher_vocabulary
    return {"loss": "uld", "alignment": "byte offsets" if settings["use_extended_uld"] else "positions",
            "token_merge": settings["uld_token_merge_strategy"], "teacher_vocabulary": size,
            "teacher_vocabulary_sha": sha}


def render_teacher_prompt(teacher_tokenizer, student_tokenizer, messages: list[dict]) -> tuple[str, bool]:
    """(the teacher's prompt text, whether to add its special tokens when encoding): its own chat template,
    else (a base model) the student's rendering as plain text after the teacher's BOS."""
    if getattr(teacher_tokenizer, "chat_template", None):
        return teacher_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False
    return student_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True


def make_trainer_class(base):
    """The cross-tokenizer subclass of `base` (onpolicy's ContextDistillationTrainer)."""
    import torch
    from trl.models import prepare_deepspeed
    from trl.trainer.utils import pad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gold.gold_trainer import ULDLoss
        from trl.experimental.utils import encode_with_byte_offsets, pad_byte_offsets, piece_byte_len

    def forward_logits(model, input_ids, attention_mask, keep: int):
        """Logits of the last `keep` positions from the model's own forward (its logit scale and soft-capping
        included), the full sequence for a model without `logits_to_keep`."""
        forward = model.get_base_model().forward if hasattr(model, "get_base_model") else model.forward
        kwargs = {"logits_to_keep": keep} if "logits_to_keep" in inspect.signature(forward).parameters else {}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits
        return logits[:, -keep:]

    class CrossTokenizerTrainer(base):
        """On-policy distillation from a teacher with another tokenizer (see the module docstring)."""

        def __init__(self, *args, teacher_model, teacher_tokenizer, uld: dict, **kwargs):
            # TRL's constructor refuses a teacher whose vocab_size differs: the teacher is attached here instead.
            super().__init__(*args, teacher_model=None, **kwargs)
            if self.is_deepspeed_enabled:
                self.teacher_model = prepare_deepspeed(teacher_model, self.accelerator)
            else:
                self.teacher_model = self.accelerator.prepare_model(teacher_model, evaluation_mode=True)
            self.teacher_tokenizer = teacher_tokenizer
            if teacher_tokenizer.pad_token_id is None:
                teacher_tokenizer.pad_token = teacher_tokenizer.eos_token
            self.uld_loss = ULDLoss(config=_Settings(uld, beta=self.beta), student_tokenizer=self._tokenizer,
                                    teacher_tokenizer=teacher_tokenizer, device=self.accelerator.device)
            self._stop_ids = sorted({*self.eos_token_ids} - {None})
            first = self.train_dataset[0]
            try:  # a template that refuses these messages would otherwise fail at the first step
                render_teacher_prompt(teacher_tokenizer, self._tokenizer,
                                      first.get("teacher_prompt") or first["prompt"])
            except Exception as exc:  # jinja raises its own TemplateError (e.g. a template without a system role)
                raise UserError(f"the teacher's chat template cannot render the prompts ({type(exc).__name__}: "
                                f"{str(exc)[:160]})") from None

        def _teacher_fields(self, rows, device) -> dict:
            rendered = [render_teacher_prompt(self.teacher_tokenizer, self._tokenizer,
                                              row.get("teacher_prompt") or row["prompt"]) for row in rows]
            return {"teacher_prompt_text": [text for text, _ in rendered],
                    "teacher_prompt_special": [special for _, special in rendered]}

        # ---- both sides in ULDLoss's layout: logits[:, p] predict ids[:, p + 1]; labels mark the completion
        def _student_side(self, inputs):
            completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
            # the text both models score: the completion without the stop token that ended it (if one did)
            content = completion_mask.bool().clone()
            rows = torch.arange(content.size(0), device=content.device)
            last = (content.sum(1) - 1).clamp(min=0)
            stopped = content.any(1) & torch.isin(completion_ids[rows, last],
                                                  torch.tensor(self._stop_ids, device=content.device))
            content[rows[stopped], last[stopped]] = False
            ids = torch.cat([inputs["prompt_ids"][:, -1:], completion_ids], dim=1)
            labels = torch.where(torch.cat([torch.zeros_like(content[:, :1]), content], dim=1), ids, -100)
            texts, offsets = [], []
            for row in range(ids.size(0)):
                tokens = completion_ids[row][content[row]].tolist()
                texts.append(self._tokenizer.decode(tokens, skip_special_tokens=False,
                                                    clean_up_tokenization_spaces=False))
                row_offsets, end = [(0, 0)], 0  # the prompt's last token, then each completion token's bytes
                for piece in self._tokenizer.convert_ids_to_tokens(tokens):
                    row_offsets.append((end, end + piece_byte_len(piece)))
                    end += piece_byte_len(piece)
                offsets.append(pad_byte_offsets(row_offsets, ids.size(1), padding_side="right"))
            return ids, labels, torch.stack(offsets).to(ids.device), texts, content

        def _teacher_side(self, inputs, texts, device):
            tokenizer, extended = self.teacher_tokenizer, self.uld_loss.use_extended_uld
            if extended:
                completions = encode_with_byte_offsets(tokenizer.backend_tokenizer, texts, add_special_tokens=False)
            else:
                completions = [(ids, [(0, 0)] * len(ids)) for ids in
                               tokenizer(texts, add_special_tokens=False)["input_ids"]]
            keep = max(len(ids) for ids, _ in completions) + 1  # + the last prompt position, which predicts the first
            sequences, masks, labels, offsets = [], [], [], []
            for text, special, (ids, byte_offsets) in zip(inputs["teacher_prompt_text"],
                                                          inputs["teacher_prompt_special"], completions, strict=True):
                prompt = tokenizer(text, add_special_tokens=special)["input_ids"]
                sequence = torch.tensor(prompt + list(ids), dtype=torch.long)
                sequences.append(sequence)
                masks.append(torch.ones_like(sequence))
                labels.append(torch.tensor([-100] * len(prompt) + list(ids), dtype=torch.long))
                offsets.append(pad_byte_offsets([(0, 0)] * len(prompt) + list(byte_offsets), 0, "left"))
            # left-padded, so every completion ends at the last column and `keep` columns hold them all
            ids = pad(sequences, padding_value=tokenizer.pad_token_id, padding_side="left").to(device)
            mask = pad(masks, padding_value=0, padding_side="left").to(device)
            labels = pad(labels, padding_value=-100, padding_side="left").to(device)
            offsets = pad(offsets, padding_value=0, padding_side="left").to(device)
            return ids, mask, keep, labels[:, -keep:], offsets[:, -keep:]

        def _compute_loss(self, unwrapped_student, inputs, num_items_in_batch):
            student_ids, student_labels, student_offsets, texts, content = self._student_side(inputs)
            width = inputs["completion_ids"].size(1) + 1
            student_logits = forward_logits(
                unwrapped_student, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
                torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1), width)
            teacher_ids, teacher_mask, keep, teacher_labels, teacher_offsets = self._teacher_side(
                inputs, texts, student_logits.device)
            self.teacher_model.eval()
            unwrapped_teacher = self.accelerator.unwrap_model(self.teacher_model)
            with torch.no_grad():
                teacher_logits = self._forward_redirection(self.teacher_model, unwrapped_teacher, forward_logits,
                                                           unwrapped_teacher, teacher_ids, teacher_mask, keep)
            teacher_logits = teacher_logits.to(student_logits.device)
            # ULDLoss averages over the micro-batch's sequences; the trainer expects a loss already scaled for
            # gradient accumulation (DistillationTrainer.loss_is_scaled_for_ga)
            loss = self.uld_loss(student_logits=student_logits, teacher_logits=teacher_logits,
                                 student_labels=student_labels, teacher_labels=teacher_labels,
                                 student_input_ids=student_ids, teacher_input_ids=teacher_ids[:, -keep:],
                                 student_byte_offsets=student_offsets, teacher_byte_offsets=teacher_offsets)
            loss = loss / self.current_gradient_accumulation_steps
            predicted = student_logits[:, :-1][content].float() / self.temperature
            logprobs = torch.log_softmax(predicted, dim=-1)
            entropy = -(logprobs.exp() * logprobs).sum().detach()
            if self._logprob_gap_due():
                self._cross_gap(logprobs.detach(), student_ids[:, 1:][content], teacher_logits,
                                teacher_ids[:, -keep:], teacher_labels)
            return loss, entropy, content.sum()

        def _cross_gap(self, student_logprobs, student_tokens, teacher_logits, teacher_ids, teacher_labels):
            """Tokens differ, so the gap is taken per completion text: log P_teacher(text) - log P_student(text),
            summed over the batch and divided by the student's tokens (for a shared tokenizer, the same number
            as the per-token gap)."""
            with torch.no_grad():
                predicted = teacher_logits[:, :-1].float() / self.temperature
                targets = teacher_ids[:, 1:]
                scored = teacher_labels[:, 1:] != -100
                teacher = (predicted.gather(-1, targets[..., None]).squeeze(-1)
                           - predicted.logsumexp(-1))[scored].sum()
                student = student_logprobs.gather(-1, student_tokens[:, None]).sum()
            self._record_gap(teacher - student.to(teacher.device), student_tokens.numel())

    return CrossTokenizerTrainer


class _Settings:
    """The attribute bag ULDLoss reads its settings from (a GOLDConfig would build a second TrainingArguments)."""

    def __init__(self, settings: dict, beta: float):
        self.__dict__.update(settings, beta=beta)
