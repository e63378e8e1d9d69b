"""The training methods beyond SFT: what each needs, checked before anything loads, and their prompt data.

    distill train --method on-policy --model sft-student@latest --teacher Qwen/QwQ-32B --dataset filtered@latest
    distill train --method on-policy --model bundled --teacher bundled --teacher-few-shot data/demo/few_shot.json
    distill train --method logit --dataset traces-with-logprobs@latest          # after generate --logprobs K
    distill train --method grpo --model sft-student@latest --dataset filtered@latest --reward accuracy:1 --reward format:0.2

on-policy and grpo train on prompts: one row per distinct problem of the inputs (traces, filtered or imported
artifacts, files, Hub ids), each as the conversation the traces were made with (system prompt, prompt template;
few-shot turns dropped unless --keep-few-shot), plus what the method needs beside it: the teacher's own
prompt (on-policy), the dataset's teacher completion (on-policy with --lmbda < 1), the reference answer and
domain (grpo).
"""

from __future__ import annotations

import json
import math
from typing import Any

from distill.errors import UserError

METHODS = ("sft", "on-policy", "logit", "grpo")
ROLLOUT_ENGINES = ("auto", "transformers", "vllm", "vllm-server")
GRPO_LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
ONLY_ON_POLICY = ("teacher", "teacher_revision", "teacher_system_prompt", "teacher_few_shot", "teacher_base_url",
                  "cross_tokenizer")


def validate(cfg) -> None:
    """Method options that would train something else than asked: one line each, before anything loads."""
    if cfg.method not in METHODS:
        raise UserError(f"method {cfg.method!r} unknown: use one of {', '.join(METHODS)}")
    if cfg.method != "on-policy":
        given = [k for k in ONLY_ON_POLICY if getattr(cfg, k)]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} is for --method on-policy (this run is {cfg.method})")
    if cfg.method == "on-policy" and not (cfg.teacher or cfg.teacher_base_url):
        raise UserError("--method on-policy needs --teacher (a model ref: Hub id, local folder, NAME@vN, bundled) "
                        "or --teacher-base-url (a vLLM server)")
    if cfg.cross_tokenizer and cfg.teacher_base_url:
        raise UserError("--cross-tokenizer needs a local --teacher, not --teacher-base-url: universal logit "
                        "distillation compares the teacher's whole next-token distribution at each of its own "
                        "tokens, which a server's top-K prompt logprobs do not give")
    if cfg.cross_tokenizer and cfg.beta is not None:
        raise UserError(f"--beta {cfg.beta} does not apply with --cross-tokenizer: its loss (universal logit "
                        "distillation) matches sorted probabilities, which has no forward or reverse direction")
    if not 1 <= cfg.teacher_logprobs <= 100:
        raise UserError(f"teacher_logprobs {cfg.teacher_logprobs} must be in [1, 100]")
    beta = beta_of(cfg)
    if cfg.method in ("on-policy", "logit") and not 0 <= beta <= 1:
        raise UserError(f"beta {beta} must be in [0, 1] for --method {cfg.method} (0 forward KL ... 1 reverse KL)")
    if cfg.method == "grpo" and not (math.isfinite(beta) and beta >= 0):
        raise UserError(f"beta {beta} must be >= 0 for --method grpo (the KL coefficient)")
    checks = [("lmbda", cfg.lmbda, 0 <= cfg.lmbda <= 1), ("logit_kl_weight", cfg.logit_kl_weight,
              0 <= cfg.logit_kl_weight <= 1), ("max_completion_length", cfg.max_completion_length,
              1 <= cfg.max_completion_length <= 1_000_000), ("rollout_temperature", cfg.rollout_temperature,
              0 < cfg.rollout_temperature <= 10), ("epsilon", cfg.epsilon, 0 < cfg.epsilon < 10)]
    if cfg.epsilon_high is not None:
        checks.append(("epsilon_high", cfg.epsilon_high, cfg.epsilon <= cfg.epsilon_high < 10))
    for key, value, ok in checks:
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise UserError(f"{key} {value} is out of range (see `distill train --help`)")
    if cfg.rollout_engine not in ROLLOUT_ENGINES:
        raise UserError(f"rollout_engine {cfg.rollout_engine!r} unknown: use one of {', '.join(ROLLOUT_ENGINES)}")
    if cfg.method == "grpo":
        if cfg.num_generations < 2:
            raise UserError(f"num_generations {cfg.num_generations} must be at least 2: GRPO compares completions of "
                            "the same prompt (a group of one has no advantage)")
        if cfg.loss_type not in GRPO_LOSSES:
            raise UserError(f"loss_type {cfg.loss_type!r} unknown: use one of {', '.join(GRPO_LOSSES)}")
        if cfg.scale_rewards not in SCALE_REWARDS:
            raise UserError(f"scale_rewards {cfg.scale_rewards!r} unknown: use one of {', '.join(SCALE_REWARDS)}")
        from distill.stages.train.rewards import parse_reward_specs

        parse_reward_specs(cfg.reward)
        pass_rate_range(cfg)
    if cfg.method in ("on-policy", "grpo") and cfg.packing:
        raise UserError(f"--packing is for sft and logit: --method {cfg.method} trains on sampled completions")


def beta_of(cfg) -> float:
    """--beta, else the method's published default: reverse KL on-policy, forward KL on stored top-K
    logprobs (the teacher's distribution is what was stored), no KL penalty in GRPO (DAPO, Dr. GRPO)."""
    if cfg.beta is not None:
        return cfg.beta
    return {"on-policy": 1.0, "logit": 0.0, "grpo": 0.0}.get(cfg.method, 0.0)


def pass_rate_range(cfg) -> tuple[float, float] | None:
    if not cfg.pass_rate_range:
        return None
    try:
        low, high = (float(x) for x in str(cfg.pass_rate_range).split(","))
    except ValueError:
        raise UserError(f"pass_rate_range {cfg.pass_rate_range!r} must be LO,HI (e.g. 0.1,0.9)") from None
    if not (0 <= low <= high <= 1):
        raise UserError(f"pass_rate_range {cfg.pass_rate_range!r} must satisfy 0 <= LO <= HI <= 1")
    return low, high


def use_vllm(cfg) -> tuple[bool, str]:
    """(sample with vLLM, its mode) for --rollout-engine: colocate on one GPU; `vllm-server` for a
    `trl vllm-serve` server; transformers' generate on CPU (vLLM's weight sync needs CUDA)."""
    import importlib.util

    import torch

    if cfg.rollout_engine == "transformers":
        return False, "colocate"
    if cfg.rollout_engine == "vllm-server":
        return True, "server"
    gpu = torch.cuda.is_available()
    if cfg.rollout_engine == "vllm" and not gpu:
        raise UserError("--rollout-engine vllm needs a GPU (TRL syncs the student's weights into vLLM over CUDA): "
                        "use transformers on CPU")
    return bool(gpu and importlib.util.find_spec("vllm")), "colocate"


# ---------------------------------------------------------------------------- prompt rows


def prompt_messages(row: dict, fmt: str, cfg, default_system: str | None, prompt_template: str | None
                    ) -> list[dict] | None:
    """The conversation up to (not including) the answer: what the student is prompted with. Pure."""
    from distill.stages.train.data import _clean, apply_system, problem_turns, prompt_column_turns

    messages = prompt_column_turns(row.get("prompt"), cfg)
    if messages is None and fmt in ("messages", "conversations"):
        messages = _clean(row.get(fmt))
        while messages and messages[-1]["role"] != "user":
            messages.pop()
    elif messages is None:
        messages = problem_turns(row, cfg, prompt_template)
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        return None
    return apply_system(messages, row, cfg, default_system)


def teacher_messages(student: list[dict], system_prompt: str | None, few_shot: list[dict] | None) -> list[dict]:
    """The teacher's context: its own system prompt and worked examples, then the student's last user turn."""
    shots = list(few_shot or [])
    shot_system = shots[:1] if shots and shots[0]["role"] == "system" else []
    shots = shots[len(shot_system):]
    if system_prompt:
        system = [{"role": "system", "content": system_prompt}]
    else:
        system = shot_system or [m for m in student if m["role"] == "system"][:1]
    return system + shots + [m for m in student if m["role"] != "system"]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(value)


def _detect(data, cfg, ref: str) -> str:
    columns = set(data.column_names)
    if "prompt" in columns or cfg.problem_column in columns:
        return "prompt"
    for fmt in ("messages", "conversations"):
        if fmt in columns:
            return fmt
    raise UserError(f"dataset {ref} has no prompts: it needs a 'prompt' or '{cfg.problem_column}' column (or "
                    f"'messages' / 'conversations'); available columns: {', '.join(sorted(columns))}")


def build_prompt_rows(inputs, cfg, default_system: str | None, prompt_template: str | None,
                      teacher_few_shot: list[dict] | None = None, pass_rates: dict | None = None):
    """(datasets.Dataset of prompt rows, info): one row per distinct problem text of all inputs."""
    import datasets

    from distill.stages.train.data import format_completion

    rows: list[dict] = []
    seen: set[str] = set()
    info = {"datasets": [], "rows_unusable": 0, "duplicate_prompts": 0, "dropped_by_pass_rate": 0,
            "without_answer": 0}
    band = pass_rate_range(cfg)
    for item in inputs:
        fmt = _detect(item.data, cfg, item.spec)
        used = 0
        for row in item.data:
            messages = prompt_messages(row, fmt, cfg, default_system, prompt_template)
            if messages is None:
                info["rows_unusable"] += 1
                continue
            key = messages[-1]["content"]
            if key in seen:
                info["duplicate_prompts"] += 1
                continue
            seen.add(key)
            if band and pass_rates is not None:
                rate = pass_rates.get(key)
                if rate is None or not band[0] <= rate <= band[1]:
                    info["dropped_by_pass_rate"] += 1
                    continue
            completion = row.get(cfg.completion_column)
            out = {"prompt": messages, "completion": format_completion(completion)[0]
                   if isinstance(completion, str) and completion.strip() else None}
            if cfg.method == "on-policy" and (cfg.teacher_system_prompt or teacher_few_shot):
                out["teacher_prompt"] = teacher_messages(messages, cfg.teacher_system_prompt, teacher_few_shot)
            if cfg.method == "grpo":
                answer = row.get(cfg.answer_column, row.get("solution"))
                info["without_answer"] += answer is None
                out.update(answer=_text(answer), domain=_text(row.get(cfg.domain_column)) or "math",
                           problem=_text(row.get(cfg.problem_column)) or key)
                for column in ("test_cases", "fn_name", "starter_code", "choices"):
                    if column in row:  # one arrow type across rows: structured cells as JSON text
                        out[column] = json.dumps(row[column]) if isinstance(row[column], (list, dict)) else \
                            _text(row[column])
            rows.append(out)
            used += 1
        info["datasets"].append({"spec": item.spec, "weight": item.weight, "format": fmt, "rows": len(item.data),
                                 "train_rows": used, "source": item.source.info})
    if not rows:
        raise UserError(f"no prompts to train on in {', '.join(i.spec for i in inputs)}"
                        + (f" ({info['dropped_by_pass_rate']} outside --pass-rate-range {cfg.pass_rate_range})"
                           if info["dropped_by_pass_rate"] else ""))
    if cfg.method == "on-policy" and cfg.lmbda < 1 and any(r["completion"] is None for r in rows):
        missing = sum(r["completion"] is None for r in rows)
        raise UserError(f"--lmbda {cfg.lmbda} trains {1 - cfg.lmbda:.0%} of batches on the dataset's teacher "
                        f"completions, but {missing} of {len(rows)} prompts have no '{cfg.completion_column}'")
    if cfg.method == "grpo" and info["without_answer"] == len(rows) and any(
            r.startswith("accuracy") for r in cfg.reward):
        raise UserError(f"the accuracy reward needs reference answers: no '{cfg.answer_column}' (or 'solution') "
                        "column in the prompts; pass --answer-column")
    keys = set().union(*(r.keys() for r in rows))
    table = {k: [r.get(k) for r in rows] for k in sorted(keys)}
    data = datasets.Dataset.from_dict(table).shuffle(seed=cfg.seed)
    if cfg.limit:
        data = data.select(range(min(cfg.limit, len(data))))
    return data, info


def measured_pass_rates(inputs, cfg, default_system: str | None, prompt_template: str | None
                        ) -> dict[str, float] | None:
    """Problem text -> share of its graded samples that were correct, from filtered artifacts (their kept and
    rejected splits hold every sample's verdict). None when no input carries verdicts."""
    rates: dict[str, list[int]] = {}
    found = False
    for item in inputs:
        artifact = item.source.artifact
        if artifact is None or artifact.kind != "filtered":
            continue
        for split in ("train", "rejected"):
            try:
                data = artifact.load_dataset(split)
            except UserError:
                continue
            if "verdict" not in data.column_names:
                continue
            found = True
            fmt = _detect(data, cfg, item.spec)
            for row in data:
                messages = prompt_messages(row, fmt, cfg, default_system, prompt_template)
                if messages:
                    tally = rates.setdefault(messages[-1]["content"], [0, 0])
                    tally[0] += row["verdict"] == "correct"
                    tally[1] += 1
    if not found:
        return None
    return {k: hit / total for k, (hit, total) in rates.items() if total}
