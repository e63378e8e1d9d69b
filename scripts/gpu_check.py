"""`make gpu-check`: what one GPU does on the training paths distill uses, as one table (<= 8 min on an H100/H200).

    python scripts/gpu_check.py --out gpu_check.json          # = make gpu-check
    python scripts/gpu_check.py --only sft --only grpo        # some rows (sft, lora, qlora, distill, grpo)
    python scripts/gpu_check.py --tiny --out /tmp/check.json  # the same code paths on CPU, tiny models, seconds

Needs only torch, transformers, accelerate and peft; TRL + datasets (distill and grpo rows: TRL's
DistillationTrainer / GRPOTrainer) and bitsandbytes (qlora) when they import, else the table says so (a minimal
loop of ours replaces TRL; qlora is skipped). No downloads: random-weight Qwen2.5-1.5B- and 7B-shaped models built
from a config on the GPU, random token ids (an in-memory tokenizer maps "t17" to id 17 where TRL wants text).
All bf16 (bf16 weights under autocast, as `distill train --precision bf16` on a GPU). sft: full fine-tune, fused
AdamW, on the same length-skewed sequences (median 600, 64-2048 tokens, ~4k real tokens a step) padded or packed
(padding-free rows with position_ids, as TRL's bfd packing), gradient checkpointing off / on; tokens/s counts
real tokens, so padding shows as lost throughput. lora / qlora: 7B-shaped, r=16 on all linear layers, checkpointing,
packed; qlora on the NF4 double-quantized base of --load-in-4bit. distill: the 1.5B-shaped student samples
(transformers generate), the 7B-shaped teacher scores, generalized JSD (beta 0.5) backward. grpo: G sampled
completions per prompt, clipped-ratio loss. Peak memory: torch.cuda.max_memory_allocated after
reset_peak_memory_stats (the row's weights, optimizer state, activations); on CPU the process's RSS high-water mark.

MFU = 6 x N x tokens/s / peak dense bf16 FLOP/s, N the parameters that multiply (all but the input-embedding
lookup); peak by torch.cuda.get_device_name: H100 SXM and H200 989 TFLOP/s, H100 / H200 NVL 835, H100 PCIe 756,
A100 312; other GPUs get no MFU unless --peak-tflops. Like the usual convention it leaves out attention (12 x
layers x hidden x sequence FLOPs a token) and checkpointing's recomputed forward. Anchors: the 7B shape has
N ~ 7.1e9, so 100 % MFU on one H100 is ~23k tok/s by this count, ~21k (4k-token sequences) to ~19k (8k) counting
attention: the published 7B SFT ceiling of ~18-20k tok/s/GPU. Tuned multi-GPU fine-tunes report roughly 35-55 %
MFU; far below ~30 % on the packed rows points at the setup (no flash/efficient attention kernel, CPU-bound
steps, a throttled GPU). One GPU holds a 7B full fine-tune's bf16 weights, gradients and AdamW state (~61 GB)
plus activations only with checkpointing on an 80 GB H100: such rows read "oom", a result, not a failure.
LoRA rows are about memory (QLoRA 7B well under 24 GB is the qwen-7b-qlora recipe's premise), not MFU.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import math
import random
import resource
import statistics
import sys
import tempfile
import time

OPTIONAL = ("trl", "datasets", "bitsandbytes")
SHAPES = {  # the published configs of Qwen2.5-1.5B-Instruct and Qwen2.5-7B-Instruct
    "small": ("qwen2.5-1.5b", dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                                    num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)),
    "large": ("qwen2.5-7b", dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                                  num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)),
}
TINY_SHAPES = {
    "small": ("tiny-tied", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True)),
    "large": ("tiny-untied", dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False)),
}
# Sequence lengths (log-normal median, min, max), real tokens per SFT step, SFT steps timed, and the rollout
# rows' prompts, prompt and completion tokens, GRPO group size and trainer steps (the first one is a warm-up).
FULL = dict(lengths=(600, 64, 2048), tokens_per_step=4096, sft_steps=8, prompts=4, prompt_tokens=128,
            completion_tokens=256, group=8, rollout_steps=3)
TINY = dict(lengths=(24, 8, 64), tokens_per_step=256, sft_steps=2, prompts=2, prompt_tokens=8, completion_tokens=8,
            group=4, rollout_steps=2)
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("H100", 989e12),
                   ("H200", 989e12), ("A100", 312e12))  # most specific name first


def peak_flops(device_name: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16_FLOPS if name in device_name), None)


def mfu(matmul_params: int, tokens_per_s: float, peak: float | None) -> float | None:
    return 6 * matmul_params * tokens_per_s / peak if peak else None


class Check:
    """Device, plan and helpers shared by every row."""

    def __init__(self, args):
        import torch

        self.torch = torch
        self.plan = TINY if args.tiny else FULL
        self.shapes = TINY_SHAPES if args.tiny else SHAPES
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device_name = torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu"
        self.peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(self.device_name)
        self.have = {name: name not in args.without and importlib.util.find_spec(name) is not None for name in OPTIONAL}
        self.cuda = self.device.type == "cuda"
        self.attn = "flash_attention_2" if self.cuda and importlib.util.find_spec("flash_attn") else "sdpa"

    def sync(self, reset_peak: bool = False):
        """Wait for the GPU (before reading a clock); reset_peak: start a new max_memory_allocated window."""
        if self.cuda:
            self.torch.cuda.synchronize()
            if reset_peak:
                self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:  # on CPU the process's RSS high-water mark (ru_maxrss: KiB on Linux)
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def free(self):
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def autocast(self):
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def config(self, key: str, vocab_size: int | None = None):
        from transformers import Qwen2Config

        shape = dict(self.shapes[key][1], **({"vocab_size": vocab_size} if vocab_size else {}))
        vocab = shape["vocab_size"]
        return Qwen2Config(**shape, max_position_embeddings=32768, pad_token_id=vocab - 2, eos_token_id=vocab - 1,
                           bos_token_id=None)

    def build(self, key: str, vocab_size: int | None = None):
        """A random-weight model made directly on the device (no host copy, no download)."""
        from transformers import AutoModelForCausalLM

        self.torch.manual_seed(0)
        with self.torch.device(self.device):
            return AutoModelForCausalLM.from_config(self.config(key, vocab_size), dtype=self.torch.bfloat16,
                                                    attn_implementation=self.attn)

    def sequences(self, vocab: int, steps: int, seed: int = 0) -> list[list[int]]:
        median, low, high = self.plan["lengths"]
        rng = random.Random(seed)
        total, out = 0, []
        while total < self.plan["tokens_per_step"] * steps:
            length = int(min(high, max(low, rng.lognormvariate(math.log(median), 0.6))))
            out.append([rng.randrange(vocab - 2) for _ in range(length)])
            total += length
        return out

    def padded_batches(self, sequences, pad: int) -> list[dict]:
        torch = self.torch
        size = max(1, round(self.plan["tokens_per_step"] / statistics.mean(map(len, sequences))))
        batches = []
        for start in range(0, len(sequences), size):
            chunk = sequences[start:start + size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(chunk):
                ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
            batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
        return [{k: v.to(self.device) for k, v in b.items()} for b in batches]

    def packed_batches(self, sequences) -> list[dict]:
        """Padding-free batches: sequences end to end in one row, position_ids restarting at each (transformers
        then masks attention per sequence), the first token of each out of the loss, as TRL's collator does."""
        torch = self.torch
        batches, chunk = [], []
        for seq in sequences + [None]:
            if seq is None or (chunk and sum(map(len, chunk)) + len(seq) > self.plan["tokens_per_step"]):
                ids = torch.tensor([t for s in chunk for t in s])[None]
                positions = torch.cat([torch.arange(len(s)) for s in chunk])[None]
                batches.append({"input_ids": ids, "position_ids": positions,
                                "labels": ids.masked_fill(positions == 0, -100)})
                chunk = []
            if seq is not None:
                chunk.append(seq)
        return [{k: v.to(self.device) for k, v in b.items()} for b in batches]

    def tokenizer(self, vocab: int):
        """A word-level tokenizer: "t17" <-> id 17, <pad> and <eos> the last two ids (TRL's trainers take text)."""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        words = {f"t{i}": i for i in range(vocab - 2)} | {"<pad>": vocab - 2, "<eos>": vocab - 1}
        backend = Tokenizer(models.WordLevel(vocab=words, unk_token="<pad>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
        tokenizer.padding_side = "left"
        return tokenizer

    def prompt_ids(self, vocab: int, count: int, seed: int = 1):
        generator = self.torch.Generator().manual_seed(seed)
        return self.torch.randint(0, vocab - 2, (count, self.plan["prompt_tokens"]), generator=generator)


def matmul_params(model) -> int:
    embedding = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is embedding
    return sum(p.numel() for p in model.parameters()) - (0 if tied else embedding.numel())


def train_steps(check: Check, model, optimizer, batches) -> tuple[float, float]:
    """(seconds for all batches, peak GiB) after one untimed warm-up step on the first batch."""
    torch = check.torch

    def step(batch):
        with check.autocast():
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # kernels, allocator, optimizer state
    check.sync(reset_peak=True)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    check.sync()
    return time.perf_counter() - start, check.peak_gib()


def optimizer_for(check: Check, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return check.torch.optim.AdamW(params, lr=1e-6, fused=check.cuda)


def guarded(check: Check, head: dict, measure) -> dict:
    """A row: head (row, model, setup, impl) and the figures measure() returns; running out of memory or an
    error becomes the row's status instead of ending the check."""
    result = {**head, "status": "ok", "tokens_per_s": None, "mfu": None, "step_s": None, "peak_memory_gib": None,
              "notes": ""}
    try:
        return result | measure()
    except check.torch.cuda.OutOfMemoryError:
        result |= {"status": "oom", "notes": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - a broken row must not hide the others' figures
        result |= {"status": "error", "notes": f"{type(exc).__name__}: {exc}"[:300]}
    check.free()
    return result


def sft_figures(check: Check, model, optimizer, batches, real: int) -> dict:
    seconds, peak = train_steps(check, model, optimizer, batches)
    positions = sum(b["input_ids"].numel() for b in batches)
    return {"tokens_per_s": real / seconds, "mfu": mfu(matmul_params(model), real / seconds, check.peak),
            "step_s": seconds / len(batches), "peak_memory_gib": peak,
            "notes": f"{len(batches)} steps, {real} tokens, {1 - real / positions:.0%} padding"}


def sft_rows(check: Check, key: str) -> list[dict]:
    model = check.build(key)
    model.config.use_cache = False
    optimizer = optimizer_for(check, model)
    sequences = check.sequences(model.config.vocab_size, check.plan["sft_steps"])
    layouts = {"padded": check.padded_batches(sequences, model.config.pad_token_id),
               "packed": check.packed_batches(sequences)}
    rows = []
    for layout, batches in layouts.items():
        for checkpointing in (False, True):
            if checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_disable()
            head = {"row": "sft", "model": check.shapes[key][0], "impl": "torch loop",
                    "setup": f"{layout}, grad ckpt {'on' if checkpointing else 'off'}"}
            measure = functools.partial(sft_figures, check, model, optimizer, batches, sum(map(len, sequences)))
            rows.append(guarded(check, head, measure))
            optimizer.zero_grad(set_to_none=True)
    del model, optimizer, layouts
    check.free()
    return rows


def adapter_figures(check: Check, quantized: bool) -> dict:
    """LoRA r=16 on every linear layer of the large shape, gradient checkpointing, packed; QLoRA on 4-bit NF4."""
    from peft import LoraConfig, get_peft_model

    torch = check.torch
    model = check.build("large")
    if quantized:  # quantize the random weights the way from_pretrained does for --load-in-4bit
        from transformers import BitsAndBytesConfig

        config, cls, state = model.config, type(model), {k: v.to("cpu") for k, v in model.state_dict().items()}
        del model
        check.free()
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16)
        model = cls.from_pretrained(None, config=config, state_dict=state, dtype=torch.bfloat16,
                                    quantization_config=quantization, attn_implementation=check.attn,
                                    device_map={"": check.device.index or 0} if check.cuda else {"": "cpu"})
        del state
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    if quantized:  # TRL's SFTTrainer keeps a quantized model's adapters in bf16 (QLoRA paper, section 3)
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sequences = check.sequences(model.config.vocab_size, check.plan["sft_steps"])
    batches = check.packed_batches(sequences)
    seconds, peak = train_steps(check, model, optimizer_for(check, model), batches)
    return {"tokens_per_s": sum(map(len, sequences)) / seconds, "step_s": seconds / len(batches),
            "peak_memory_gib": peak, "notes": f"{trainable:,} trainable parameters; MFU not comparable (no "
                                              "weight gradients)"}


def adapter_row(check: Check, quantized: bool) -> dict:
    head = {"row": "qlora" if quantized else "lora", "model": check.shapes["large"][0], "impl": "peft",
            "setup": "r=16 all-linear, grad ckpt on, packed" + (", NF4 double-quant base" if quantized else "")}
    if quantized and not check.have["bitsandbytes"]:
        return guarded(check, head, lambda: {"status": "skipped", "notes": "bitsandbytes not installed"})
    result = guarded(check, head, functools.partial(adapter_figures, check, quantized))
    check.free()
    return result


def step_timer(check: Check):
    """(a TrainerCallback, the list it appends each optimizer step's seconds to), device synchronized."""
    from transformers import TrainerCallback

    seconds: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            check.sync()
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            check.sync()
            seconds.append(time.perf_counter() - self.start)

    return StepTimer(), seconds


def trl_rollout(check: Check, policy, teacher, vocab: int) -> dict:
    """Steps of TRL's DistillationTrainer (teacher given) or GRPOTrainer; values from its own logs."""
    import datasets
    import trl
    from transformers.trainer_callback import PrinterCallback

    plan, tokenizer = check.plan, check.tokenizer(vocab)
    ids = check.prompt_ids(vocab, plan["prompts"] * plan["rollout_steps"]).tolist()
    common = dict(output_dir=tempfile.mkdtemp(prefix="gpu-check-"), max_steps=plan["rollout_steps"], report_to=[],
                  save_strategy="no", logging_steps=10**6, disable_tqdm=True, bf16=True, learning_rate=1e-6,
                  gradient_checkpointing=False, max_completion_length=plan["completion_tokens"], temperature=1.0,
                  use_cpu=not check.cuda, seed=0, shuffle_dataset=False)
    timer, seconds = step_timer(check)
    dataset = datasets.Dataset.from_list([{"prompt": " ".join(f"t{i}" for i in row)} for row in ids])
    if teacher is not None:
        args = trl.DistillationConfig(**common, per_device_train_batch_size=plan["prompts"], beta=0.5,
                                      remove_unused_columns=False)
        trainer = trl.DistillationTrainer(model=policy, teacher_model=teacher, args=args, train_dataset=dataset,
                                          processing_class=tokenizer, callbacks=[timer])
        rows_per_step = plan["prompts"]
    else:
        def reward(completions, **_):  # any reward with spread within a group: the share of odd token ids
            return [sum(int(w[1:]) % 2 for w in c.split() if w[1:].isdigit()) / max(1, len(c.split()))
                    for c in completions]

        rows_per_step = plan["prompts"] * plan["group"]
        args = trl.GRPOConfig(**common, per_device_train_batch_size=rows_per_step, num_generations=plan["group"])
        trainer = trl.GRPOTrainer(model=policy, reward_funcs=[reward], args=args, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
    check.sync(reset_peak=True)
    trainer.train()
    peak = check.peak_gib()
    logs = {k: v for entry in trainer.state.log_history for k, v in entry.items()}
    step_s = statistics.median(seconds[1:] or seconds)
    completion_tokens = logs.get("completions/mean_length", plan["completion_tokens"]) * rows_per_step
    return {"tokens_per_s": completion_tokens / step_s, "step_s": step_s, "peak_memory_gib": peak,
            "notes": f"{rows_per_step} completions x {logs.get('completions/mean_length', 0):.0f} tokens per step, "
                     f"median of {len(seconds[1:] or seconds)} steps after a warm-up step"}


def generalized_jsd(student_logits, teacher_logits, beta: float):
    """GKD's generalized JSD per token (beta 0 = forward KL, 1 = reverse KL); ours only where TRL is absent."""
    import torch
    import torch.nn.functional as F

    student, teacher = F.log_softmax(student_logits.float(), -1), F.log_softmax(teacher_logits.float(), -1)
    mixture = torch.logsumexp(torch.stack([student + math.log(1 - beta), teacher + math.log(beta)]), dim=0)
    kl_teacher = F.kl_div(mixture, teacher, reduction="none", log_target=True).sum(-1)
    kl_student = F.kl_div(mixture, student, reduction="none", log_target=True).sum(-1)
    return beta * kl_teacher + (1 - beta) * kl_student


def loop_rollout(check: Check, policy, teacher, vocab: int) -> dict:
    """The same step without TRL: sample with generate, score, loss, backward, AdamW step."""
    torch, plan = check.torch, check.plan
    optimizer = optimizer_for(check, policy)
    group = 1 if teacher is not None else plan["group"]
    completion = plan["completion_tokens"]
    seconds, generate_seconds = [], []
    for step in range(plan["rollout_steps"]):
        prompts = check.prompt_ids(vocab, plan["prompts"], seed=step).repeat_interleave(group, 0).to(check.device)
        check.sync(reset_peak=step == 1)
        start = time.perf_counter()
        with torch.no_grad():
            sequences = policy.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True, top_k=0,
                                        max_new_tokens=completion, min_new_tokens=completion,
                                        pad_token_id=policy.config.pad_token_id)
        check.sync()
        generate_seconds.append(time.perf_counter() - start)
        with check.autocast():
            logits = policy(sequences, logits_to_keep=completion + 1).logits[:, :-1]
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(sequences, logits_to_keep=completion + 1).logits[:, :-1]
                loss = generalized_jsd(logits, teacher_logits, beta=0.5).mean()
            else:  # GRPO: group-normalized rewards, PPO's clipped ratio against the sampling policy
                tokens = sequences[:, -completion:]
                logps = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
                rewards = (tokens % 2).float().mean(-1).view(-1, group)
                advantages = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
                advantages = advantages.view(-1, 1)
                ratio = torch.exp(logps - logps.detach())  # one update per sample: the old policy is this one
                loss = -torch.min(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages).mean()  # TRL's epsilon
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        check.sync()
        seconds.append(time.perf_counter() - start)
    step_s = statistics.median(seconds[1:] or seconds)
    rows_per_step = plan["prompts"] * group
    return {"tokens_per_s": rows_per_step * completion / step_s, "step_s": step_s, "peak_memory_gib": check.peak_gib(),
            "notes": f"{rows_per_step} completions x {completion} tokens per step, generate "
                     f"{statistics.median(generate_seconds[1:] or generate_seconds) / step_s:.0%} of the step"}


def rollout_figures(check: Check, name: str, with_trl: bool) -> dict:
    vocab = check.config("large").vocab_size  # student and teacher share a vocabulary
    policy = check.build("small", vocab_size=vocab)
    teacher = check.build("large").eval() if name == "distill" else None
    return (trl_rollout if with_trl else loop_rollout)(check, policy, teacher, vocab)


def rollout_row(check: Check, name: str) -> dict:
    plan, small, large = check.plan, check.shapes["small"][0], check.shapes["large"][0]
    with_trl = check.have["trl"] and check.have["datasets"]
    head = {"row": name, "model": f"{small} <- {large} teacher" if name == "distill" else small,
            "setup": f"{plan['prompts']} prompts x {plan['prompt_tokens']} tokens, {plan['completion_tokens']} "
                     "sampled" + (f", G={plan['group']}" if name == "grpo" else ""),
            "impl": ("TRL " + ("DistillationTrainer" if name == "distill" else "GRPOTrainer") if with_trl else
                     f"minimal loop ({'TRL' if not check.have['trl'] else 'datasets'} not installed)")}
    result = guarded(check, head, functools.partial(rollout_figures, check, name, with_trl))
    check.free()
    return result


def table(rows: list[dict]) -> str:
    def cell(value, spec):
        return "" if value is None else format(value, spec)

    lines = [("row", "model", "setup", "impl", "tok/s", "MFU", "step s", "peak GiB", "status / notes")]
    lines += [(r["row"], r["model"], r["setup"], r["impl"], cell(r["tokens_per_s"], ".0f"), cell(r["mfu"], ".1%"),
               cell(r["step_s"], ".2f"), cell(r["peak_memory_gib"], ".1f"),
               ("" if r["status"] == "ok" else r["status"] + "; ") + r["notes"]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(8)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]) for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="where to write the table as JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny models, same code paths (CPU, seconds)")
    parser.add_argument("--only", action="append", choices=("sft", "lora", "qlora", "distill", "grpo"), default=[],
                        help="run only these rows (repeatable)")
    parser.add_argument("--without", action="append", choices=OPTIONAL, default=[],
                        help="act as if this optional package were not installed (repeatable)")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s for MFU on a GPU not in the table")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import transformers

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars of the QLoRA row
    check = Check(args)
    wanted = set(args.only) or {"sft", "lora", "qlora", "distill", "grpo"}
    packages = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in check.have.items())
    print(f"gpu-check on {check.device_name} ({'tiny' if args.tiny else 'full'}; attention {check.attn}; optional "
          f"packages: {packages})", flush=True)
    rows = []
    for key in ("small", "large") if "sft" in wanted else ():
        rows += sft_rows(check, key)
    for quantized, name in ((False, "lora"), (True, "qlora")):
        if name in wanted:
            rows.append(adapter_row(check, quantized))
    for name in ("distill", "grpo"):
        if name in wanted:
            rows.append(rollout_row(check, name))
    report = {"device": check.device_name, "tiny": args.tiny, "attention": check.attn, "peak_bf16_flops": check.peak,
              "optional_packages": check.have, "torch": check.torch.__version__,
              "transformers": transformers.__version__, "seconds": round(time.perf_counter() - started, 1),
              "rows": rows}
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(table(rows))
    print(f"wrote {args.out} ({report['seconds']} s)")
    return 1 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
