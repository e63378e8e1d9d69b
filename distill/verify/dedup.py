"""Dedup: identical or near-identical completions of one prompt collapse to one; optional cap K.

Each completion gets a fingerprint: the SHA-1 of its normalized text (lower case, whitespace
collapsed) and a 64-bin one-permutation MinHash of its word 5-gram shingles (numpy; ~1 ms for
a 4,000-token trace). Within one prompt (rows sharing an
``id``), a completion is a ``duplicate`` of an earlier kept one when the hashes are equal, a
``near_duplicate`` when the MinHash estimate of the Jaccard similarity is >= the threshold
(default 0.9). Then ``--max-per-prompt K`` keeps K of the survivors by a policy:
``shortest`` (fewest tokens, ties by row order), ``random`` (seeded per prompt, so the choice is
the same on every run) or ``all`` (no cap).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

NUM_BINS = 64
SHINGLE = 5
_BASE = np.uint64(0x100000001B3)  # odd: invertible mod 2**64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_EMPTY = np.uint32(0xFFFFFFFF)
POLICIES = ("shortest", "random", "all")


def normalize(text: str) -> str:
    return " ".join((text or "").lower().split())


def exact_digest(text: str) -> str:
    """SHA-1 of the normalized text: equal for completions that differ only in case and whitespace."""
    return hashlib.sha1(normalize(text).encode("utf-8", "surrogatepass")).hexdigest()


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads the bits of polynomial hashes before binning."""
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


def _word_hashes(norm: str) -> np.ndarray:
    """A 64-bit polynomial hash per space-separated word, all in numpy (no Python loop over words)."""
    data = np.frombuffer(norm.encode("utf-8", "surrogatepass"), dtype=np.uint8).astype(np.uint64)
    n = len(data)
    powers = np.empty(n, dtype=np.uint64)
    inverse = np.empty(n, dtype=np.uint64)
    powers[0] = inverse[0] = 1
    if n > 1:
        powers[1:] = np.cumprod(np.full(n - 1, _BASE, dtype=np.uint64))
        inverse[1:] = np.cumprod(np.full(n - 1, _BASE_INV, dtype=np.uint64))
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum((data + np.uint64(1)) * powers, out=prefix[1:])
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [n]))
    return _mix((prefix[ends] - prefix[starts]) * inverse[starts] * _M1)


def fingerprint(text: str) -> tuple[str, bytes]:
    """``(sha1 of the normalized text, one-permutation MinHash: 64 bins of little-endian uint32)``.

    Shingles are word 5-grams; each shingle hash falls in one of 64 bins by its top bits and a bin
    keeps its smallest value (one-permutation hashing: one hash per shingle instead of 64).
    """
    norm = normalize(text)
    digest = exact_digest(norm)
    if not norm:
        return digest, b""
    with np.errstate(over="ignore"):
        words = _word_hashes(norm)
        if len(words) >= SHINGLE:
            count = len(words) - SHINGLE + 1
            shingles = np.zeros(count, dtype=np.uint64)
            for j in range(SHINGLE):
                shingles = shingles * _M1 + words[j:count + j]
            shingles = _mix(shingles)
        else:
            shingles = words
    bins = (shingles >> np.uint64(58)).astype(np.intp)
    values = ((shingles >> np.uint64(20)) & np.uint64(0xFFFFFFFE)).astype(np.uint32)  # never _EMPTY
    signature = np.full(NUM_BINS, _EMPTY, dtype=np.uint32)
    np.minimum.at(signature, bins, values)
    return digest, signature.astype("<u4").tobytes()


def similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity of two fingerprints' shingle sets (bins empty in both are ignored)."""
    if not a or not b:
        return 0.0
    x, y = np.frombuffer(a, dtype="<u4"), np.frombuffer(b, dtype="<u4")
    used = (x != _EMPTY) | (y != _EMPTY)
    total = int(used.sum())
    return float(((x == y) & used).sum()) / total if total else 0.0


def find_duplicates(fingerprints: list[tuple[str, bytes]], threshold: float = 0.9) -> list[str]:
    """For one prompt's rows, in order: ``unique``, ``duplicate`` or ``near_duplicate`` (of an earlier row)."""
    kept: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    out = []
    for digest, signature in fingerprints:
        if digest is None:  # no fingerprint (its check failed): never a duplicate, never matched
            out.append("unique")
            continue
        if digest in seen:
            out.append("duplicate")
            continue
        if threshold < 1.0 and any(similarity(signature, other) >= threshold for _, other in kept):
            out.append("near_duplicate")
            continue
        seen.add(digest)
        kept.append((digest, signature))
        out.append("unique")
    return out


def select(rows: list[int], lengths: list[int], k: int | None, policy: str = "shortest", seed: int = 0,
           key: str = "") -> set[int]:
    """Which of one prompt's surviving ``rows`` to keep (``lengths`` aligned with ``rows``)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if k is None or policy == "all" or len(rows) <= k:
        return set(rows)
    if policy == "shortest":
        order = sorted(range(len(rows)), key=lambda i: (lengths[i], rows[i]))
        return {rows[i] for i in order[:k]}
    rng = random.Random(f"{seed}:{key}")  # str seeds hash deterministically (not PYTHONHASHSEED)
    return set(rng.sample(rows, k))
