"""A teacher served elsewhere: the top-K logprobs a vLLM server gives each token of given token sequences.

    server = TeacherServer("http://gpu-box:8000/v1", k=20)
    scored = server.score([prompt_ids + completion_ids], starts=[len(prompt_ids)])   # list of TokenLogprobs

For a teacher too big to sit beside the student (32B-671B): `vllm serve TEACHER` anywhere, then
`distill train --method on-policy --teacher-base-url URL`. It uses vLLM's OpenAI-compatible completions endpoint
with `prompt_logprobs` (the top-K of every prompt position; `max_tokens` 1), so a plain `vllm serve` works;
TRL's server-distillation variant needs its own `trl vllm-serve` process (and vLLM <= 0.31), which is why this
client exists. Start the server with `--max-logprobs` >= K.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from distill.errors import UserError


class TeacherServer:
    def __init__(self, base_url: str, k: int = 20, model: str | None = None, timeout: float = 600.0,
                 concurrency: int = 8):
        self.base_url = base_url.rstrip("/")
        self.k, self.timeout, self.concurrency = k, timeout, concurrency
        self.model = model or self._served_model()

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200].replace("\n", " ")
            raise UserError(f"the teacher server {self.base_url} answered {exc.code} to {path} ({detail}); is it "
                            f"a vLLM server started with --max-logprobs >= {self.k}?") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(f"cannot reach the teacher server {self.base_url} ({type(exc).__name__}: "
                            f"{str(exc)[:160]})") from None

    def _served_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise UserError(f"the teacher server {self.base_url} serves no model")
        return models[0]["id"]

    def score(self, sequences: list[list[int]], starts: list[int]) -> list:
        """The teacher's top-K (ids, logprobs) at each position of ``sequence[start:]``, most likely first."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(sequences)))) as pool:
            return list(pool.map(self._score_one, sequences, starts))

    def _score_one(self, sequence: list[int], start: int):
        import numpy as np

        body = {"model": self.model, "prompt": [int(t) for t in sequence], "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": self.k}
        choices = self._request("/completions", body).get("choices") or [{}]
        positions = choices[0].get("prompt_logprobs")
        if not isinstance(positions, list) or len(positions) != len(sequence):
            raise UserError(f"the teacher server {self.base_url} returned no prompt_logprobs for a sequence of "
                            f"{len(sequence)} tokens: it must be a vLLM server (the OpenAI API has no prompt "
                            "logprobs)")
        count = len(sequence) - start
        ids = np.zeros((count, self.k), np.int64)
        values = np.full((count, self.k), -math.inf, np.float32)
        for row, entry in enumerate(positions[start:]):
            ranked = sorted(((item.get("rank") or 10 ** 9, int(token), float(item["logprob"]))
                             for token, item in (entry or {}).items()), key=lambda x: x[0])
            best = [r for r in ranked if r[0] <= self.k][: self.k]
            for column, (_, token, logprob) in enumerate(best):
                ids[row, column], values[row, column] = token, logprob
        return ids, values
