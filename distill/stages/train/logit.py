"""`distill train --method logit`: distil from the teacher's stored top-K logprobs, no teacher at training time.

    distill generate --teacher Qwen/QwQ-32B --logprobs 20 --dataset problems.jsonl --name traces
    distill filter --input traces@latest --name filtered
    distill train --method logit --dataset filtered@latest --model Qwen/Qwen2.5-1.5B-Instruct

Each row is the student's prompt (the traces' conversation, few-shot turns dropped) followed by the teacher's
completion exactly as sampled (`completion_token_ids`). The loss on every completion token is
(1 - w) * cross-entropy of the sampled token + w * D(teacher || student) over the teacher's top-K tokens plus
a tail bucket holding the rest of the probability mass (so K = 1 still says how sure the teacher was);
D is the generalized JSD of --beta (0 = forward KL, the default: the teacher's distribution is what was stored).
One teacher pass serves SFT (the text) and logit distillation (the logprobs).

Why our own loss: TRL's trainers either run the teacher (DistillationTrainer, GKD) or query a live server
(ServerDistillationTrainer); none trains from logprobs stored beside a dataset. The loss below is the
sparse top-K + tail divergence those trainers use, on stored values.
"""

from __future__ import annotations

import math

from distill.errors import UserError
from distill.stages.train.divergence import sparse_divergence

__all__ = ["COLUMNS", "build_rows", "collate", "make_trainer", "sparse_divergence"]

COLUMNS = ("completion_token_ids", "top_logprob_ids", "top_logprobs")


def build_rows(inputs, cfg, tokenizer, plan, default_system, prompt_template):
    """(datasets.Dataset with input_ids, prompt_length, top ids / logprobs per completion token; stats)."""
    import datasets

    from distill.stages.train.methods import _detect, prompt_messages

    rows = {"input_ids": [], "prompt_length": [], "top_ids": [], "top_logprobs": []}
    stats = {"rows": 0, "unusable": 0, "dropped_too_long": 0, "k": None, "trained_tokens": 0}
    for item in inputs:
        missing = [c for c in COLUMNS if c not in item.data.column_names]
        if missing:
            raise UserError(f"dataset {item.spec} has no stored teacher logprobs (missing {', '.join(missing)}): "
                            "make the traces with `distill generate --logprobs K`, or train with --method sft")
        _check_teacher_vocabulary(item, tokenizer, cfg.model)
        fmt = _detect(item.data, cfg, item.spec)
        for row in item.data:
            stats["rows"] += 1
            messages = prompt_messages(row, fmt, cfg, default_system, prompt_template)
            completion, ids, logprobs = (row[c] for c in COLUMNS)
            if not messages or not completion or len(ids or []) != len(completion) or \
                    len(logprobs or []) != len(completion):
                stats["unusable"] += 1
                continue
            text = tokenizer.apply_chat_template(messages, chat_template=plan.inference, tokenize=False,
                                                 add_generation_prompt=True)
            prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(prompt) + len(completion) > cfg.max_length:
                stats["dropped_too_long"] += 1
                continue
            stats["k"] = max(stats["k"] or 0, max(len(x) for x in ids))
            rows["input_ids"].append(prompt + list(completion))
            rows["prompt_length"].append(len(prompt))
            rows["top_ids"].append(ids)
            rows["top_logprobs"].append(logprobs)
            stats["trained_tokens"] += len(completion)
    stats["kept"] = len(rows["input_ids"])
    if not stats["kept"]:
        raise UserError(f"no row to train on: {stats['rows']} rows, {stats['unusable']} without a prompt or "
                        f"matching logprobs, {stats['dropped_too_long']} longer than max_length={cfg.max_length}")
    data = datasets.Dataset.from_dict(rows).shuffle(seed=cfg.seed)
    if cfg.limit:
        data = data.select(range(min(cfg.limit, len(data))))
    return data, stats


def _check_teacher_vocabulary(item, tokenizer, student: str) -> None:
    """Stored ids are the teacher's token ids: they mean the same tokens to the student only with the same
    vocabulary. The traces' manifest (or an ancestor's) names the teacher's tokenizer; check it when it loads
    here (a local folder, a checkpoint, bundled, a cached Hub id)."""
    from distill import artifacts, log, models
    from distill.stages.train import model as loader
    from distill.stages.train.onpolicy import check_vocabularies

    found = artifacts.nearest_in_lineage(item.source.artifact, lambda manifest: manifest.get("logprobs"))
    spec = (found[0] or {}).get("tokenizer") if found else None
    if not spec:
        log.warn(f"{item.spec} does not record the teacher's tokenizer: its vocabulary is assumed to be the student's")
        return
    try:
        teacher_tokenizer = loader.load_tokenizer(models.resolve(spec, adapters=False).path)
    except UserError as exc:
        log.warn(f"cannot load the teacher's tokenizer {spec} to compare vocabularies ({exc}): assumed the same")
        return
    check_vocabularies(tokenizer, teacher_tokenizer, student, spec)


def collate(rows: list[dict], pad_id: int) -> dict:
    """Right-padded ids, labels on the completion, and the teacher's top-K per completion position."""
    import torch

    length = max(len(r["input_ids"]) for r in rows)
    steps = max(len(r["top_ids"]) for r in rows)
    k = max(len(x) for r in rows for x in r["top_ids"])
    batch = len(rows)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    labels = torch.full((batch, length), -100, dtype=torch.long)
    top_ids = torch.zeros((batch, steps, k), dtype=torch.long)
    top_logprobs = torch.full((batch, steps, k), float("-inf"), dtype=torch.float32)
    positions = torch.zeros((batch, steps), dtype=torch.long)
    completion_mask = torch.zeros((batch, steps), dtype=torch.bool)
    for b, row in enumerate(rows):
        ids, start = row["input_ids"], row["prompt_length"]
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attention[b, : len(ids)] = 1
        labels[b, start: len(ids)] = torch.tensor(ids[start:])
        for t, (tid, tlp) in enumerate(zip(row["top_ids"], row["top_logprobs"], strict=True)):
            top_ids[b, t, : len(tid)] = torch.tensor(tid)
            top_logprobs[b, t, : len(tlp)] = torch.tensor([v if v is not None and math.isfinite(v) else float("-inf")
                                                          for v in tlp])
        positions[b, : len(row["top_ids"])] = torch.arange(start - 1, start - 1 + len(row["top_ids"]))
        completion_mask[b, : len(row["top_ids"])] = True
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "top_ids": top_ids,
            "top_logprobs": top_logprobs, "positions": positions, "completion_mask": completion_mask}


def make_trainer(cfg, common: dict, model, tokenizer, train_ds, peft_config, callbacks):
    import torch
    import torch.nn.functional as F
    from transformers import Trainer, TrainingArguments

    from distill.stages.train import methods

    beta, weight = methods.beta_of(cfg), cfg.logit_kl_weight

    class LogitDistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            mask = inputs["completion_mask"]
            index = inputs["positions"].unsqueeze(-1).expand(-1, -1, logits.size(-1))
            picked = logits.gather(1, index)[mask].float()                 # (N, V): one row per completion token
            logprobs = F.log_softmax(picked, dim=-1)
            targets = inputs["input_ids"].gather(1, (inputs["positions"] + 1).clamp(
                max=inputs["input_ids"].size(1) - 1))[mask]
            cross_entropy = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            valid = torch.isfinite(inputs["top_logprobs"][mask])
            divergence = sparse_divergence(logprobs, inputs["top_ids"][mask], inputs["top_logprobs"][mask],
                                           valid, beta)
            loss = ((1 - weight) * cross_entropy + weight * divergence).mean()
            mode = "train" if model.training else "eval"
            self._distill_log.setdefault(mode, []).append((cross_entropy.mean().item(), divergence.mean().item()))
            return (loss, logits) if return_outputs else loss

        def log(self, logs, start_time=None):
            entries = self._distill_log.pop("train", [])
            if entries and "loss" in logs:
                logs["cross_entropy"] = sum(e[0] for e in entries) / len(entries)
                logs["divergence"] = sum(e[1] for e in entries) / len(entries)
            super().log(logs, start_time)

    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    args = TrainingArguments(**common, remove_unused_columns=False, eval_strategy="no")
    trainer = LogitDistillationTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                                       data_collator=lambda rows: collate(rows, tokenizer.pad_token_id),
                                       callbacks=callbacks)
    trainer._distill_log = {}
    return trainer
