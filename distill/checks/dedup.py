"""Dedup: identical or near-identical completions of one prompt collapse to one; optional cap K.

Each completion gets a fingerprint: the SHA-1 of its normalized text (lower case, whitespace
collapsed) and a 64-value MinHash of its word 5-gram shingles. Within one prompt (rows sharing an
``id``), a completion is a ``duplicate`` of an earlier kept one when the hashes are equal, a
``near_duplicate`` when the MinHash estimate of the Jaccard similarity is >= the threshold
(default 0.9). Then ``--max-per-prompt K`` keeps K of the survivors by a policy:
``shortest`` (fewest tokens, ties by row order), ``random`` (seeded per prompt, so the choice is
the same on every run) or ``all`` (no cap).
"""

from __future__ import annotations

import hashlib
import random
import re
import zlib

import numpy as np

NUM_PERM = 64
SHINGLE = 5
_WS = re.compile(r"\s+")
_rng = np.random.RandomState(20250101)  # fixed: fingerprints must match across processes and runs
_MULT = (_rng.randint(1, 2**31, size=NUM_PERM, dtype=np.int64).astype(np.uint64) * np.uint64(2**32)
         + _rng.randint(1, 2**31, size=NUM_PERM, dtype=np.int64).astype(np.uint64)) | np.uint64(1)
_XOR = _rng.randint(0, 2**31, size=NUM_PERM, dtype=np.int64).astype(np.uint64) * np.uint64(2**33)
POLICIES = ("shortest", "random", "all")


def normalize(text: str) -> str:
    return _WS.sub(" ", (text or "").lower()).strip()


def fingerprint(text: str) -> tuple[str, bytes]:
    """``(sha1 of the normalized text, MinHash signature as 64 little-endian uint32)``."""
    norm = normalize(text)
    digest = hashlib.sha1(norm.encode("utf-8", "surrogatepass")).hexdigest()
    words = norm.split(" ")
    word_hashes = np.fromiter((zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words), dtype=np.uint64,
                              count=len(words))
    if len(words) >= SHINGLE:  # combine each run of SHINGLE word hashes into one shingle hash
        shingles = np.zeros(len(words) - SHINGLE + 1, dtype=np.uint64)
        for j in range(SHINGLE):
            shingles = shingles * np.uint64(1000003) + word_hashes[j:len(words) - SHINGLE + 1 + j]
    else:
        shingles = word_hashes
    if not len(shingles):
        return digest, b""
    with np.errstate(over="ignore"):
        mixed = (shingles[None, :] ^ _XOR[:, None]) * _MULT[:, None]
    signature = (mixed.min(axis=1) >> np.uint64(32)).astype("<u4")
    return digest, signature.tobytes()


def similarity(a: bytes, b: bytes) -> float:
    """MinHash estimate of the Jaccard similarity of two fingerprints' shingle sets."""
    if not a or not b:
        return 0.0
    return float(np.mean(np.frombuffer(a, dtype="<u4") == np.frombuffer(b, dtype="<u4")))


def find_duplicates(fingerprints: list[tuple[str, bytes]], threshold: float = 0.9) -> list[str]:
    """For one prompt's rows, in order: ``unique``, ``duplicate`` or ``near_duplicate`` (of an earlier row)."""
    kept: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    out = []
    for digest, signature in fingerprints:
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
