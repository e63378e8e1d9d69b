"""The model card (README.md) of a checkpoint: student, teacher, data, recipe, results, how to use it."""

from __future__ import annotations

import json

from distill import artifacts


def find_teacher(artifact: artifacts.Artifact | None) -> str | None:
    """The teacher named in the lineage (generate's config / manifest), nearest first."""
    def teacher_of(manifest: dict) -> str | None:
        config = manifest.get("config") or {}
        for value in (manifest.get("teacher"), config.get("teacher"), (manifest.get("stats") or {}).get("teacher")):
            if isinstance(value, str) and value:
                return value
        return None

    found = artifacts.nearest_in_lineage(artifact, teacher_of)
    return found[0] if found else None


def model_card(*, name: str, version: str, base_model: str, teachers: list[str], datasets: list[dict],
               cfg: dict, metrics: dict, conversation: dict, adapter: bool, merged: bool,
               licenses: dict[str, str], stats: dict, method: dict | None = None) -> str:
    license_line = f"license: {next(iter(licenses.values()))}\n" if len(set(licenses.values())) == 1 else ""
    hub_datasets = [d["source"].get("id") for d in datasets if d.get("source", {}).get("type") == "hub"]
    front = (f"---\n{license_line}base_model: {base_model}\n" + "library_name: " + ("peft" if adapter else
             "transformers") + "\ntags:\n- distill\n- trl\n- sft\n- reasoning\n- knowledge-distillation\n"
             + ("datasets:\n" + "".join(f"- {d}\n" for d in hub_datasets) if hub_datasets else "") + "---\n\n")
    teacher_text = ", ".join(f"`{t}`" for t in teachers) or "an unrecorded teacher"
    data_lines = "\n".join(
        f"- `{d['source'].get('ref') or d['source'].get('id') or d['source'].get('path') or d['spec']}` "
        f"(weight {d.get('weight')}, {d.get('format')} rows, {d.get('train_rows')} used for training of {d.get('rows')}"
        + (f", sha256 `{d['source'].get('sha256', '')[:16]}`" if d.get("source", {}).get("sha256") else "") + ")"
        for d in datasets)
    weights = ("QLoRA (4-bit NF4 base)" if cfg.get("load_in_4bit") else "LoRA") if adapter else "full fine-tune"
    keys = ("recipe", "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_ratio",
            "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing", "truncate",
            "precision", "lora_r", "lora_alpha", "seed")
    hyper = "\n".join(f"| {k} | {cfg.get(k)} |" for k in keys if k in cfg and (adapter or not k.startswith("lora")))
    results = "\n".join(f"| {k} | {round(v, 4) if isinstance(v, float) else v} |" for k, v in metrics.items())
    system = conversation.get("system_prompt")
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": "What is 7 + 5?"}]
    load_dir = "merged" if merged else "model"
    usage = (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
             f"path = \"{load_dir}\"  # this folder of the checkpoint\n"
             "tokenizer = AutoTokenizer.from_pretrained(path)\n")
    if adapter and not merged:
        usage += ("from peft import AutoPeftModelForCausalLM\n"
                  "model = AutoPeftModelForCausalLM.from_pretrained(path)  # base + adapter\n")
    else:
        usage += "model = AutoModelForCausalLM.from_pretrained(path)\n"
    usage += (f"messages = {json.dumps(messages, ensure_ascii=False)}\n"
              "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\","
              " return_dict=True)\n"
              "out = model.generate(**inputs, max_new_tokens=4096)  # generation_config: temperature "
              f"{cfg.get('temperature')}, top_p {cfg.get('top_p')}\n"
              "print(tokenizer.decode(out[0][inputs['input_ids'].shape[1]:], skip_special_tokens=True))\n```\n")
    how = _how(method or {"name": "sft"}, weights, teacher_text)
    method_rows = "".join(f"| {k} | {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v} |\n"
                          for k, v in (method or {}).items() if k not in ("teacher_context",))
    return (
        front + f"# {name} {version}\n\n"
        f"`{base_model}` {how}, made with `distill train`. The student answers "
        "with `<think>\\n…\\n</think>\\n\\n` reasoning, then the answer.\n\n"
        + (f"## Method\n| key | value |\n|---|---|\n{method_rows}\n" if method and method.get("name") != "sft" else "")
        +
        f"## Data\n{data_lines}\n\nTokenized: {stats.get('kept')} training examples, "
        f"{stats.get('trained_tokens')} trained tokens (assistant turns only); dropped as longer than "
        f"{cfg.get('max_length')} tokens: {stats.get('dropped_too_long', 0)}"
        + (f", truncated: {stats.get('truncated')}" if cfg.get("truncate") else "") + ".\n\n"
        f"## Conversation format\nChat template: {conversation.get('source')} "
        f"(sha256 `{(conversation.get('chat_template_sha256') or '')[:16]}`), saved with the tokenizer. "
        f"System prompt: {json.dumps(system) if system else 'none (the template default)'}. Prompt each problem the "
        "way the traces were made (`prompt_template` in manifest.json).\n\n"
        f"## Training\n| key | value |\n|---|---|\n{hyper}\n\n"
        f"## Results\n| metric | value |\n|---|---|\n{results or '| n/a | |'}\n\n"
        "![loss curve](loss_curve.png)\n\n"
        f"## Use\nSampling as recommended for distilled reasoning models (generation_config.json): temperature "
        f"{cfg.get('temperature')}, top-p {cfg.get('top_p')}, no system prompt beyond the one above.\n\n{usage}\n"
        "## Licences\n" + ("\n".join(f"- {k}: {v}" for k, v in licenses.items()) or "- unknown") + "\n"
    )


def _how(method: dict, weights: str, teacher_text: str) -> str:
    """One sentence: how the student was trained."""
    name = method.get("name")
    if name == "on-policy":
        context = method.get("teacher_context") or {}
        extra = " given a context the student never sees (context distillation)" if (
            context.get("system_prompt") or context.get("few_shot")) else ""
        cross = method.get("cross_tokenizer")
        loss = (f"TRL's ULD loss across tokenizers, {cross.get('alignment')} alignment" if isinstance(cross, dict)
                else f"generalized JSD beta {method.get('beta')}")
        return (f"distilled on-policy from {teacher_text}{extra} ({weights}, TRL DistillationTrainer, {loss}, "
                f"lambda {method.get('lmbda')}): the student sampled, the teacher scored every token")
    if name == "logit":
        return (f"distilled from {teacher_text}'s stored top-{method.get('top_k')} logprobs ({weights}): "
                f"cross-entropy plus divergence (beta {method.get('beta')}, weight {method.get('kl_weight')})")
    if name == "grpo":
        return (f"trained with GRPO ({weights}, TRL GRPOTrainer) on verifiable rewards {method.get('rewards')}, "
                f"{method.get('num_generations')} samples per prompt, loss {method.get('loss_type')}")
    return (f"distilled from {teacher_text}: supervised fine-tuning ({weights}, TRL SFTTrainer) on the teacher's "
            "reasoning traces")
