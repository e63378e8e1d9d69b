"""Any OpenAI-compatible chat server: ``vllm serve``, SGLang, a router in front of many, the DeepSeek API.

One request per sample (servers without ``n > 1`` work, and a resumed run asks exactly for what is
missing), at most ``max_concurrency`` in flight, retries with exponential backoff (and the server's
``Retry-After``) on 408/409/429/5xx, timeouts and dropped connections. The API key is read from the
variable ``api_key_env`` names and kept in memory only.

The server applies its own chat template; pass ``tokenizer`` (or a local model dir as the model) to
record it, count prompt tokens and cap ``max_tokens`` by the context the server reports. A reasoning
returned separately (``message.reasoning``, older ``reasoning_content``: vLLM/SGLang
``--reasoning-parser``, the DeepSeek API) is merged back as ``<think>\\n…\\n</think>\\n\\n{content}``.
No per-request seed is sent: servers schedule requests as they come, so their samples are not
reproducible anyway (seed the server instead, e.g. ``vllm serve --seed``).

With ``SamplingConfig.logprobs = K`` each request asks for ``logprobs: true, top_logprobs: K`` (K + 1 of a
vLLM server, which is also asked for token ids: see ``engines/logprobs.py``); other servers' token strings
are mapped to ids with the local tokenizer. ``check_logprobs`` sends one 1-token request first, so a
server that returns none is an error before anything is generated.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from distill.engines import EngineConfig, Request, Sample, SamplingConfig
from distill.engines import chat as prompting
from distill.engines import logprobs as token_logprobs
from distill.errors import UserError

RETRY_STATUS = {408, 409, 425, 429}
MAX_BACKOFF_S = 60.0


class OpenAIEngine:
    """``make_engine(EngineConfig(engine="openai", model=NAME, base_url=URL, api_key_env=VAR))``."""

    name = "openai"

    def __init__(self, cfg: EngineConfig):
        from openai import OpenAI

        if not cfg.base_url:
            raise UserError("the openai engine needs the server's URL (base_url, e.g. http://127.0.0.1:8000/v1)")
        if cfg.adapter:
            raise UserError("a LoRA adapter cannot be attached through the openai engine: serve the base with "
                            "`--enable-lora --lora-modules NAME=ADAPTER_DIR` and name the served NAME as the model, "
                            "or use the vllm engine")
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self._client = OpenAI(base_url=self.base_url, api_key=_api_key(cfg.api_key_env), max_retries=0,
                              timeout=cfg.request_timeout_s)
        self._stopping = threading.Event()
        served = self._preflight()
        self.model = cfg.model or (next(iter(served)) if len(served) == 1 else "")
        if served and self.model not in served:
            raise UserError(f"the server at {self.base_url} does not serve {cfg.model!r}; it serves: "
                            f"{', '.join(list(served)[:8])}: pass one of them as the model")
        self.max_model_len = (served.get(self.model) or {}).get("max_model_len")
        # a vLLM server can name tokens by id (return_tokens_as_token_ids); others only by their text
        self.server_token_ids = (served.get(self.model) or {}).get("owned_by") == "vllm"
        self.tokenizer = _load_tokenizer(cfg.tokenizer or self.model)
        self._token_ids = token_logprobs.TokenIds(self.tokenizer, cfg.tokenizer or self.model)
        if self.tokenizer is not None:
            self._format = prompting.conversation_format(self.tokenizer, cfg.chat_template, cfg.system_prompt)
        else:
            self._format = {"chat_template": prompting.template_text(None, cfg.chat_template),
                            "chat_template_sha256": prompting.sha256_text(
                                prompting.template_text(None, cfg.chat_template)),
                            "system_prompt": cfg.system_prompt,
                            "system_prompt_source": "explicit" if cfg.system_prompt is not None else None,
                            "prefill": None,
                            "note": "chat template applied by the server and unknown here: pass --tokenizer "
                                    "(the teacher's tokenizer) to record it"}
        self._format["served_by"] = self.base_url

    # ------------------------------------------------------------------ setup

    def _preflight(self) -> dict[str, dict[str, Any]]:
        """The served models (id -> extra fields); a clear error when the server cannot be reached."""
        import openai

        client = self._client.with_options(timeout=min(30.0, self.cfg.request_timeout_s), max_retries=2)
        try:
            listing = client.models.list()
        except openai.APIConnectionError as exc:
            raise UserError(f"cannot reach the OpenAI-compatible server at {self.base_url} "
                            f"({type(exc.__cause__ or exc).__name__}): start it (e.g. `vllm serve MODEL`) "
                            "or fix --base-url") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise UserError(f"the server at {self.base_url} rejected the API key ({exc.status_code}): "
                            f"set it in the variable --api-key-env names{_env_note(self.cfg.api_key_env)}") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):  # no /models route: trust the model name
                return {}
            raise UserError(f"the server at {self.base_url} answered {exc.status_code} to /models: "
                            f"{_message(exc)}") from None
        return {m.id: {**(m.model_extra or {}), "owned_by": getattr(m, "owned_by", None)} for m in listing.data}

    def conversation_format(self) -> dict[str, Any]:
        return dict(self._format)

    def check_logprobs(self, k: int) -> None:
        if not self.server_token_ids and self.tokenizer is None:
            raise UserError(f"--logprobs with a server that names tokens by their text needs the served model's "
                            f"tokenizer to map them to ids, and none was found for {self.cfg.tokenizer or self.model!r}"
                            ": pass --tokenizer DIR (a local copy of the teacher's tokenizer files)")
        probe = [{"role": "user", "content": "Hi"}]
        try:
            response = self._call(messages=probe, model=self.model, n=1, temperature=0.0, max_tokens=1,
                                  **self._logprob_options(k))
        except UserError as exc:
            raise UserError(f"{exc} (a request for top_logprobs {self._logprob_options(k)['top_logprobs']}: "
                            "lower --logprobs, or raise the server's limit, e.g. vllm serve --max-logprobs)") from None
        choice = response.choices[0]
        token_logprobs.from_openai(getattr(choice.logprobs, "content", None), k, self._token_ids)

    def _logprob_options(self, k: int) -> dict[str, Any]:
        options: dict[str, Any] = {"logprobs": True,
                                   "top_logprobs": token_logprobs.request_size(k, self.server_token_ids)}
        if self.server_token_ids:
            options["extra_body"] = {"return_tokens_as_token_ids": True}
        return options

    # ------------------------------------------------------------------ sampling

    def generate(self, requests: Iterable[Request], sampling: SamplingConfig) -> Iterator[Sample]:
        if sampling.max_tokens is None or sampling.max_tokens < 1:
            raise UserError("max_tokens must be at least 1")
        self._stopping.clear()
        jobs = self._jobs(requests, sampling)
        pool = ThreadPoolExecutor(max_workers=self.cfg.max_concurrency, thread_name_prefix="distill-openai")
        inflight: set[Future] = set()
        finished = False
        try:
            exhausted = False
            while True:
                while not exhausted and len(inflight) < self.cfg.max_concurrency:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                    elif isinstance(job, Sample):  # prompt longer than the server's context
                        yield job
                    else:
                        inflight.add(pool.submit(self._sample, *job, sampling))
                if not inflight:
                    finished = True
                    return
                done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # error / Ctrl-C: drop the connections in flight too
                self._stopping.set()
                self._client.close()
            raise
        finally:
            if not finished:  # error or early stop: do not wait for (or retry) what is in flight
                self._stopping.set()
                for future in inflight:
                    future.cancel()
            pool.shutdown(wait=finished, cancel_futures=True)

    def _jobs(self, requests: Iterable[Request], sampling: SamplingConfig):
        for request in requests:
            indices = request.sample_indices if request.sample_indices is not None else range(
                request.n if request.n is not None else sampling.n)
            max_tokens, prompt_tokens = sampling.max_tokens, None
            if self.tokenizer is not None and self.max_model_len:
                prompt_tokens = len(self.tokenizer(prompting.render(self.tokenizer, request.messages),
                                                   add_special_tokens=False).input_ids)
                max_tokens = min(max_tokens, int(self.max_model_len) - prompt_tokens)
            for index in indices:
                if max_tokens < 1:
                    yield Sample(request.key, index, "", "length", prompt_tokens or 0, 0,
                                 extra={"error": f"prompt of {prompt_tokens} tokens >= max_model_len "
                                                 f"{self.max_model_len}"})
                else:
                    yield (request.key, index, request.messages, max_tokens)

    def _sample(self, key: str, index: int, messages: list[dict[str, str]], max_tokens: int,
                sampling: SamplingConfig) -> Sample:
        options = self._logprob_options(sampling.logprobs) if sampling.logprobs else {}
        if messages and messages[-1].get(prompting.PREFILL_KEY):
            # --prefill: the assistant turn starts with this text and the server continues it (vLLM's and
            # SGLang's chat API: continue_final_message, no new generation prompt); the reply is only the new text
            messages = [*messages[:-1], {"role": "assistant", "content": messages[-1]["content"]}]
            options["extra_body"] = {**options.get("extra_body", {}), "add_generation_prompt": False,
                                     "continue_final_message": True}
        response = self._call(messages=messages, model=self.model, n=1, temperature=sampling.temperature,
                              top_p=sampling.top_p, max_tokens=max_tokens, **options)
        choice = response.choices[0]
        message = choice.message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning") or extra.get("reasoning_content")
        finish_reason = choice.finish_reason or "stop"
        text = prompting.assemble_completion(message.content, prefill=self._format.get("prefill"),
                                             reasoning=reasoning, finish_reason=finish_reason)
        usage = response.usage
        completion_tokens = int(usage.completion_tokens) if usage else 0
        logprobs = None
        if sampling.logprobs:
            logprobs = token_logprobs.from_openai(getattr(choice.logprobs, "content", None), sampling.logprobs,
                                                  self._token_ids, completion_tokens)
        return Sample(key=key, index=index, text=text, finish_reason=finish_reason,
                      prompt_tokens=int(usage.prompt_tokens) if usage else 0, completion_tokens=completion_tokens,
                      extra={"reasoning_separate": reasoning is not None}, logprobs=logprobs)

    def _call(self, **kwargs):
        """``chat.completions.create`` with retries: exponential backoff with jitter, Retry-After honoured."""
        import openai

        attempt = 0
        while True:
            try:
                return self._client.chat.completions.create(**kwargs)
            except openai.APIConnectionError as exc:  # includes timeouts
                error, retry_after = exc, None
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS and exc.status_code < 500:
                    raise UserError(_status_message(exc, self.base_url, self.cfg.api_key_env)) from None
                error, retry_after = exc, _retry_after(exc)
            if self._stopping.is_set():
                raise UserError("generation stopped")
            if attempt >= self.cfg.max_retries:
                what = getattr(error, "status_code", None) or type(error.__cause__ or error).__name__
                raise UserError(f"requests to {self.base_url} still fail after {attempt} retries ({what}: "
                                f"{_message(error)}): check the server, then rerun the same command to resume "
                                "(finished samples are saved)") from None
            delay = min(MAX_BACKOFF_S, self.cfg.retry_backoff_s * 2 ** attempt) * random.uniform(0.75, 1.25)
            self._stopping.wait(max(delay, retry_after or 0.0))
            attempt += 1

    def close(self) -> None:
        self._stopping.set()
        self._client.close()


# ---------------------------------------------------------------------------- helpers


def _api_key(env_name: str | None) -> str:
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise UserError(f"the API key variable {env_name} is not set (export {env_name}=...)")
    else:
        value = os.environ.get("OPENAI_API_KEY") or "EMPTY"  # local servers accept any key
    from distill.artifacts.integrity import register_secret

    register_secret(value if value != "EMPTY" else None)  # redacted from error lines whatever its variable's name
    return value


def _env_note(env_name: str | None) -> str:
    return f" (now {env_name})" if env_name else " (none given: OPENAI_API_KEY or 'EMPTY' was sent)"


def _message(exc: Exception) -> str:
    body, text = getattr(exc, "body", None), None
    if isinstance(body, dict):
        error = body.get("error")
        text = error.get("message") if isinstance(error, dict) else body.get("message")
    return " ".join(str(text or exc).split())[:200]


def _status_message(exc, base_url: str, env_name: str | None) -> str:
    if exc.status_code in (401, 403):
        return f"the server at {base_url} rejected the API key ({exc.status_code}){_env_note(env_name)}"
    if exc.status_code == 404:
        return f"the server at {base_url} answered 404 ({_message(exc)}): check the model name and --base-url"
    return (f"the server at {base_url} rejected a request ({exc.status_code}: {_message(exc)}): check "
            "--max-tokens against the model's context, and the sampling options")


def _retry_after(exc) -> float | None:
    try:
        value = exc.response.headers.get("retry-after")
        return min(float(value), MAX_BACKOFF_S) if value else None
    except (AttributeError, TypeError, ValueError):
        return None


def _load_tokenizer(spec: str | None):
    """The served model's tokenizer when it can be found (a local dir, or a Hub id in cache/online)."""
    if not spec:
        return None
    local = Path(spec).expanduser()
    if not local.is_dir() and spec.count("/") != 1:
        return None  # an API model name such as deepseek-reasoner
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(local) if local.is_dir() else spec)
    except Exception:  # noqa: BLE001 - offline, gated, or no tokenizer files: record what is known
        return None
