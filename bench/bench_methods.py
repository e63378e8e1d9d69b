"""On-policy distillation and GRPO steps through distill against TRL's trainers driven directly (same models,
batch, lengths), on tiny random models from a config (CPU). The issue's bar: distill >= 0.95x TRL.

    python bench/run.py --only methods
    python bench/bench_methods.py            # prints the rows

* on-policy: distill's `ContextDistillationTrainer` (TRL `DistillationTrainer` + a teacher-only prompt + GKD's
  lambda) vs `DistillationTrainer` itself; tokens/s = generated completion tokens per second of training.
* GRPO: `GRPOTrainer` with distill's rewards (accuracy through the grader's killable worker pool + format) vs
  `GRPOTrainer` with a plain Python reward of the same shape; completions per second.
Alternated A/B rounds, medians; the machine's other load shows up as spread.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

ROUNDS, STEPS, BATCH, COMPLETION = 3, 4, 8, 32


def _tiny(directory: Path, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from distill.models.bundled import materialize

    tokenizer = AutoTokenizer.from_pretrained(materialize())
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512,
                                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True))
    model.save_pretrained(directory)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(directory)
    return directory


def _prompts(n: int):
    import datasets

    rows = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "answer": str(a + b),
             "completion": f"<think>\n{a}+{b}={a + b}\n</think>\n\n\\boxed{{{a + b}}}"}
            for a in range(1, 9) for b in range(1, 9)][:n]
    return datasets.Dataset.from_list(rows)


def _common(out: str) -> dict:
    return dict(output_dir=out, per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=1e-5,
                logging_steps=1, save_strategy="no", report_to=[], bf16=False, gradient_checkpointing=False,
                disable_tqdm=True, seed=0, max_completion_length=COMPLETION)


def _time(trainer) -> float:
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def _onpolicy_round(student: Path, teacher: Path, ours: bool) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DistillationConfig, DistillationTrainer

    from distill.stages.train.onpolicy import make_trainer_class

    tokenizer = AutoTokenizer.from_pretrained(student)
    with tempfile.TemporaryDirectory() as out:
        args = DistillationConfig(**_common(out), temperature=1.0, beta=1.0)
        kwargs = dict(model=AutoModelForCausalLM.from_pretrained(student),
                      teacher_model=AutoModelForCausalLM.from_pretrained(teacher), args=args,
                      train_dataset=_prompts(BATCH * STEPS), processing_class=tokenizer)
        trainer = make_trainer_class()[0](**kwargs, lmbda=1.0) if ours else DistillationTrainer(**kwargs)
        seconds = _time(trainer)
        tokens = trainer.state.num_input_tokens_seen
    return tokens / seconds


def _grpo_round(student: Path, ours: bool) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from distill.stages.train import rewards
    from distill.verify.grader import GradeConfig

    def plain_accuracy(completions, answer, **kwargs):  # the same shape, no grader
        return [1.0 if f"\\boxed{{{a}}}" in (c[0]["content"] if isinstance(c, list) else c) else 0.0
                for c, a in zip(completions, answer, strict=True)]

    if ours:
        functions, weights = rewards.make_reward_functions(["accuracy:1", "format:0.2"], GradeConfig(),
                                                           rewards.RewardColumns(), max_completion_length=COMPLETION,
                                                           num_proc=1)
    else:
        functions, weights = [plain_accuracy], [1.0]
    tokenizer = AutoTokenizer.from_pretrained(student)
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(**_common(out), num_generations=4, reward_weights=weights, temperature=1.0)
        trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(student), reward_funcs=functions, args=args,
                              train_dataset=_prompts(BATCH * STEPS), processing_class=tokenizer)
        seconds = _time(trainer)
    for function in functions:
        getattr(function, "close", lambda: None)()
    return BATCH * STEPS / seconds


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as root:
        student, teacher = _tiny(Path(root) / "student", 0), _tiny(Path(root) / "teacher", 1)
        onpolicy = {True: [], False: []}
        grpo = {True: [], False: []}
        for _ in range(ROUNDS):
            for ours in (False, True):
                onpolicy[ours].append(_onpolicy_round(student, teacher, ours))
                grpo[ours].append(_grpo_round(student, ours))
    rows = []
    for name, data, unit in (("on-policy step", onpolicy, "tokens/s"), ("GRPO step", grpo, "completions/s")):
        trl, ours = statistics.median(data[False]), statistics.median(data[True])
        spread = f"TRL {min(data[False]):.0f}-{max(data[False]):.0f}, distill {min(data[True]):.0f}-{max(data[True]):.0f}"
        rows += [{"benchmark": name, "metric": "TRL directly", "value": trl, "unit": unit,
                  "notes": f"tiny 4-layer Qwen2, batch {BATCH}, {COMPLETION} new tokens, median of {ROUNDS}"},
                 {"benchmark": name, "metric": "distill", "value": ours, "unit": unit, "notes": spread},
                 {"benchmark": name, "metric": "distill / TRL", "value": ours / trl, "unit": "x",
                  "notes": "bar: >= 0.95" + ("; rewards: grader accuracy + format vs a plain Python accuracy"
                                             if name.startswith("GRPO") else "")}]
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
