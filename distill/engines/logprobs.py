"""The teacher's top-K logprobs of each generated token, as the engines return them, in one shape.

    token_logprobs = from_vllm(completion.token_ids, completion.logprobs, k)    # in-process vLLM
    token_logprobs = from_openai(choice.logprobs.content, k, TokenIds(tok))    # an OpenAI-compatible server

Both give a ``TokenLogprobs`` (numpy: ids (T,), top ids (T, K), top logprobs (T, K), most likely first).

vLLM puts the sampled token first at every position, then the top K, each with its rank (so a position
has K or K + 1 entries); the top K are placed by rank. A vLLM server cuts that list after K entries
(``top_logprobs``) *including* the sampled token, so where the sampled token is not among the K most
likely the K-th one is lost: ``request_size`` asks a vLLM server for one more, and the K best by value
are kept. Servers name tokens by their text; a vLLM server is asked for ids instead
(``return_tokens_as_token_ids``: ``token_id:N``); other servers' strings are mapped to ids with the
served model's tokenizer (``TokenIds``), and a string that names no single vocabulary entry is an error,
never a guess.
"""

from __future__ import annotations

from typing import Any

from distill.engines import TokenLogprobs
from distill.errors import UserError

TOKEN_ID_PREFIX = "token_id:"  # vLLM's spelling of a token with return_tokens_as_token_ids


def _arrays(length: int, k: int):
    import numpy as np

    return (np.zeros(length, np.int32), np.zeros((length, k), np.int32), np.zeros((length, k), np.float32),
            np.zeros(length, np.float32))


def from_vllm(token_ids, logprobs, k: int) -> TokenLogprobs:
    """From a vLLM ``CompletionOutput``'s ``token_ids`` and ``logprobs`` (``FlatLogprobs`` or a list of dicts)."""
    ids, top_ids, top_values, sampled = _arrays(len(token_ids), k)
    if logprobs is None or len(logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned logprobs for {0 if logprobs is None else len(logprobs)} of "
                           f"{len(token_ids)} tokens")
    flat = hasattr(logprobs, "start_indices")  # FlatLogprobs: parallel lists, no dict per position
    for t, token in enumerate(token_ids):
        ids[t] = token
        if flat:
            lo, hi = logprobs.start_indices[t], logprobs.end_indices[t]
            entries = zip(logprobs.token_ids[lo:hi], logprobs.logprobs[lo:hi], logprobs.ranks[lo:hi], strict=True)
        else:
            entries = ((i, p.logprob, p.rank) for i, p in logprobs[t].items())
        filled = 0
        for token_id, value, rank in entries:
            if token_id == token:
                sampled[t] = value
            # the sampled entry comes first; top-K entries after it win a shared rank (ties in value)
            if rank is not None and 1 <= rank <= k:
                top_ids[t, rank - 1], top_values[t, rank - 1] = token_id, value
                filled |= 1 << (rank - 1)
        if filled != (1 << k) - 1:
            raise RuntimeError(f"vLLM returned fewer than {k} top logprobs at token {t}")
    return TokenLogprobs(ids, top_ids, top_values, sampled)


def request_size(k: int, server_is_vllm: bool) -> int:
    """``top_logprobs`` to ask for: one more of a vLLM server (see the module docstring), even past its default
    limit of 20 (K = 20 then needs ``vllm serve --max-logprobs 21``: a clear refusal, not a silently wrong K-th)."""
    return k + 1 if server_is_vllm else k


def from_openai(content: list[Any] | None, k: int, token_id: TokenIds, completion_tokens: int | None = None
                ) -> TokenLogprobs:
    """From ``choice.logprobs.content`` (one item per generated token: token, bytes, logprob, top_logprobs)."""
    if not content:
        raise UserError("the server returned no logprobs (asked logprobs: true, top_logprobs: "
                        f"{k}): it cannot serve --logprobs; use a server that returns them (vLLM, SGLang) or "
                        "the vllm engine")
    if completion_tokens and len(content) != completion_tokens:
        raise UserError(f"the server returned logprobs for {len(content)} of {completion_tokens} generated tokens")
    ids, top_ids, top_values, sampled = _arrays(len(content), k)
    for t, item in enumerate(content):
        ids[t], sampled[t] = token_id(item.token, item.bytes), item.logprob
        best: dict[int, float] = {}
        for alternative in item.top_logprobs or []:
            best.setdefault(token_id(alternative.token, alternative.bytes), float(alternative.logprob))
        ranked = sorted(best.items(), key=lambda pair: -pair[1])[:k]  # stable: a tie keeps the server's order
        if len(ranked) < k:
            raise UserError(f"the server returned {len(ranked)} top logprobs at a token where {k} were asked: "
                            "lower --logprobs, or raise the server's limit (vllm serve --max-logprobs)")
        for j, (alternative_id, value) in enumerate(ranked):
            top_ids[t, j], top_values[t, j] = alternative_id, value
    return TokenLogprobs(ids, top_ids, top_values, sampled)


class TokenIds:
    """Maps a server's token (``token_id:N``, else its text and bytes) to a vocabulary id of ``tokenizer``.

    Texts are what servers send: the single-token decode (vLLM puts back a SentencePiece ``▁`` space,
    SGLang does not: both spellings are looked up). Where a text names several ids (partial UTF-8
    characters all decode to "\\ufffd"), the exact token bytes of the OpenAI API decide, for byte-level
    BPE vocabularies; bytes that are only the text re-encoded decide nothing."""

    def __init__(self, tokenizer, name: str):
        self.tokenizer, self.name = tokenizer, name
        self._by_text: list[dict[str, int | None]] | None = None
        self._by_bytes: dict[bytes, int | None] | None = None

    def __call__(self, token: str, raw: list[int] | None = None) -> int:
        if token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX):].isdigit():
            return int(token[len(TOKEN_ID_PREFIX):])
        if self.tokenizer is None:
            raise UserError(f"the server names tokens by their text, and no local tokenizer of {self.name!r} maps "
                            "them to ids: pass --tokenizer DIR (the served model's tokenizer files)")
        if self._by_text is None:
            self._build()
        for table in self._by_text:
            found = table.get(token, -1)
            if found is not None and found >= 0:
                return found
        exact = bytes(raw) if raw is not None else None
        if exact is not None and exact != token.encode("utf-8", errors="replace") and self._by_bytes:
            found = self._by_bytes.get(exact)
            if found is not None:
                return found
        raise UserError(f"the server's token {token!r} does not name one entry of {self.name}'s vocabulary "
                        "(several tokens, or none, have that text): serve the teacher with vLLM, whose token ids "
                        "come back exactly, or use the vllm engine")

    def _build(self) -> None:
        """Decode every id once (~1 s for a 150k vocabulary); a text or byte string of several ids maps to None."""
        tokenizer = self.tokenizer
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        spoken: dict[str, int | None] = {}  # vLLM's spelling (SentencePiece space put back)
        plain: dict[str, int | None] = {}   # tokenizer.decode([id]) (SGLang, others)
        for token_id, piece in enumerate(pieces):
            text = tokenizer.decode([token_id])
            restored = " " + text if isinstance(piece, str) and piece.startswith("\u2581") \
                and not text.startswith(" ") else text
            for table, key in ((spoken, restored), (plain, text)):
                table[key] = token_id if key not in table else None
        self._by_text = [spoken, plain]
        self._by_bytes = _byte_table(tokenizer, pieces)


def _byte_table(tokenizer, pieces: list[str | None]) -> dict[bytes, int | None] | None:
    """Exact bytes of each token of a byte-level BPE vocabulary (GPT-2, Llama 3, Qwen, SmolLM); None for others."""
    import json

    try:
        decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    except (AttributeError, ValueError):
        return None
    kinds = {decoder.get("type")} | {d.get("type") for d in decoder.get("decoders") or []}
    if "ByteLevel" not in kinds:
        return None
    byte_of = {char: byte for byte, char in _gpt2_byte_chars().items()}
    table: dict[bytes, int | None] = {}
    special = set(tokenizer.all_special_ids)
    for token_id, piece in enumerate(pieces):
        if piece is None:
            continue
        if token_id in special or any(char not in byte_of for char in piece):
            raw = piece.encode("utf-8")  # an added token is stored as its text
        else:
            raw = bytes(byte_of[char] for char in piece)
        table[raw] = token_id if raw not in table else None
    return table


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table of byte-level BPE. Written out here because transformers 5
    no longer exports it from a stable place; the table itself is fixed by the GPT-2 vocabulary format."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table
