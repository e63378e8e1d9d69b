"""Integrity of artifacts and redaction of secrets: what a stage reads is what its manifest says, and no
secret reaches a manifest or an ``error:`` line.

Verification (``require_intact``; ``artifacts.resolve(REF, kind=K)`` and ``Artifact.load_dataset`` call it,
so every stage input is checked before use):

- the payload (dataset rows / model files) against the manifest's ``content_sha256``;
- the other files of the version (``results.json``, ``merged/``, plots...) against ``other_files_sha256``;
- the manifest's own fields against ``manifest_sha256`` (the canonical manifest without that field);
  manifests written before it existed still load, with their payload checked;
- the manifest's name, version and kind against where the version is stored.

Hashing a large payload takes long, so a hash is cached in ``HOME/.cache/verified.json``, keyed by the
path and a digest of every file's relative path, size, mtime_ns and ctime_ns: a second use costs one
``stat`` per file. ``distill --no-verify`` sets ``DISTILL_NO_VERIFY=1``, which turns the checks off; an
artifact created while they are off records ``"inputs_verified": false``. The hashes are no signature:
whoever can edit a manifest can recompute them; they catch edits, damage and stale copies.

Redaction: ``redact`` (a config: secret-named keys and every string), ``redact_strings`` (any value) and
``redact_text`` (one string) remove credentials in URLs, secret query parameters, token-shaped strings
(``sk-...``, ``hf_...``, ``ghp_...``, JWTs), Authorization / API-key values, and (in error lines) the
values of secret-named environment variables and of secrets registered with ``register_secret``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill.errors import UserError

NO_VERIFY_ENV = "DISTILL_NO_VERIFY"
MANIFEST_HASH = "manifest_sha256"
OTHER_FILES = "other_files_sha256"
INPUTS_VERIFIED = "inputs_verified"
CACHE_FILE = Path(".cache") / "verified.json"
# Not sealed: the manifest (hashed field by field) and the card `--push-to-hub` writes into a committed version.
UNSEALED = frozenset({"manifest.json", "README.md"})
# A file changed within the same timestamp tick as its hash could keep its (size, mtime, ctime): a hash taken
# less than this after the newest file's timestamps is not cached (git's "racy" entries; ticks are <= 10 ms).
RACY_WINDOW_NS = 50_000_000
hashes_computed = 0  # payloads / other files hashed by this process (what the cache saves; read by tests)


class IntegrityError(UserError):
    """An input artifact no longer matches its manifest."""


def enabled() -> bool:
    """Whether inputs are verified (``DISTILL_NO_VERIFY`` unset, empty or 0)."""
    return os.environ.get(NO_VERIFY_ENV, "").strip().lower() in ("", "0", "false", "no")


# ---------------------------------------------------------------------------- checking


def require_intact(artifact, loaded=None) -> None:
    """Raise one-line ``IntegrityError`` unless ``artifact`` matches its manifest (no-op when verification is
    off, or already done for this object). ``loaded``: its dataset, already loaded (saves loading it again)."""
    if not enabled() or artifact.verified:
        return
    problems, save = _check(artifact, loaded=loaded, use_cache=True)
    if problems:
        raise IntegrityError(
            f"input artifact {artifact.ref} ({artifact.path}) failed verification: {'; '.join(problems)}. "
            "Re-create it with the stage that wrote it, or run `distill --no-verify COMMAND ...` to use it anyway "
            f"(the new artifact's manifest then records {INPUTS_VERIFIED}: false)")
    save()
    artifact.verified = True


def verify(artifact) -> tuple[bool, str]:
    """Recompute every hash (the cache is refreshed, not trusted); returns (ok, message)."""
    problems, save = _check(artifact, loaded=None, use_cache=False)
    if problems:
        return False, "; ".join(problems)
    save()
    if MANIFEST_HASH not in artifact.manifest:
        return True, f"content hash verified (an older manifest without {MANIFEST_HASH}: its fields are not covered)"
    return True, "content hash verified"  # and the manifest's fields and the other files


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its ``manifest_sha256`` field."""
    fields = {k: v for k, v in manifest.items() if k != MANIFEST_HASH}
    # Through JSON first, as it is written (default=str, keys as strings): the dict a stage commits and the one
    # read back from manifest.json must hash the same.
    canonical = json.dumps(json.loads(json.dumps(fields, default=str)), sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check(artifact, loaded, use_cache: bool) -> tuple[list[str], Callable[[], None]]:
    """(what differs, a function that stores the hashes computed): location, manifest, payload, other files."""
    manifest, version_dir = artifact.manifest, artifact.path
    problems = _location_problems(version_dir, manifest)
    sealed = manifest.get(MANIFEST_HASH)
    if sealed is not None and sealed != manifest_sha256(manifest):
        problems.append(f"its manifest.json fields were edited after it was written ({MANIFEST_HASH} differs)")
    cache_path = _cache_path(version_dir)
    cache = _load_cache(cache_path) if cache_path is not None and use_cache else {}
    updates: dict[str, Any] = {}
    payload, compute = _payload(version_dir, loaded)
    expected = manifest.get("content_sha256") or ""
    try:
        actual = _hashed(payload, compute, cache, updates, _is_dataset(payload)) if payload is not None else ""
    except Exception as exc:  # noqa: BLE001 - a damaged payload fails in many ways (arrow, IO, JSON)
        problems.append(f"payload unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")
    else:
        if actual != expected:
            where = f" ({payload.name}/ changed after it was written)" if payload is not None else " (payload missing)"
            problems.append(f"content hash MISMATCH: manifest {expected[:16]}…, payload {actual[:16] or 'none'}…{where}")
    for name, recorded in sorted((manifest.get(OTHER_FILES) or {}).items()):
        entry = version_dir / name
        if not entry.exists():
            problems.append(f"{name} is missing")
        elif _hashed(entry, lambda e=entry: _entry_sha256(e), cache, updates) != recorded:
            problems.append(f"{name} changed after it was written")

    def save() -> None:
        if cache_path is not None and updates:
            _save_cache(cache_path, updates)

    return problems, save


def _location_problems(version_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """The manifest's name / version / kind against the ``KIND_DIR/NAME/vNNNN`` it is stored at."""
    from distill import artifacts

    found = []
    if artifacts._VERSION_RE.match(version_dir.name) and manifest.get("version") != version_dir.name:
        found.append(f"its manifest says version {manifest.get('version')!r} but it is stored as {version_dir.name}")
    if version_dir.parent.parent.name in set(artifacts.KIND_DIRS.values()):
        if manifest.get("name") != version_dir.parent.name:
            found.append(f"its manifest says name {manifest.get('name')!r} but it is stored under "
                         f"{version_dir.parent.name}/")
        if artifacts.KIND_DIRS.get(manifest.get("kind")) != version_dir.parent.parent.name:
            found.append(f"its manifest says kind {manifest.get('kind')!r}, which is not stored under "
                         f"{version_dir.parent.parent.name}/")
    return found


# ---------------------------------------------------------------------------- hashing (cached)


def _payload(version_dir: Path, loaded=None) -> tuple[Path | None, Callable[[], str]]:
    """The payload directory and how to hash it: as ``artifacts.payload_sha256`` does (rows / files)."""
    from distill import artifacts

    dataset_dir, model_dir = version_dir / artifacts.DATASET_DIR, version_dir / artifacts.MODEL_DIR
    if dataset_dir.is_dir():
        def dataset_hash() -> str:
            import datasets

            data = loaded if loaded is not None else datasets.load_from_disk(str(dataset_dir))
            return artifacts.dataset_sha256(data)

        return dataset_dir, dataset_hash
    if model_dir.is_dir():
        return model_dir, lambda: artifacts.files_sha256(model_dir)
    return None, lambda: ""


def _is_dataset(payload: Path) -> bool:
    from distill import artifacts

    return payload.name == artifacts.DATASET_DIR


def _entry_sha256(entry: Path) -> str:
    """A sidecar file's sha256, or a sidecar directory's (``files_sha256``: relative paths + contents)."""
    from distill import artifacts

    if entry.is_dir():
        return artifacts.files_sha256(entry)
    digest = hashlib.sha256()
    with open(entry, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(entry: Path, rows_only: bool = False) -> tuple[str, int] | None:
    """(digest of every file's relative path, size, mtime_ns and ctime_ns; the newest of those times), or None
    when ``entry`` does not exist. ``rows_only`` (a dataset, hashed over its rows): ``cache-*`` files are left
    out, `datasets` writes its map caches beside the arrow files and they do not change the rows."""
    if entry.is_file():
        files, base = [entry], entry.parent
    elif entry.is_dir():
        files = sorted(p for p in entry.rglob("*") if p.is_file() and not (rows_only and p.name.startswith("cache-")))
        base = entry
    else:
        return None
    rows, newest = [], 0
    for path in files:
        info = path.stat()
        rows.append([str(path.relative_to(base)), info.st_size, info.st_mtime_ns, info.st_ctime_ns])
        newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest(), newest


def _hashed(entry: Path, compute: Callable[[], str], cache: dict, updates: dict, rows_only: bool = False) -> str:
    """``compute()``, or the cached hash of ``entry`` when no file in it changed; a fresh hash goes to ``updates``."""
    global hashes_computed
    before = _fingerprint(entry, rows_only)
    if before is None:
        return ""
    cached = cache.get(str(entry))
    if isinstance(cached, dict) and cached.get("fingerprint") == before[0]:
        return cached.get("sha256", "")
    hashes_computed += 1
    sha = compute()
    if _fingerprint(entry, rows_only) == before and time.time_ns() - before[1] > RACY_WINDOW_NS:
        updates[str(entry)] = {"fingerprint": before[0], "sha256": sha}
    return sha


def _cache_path(version_dir: Path) -> Path | None:
    """``HOME/.cache/verified.json`` of the home holding ``version_dir`` (None outside a home: not cached)."""
    from distill import artifacts

    if version_dir.parent.parent.name not in set(artifacts.KIND_DIRS.values()):
        return None
    return version_dir.parents[2] / CACHE_FILE


def _load_cache(cache_path: Path) -> dict:
    try:
        data = json.loads(cache_path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: start over (it only saves time)
        return {}
    return data if isinstance(data, dict) else {}


def _save_cache(cache_path: Path, updates: dict) -> None:
    """Merge ``updates`` into the cache and replace it atomically (temp file + rename). Best effort: a concurrent
    writer's entries can be lost (a re-hash later) and a read-only home is not an error."""
    entries = {**_load_cache(cache_path), **updates}
    entries = {path: entry for path, entry in entries.items() if Path(path).exists()}  # versions deleted since
    tmp = None
    try:
        cache_path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified-", suffix=".tmp", dir=cache_path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(entries, handle)
        os.replace(tmp, cache_path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- committing


def hash_version(staging_dir: Path) -> tuple[str, dict[str, str], dict[str, Any]]:
    """At commit: (content_sha256, other_files_sha256, hashes to remember once the version has its final path)."""
    updates: dict[str, Any] = {}
    payload, compute = _payload(staging_dir)
    content = _hashed(payload, compute, {}, updates, _is_dataset(payload)) if payload is not None else ""
    others = {}
    for entry in sorted(staging_dir.iterdir()):
        if entry.name in UNSEALED or entry.name.startswith(".") or entry == payload:
            continue
        others[entry.name] = _hashed(entry, lambda e=entry: _entry_sha256(e), {}, updates)
    pending = {str(Path(path).relative_to(staging_dir)): entry for path, entry in updates.items()}
    return content, others, pending


def remember(version_dir: Path, pending: dict[str, Any]) -> None:
    """Cache the hashes ``hash_version`` took, under the committed version's paths (a rename keeps every
    file's size, mtime and ctime), so the first use of a new artifact does not hash it again."""
    cache_path = _cache_path(version_dir)
    if cache_path is not None and pending:
        _save_cache(cache_path, {str(version_dir / rel): entry for rel, entry in pending.items()})


def prepare_manifest(manifest: dict[str, Any], other_files: dict[str, str]) -> dict[str, Any]:
    """The manifest to commit: secrets redacted from every string, other files' hashes, and
    ``inputs_verified: false`` when verification is off. ``seal`` it once its version is set."""
    manifest = redact_strings(manifest)
    if other_files:
        manifest[OTHER_FILES] = other_files
    if not enabled():
        manifest[INPUTS_VERIFIED] = False
    return manifest


def seal(manifest: dict[str, Any]) -> None:
    manifest[MANIFEST_HASH] = manifest_sha256(manifest)


# ---------------------------------------------------------------------------- redaction

REDACTED = "<redacted>"
_SECRET_KEY_RE = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization)$", re.I)
# Config keys that name an env var holding a secret are fine: only the value would be secret.
_SECRET_KEY_ALLOWED = re.compile(r"_env$|_env_var$|_column$", re.I)
_SECRET_WORDS = r"api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|secret|password|passwd"
_TEXT_RULES: list[tuple[re.Pattern, str]] = [
    # https://user:token@host/... (and a bare token@): the whole userinfo
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@", re.I), rf"\1{REDACTED}@"),
    # ?api_key=...&token=...&X-Amz-Signature=...
    (re.compile(r"([?&;][^=&#\s\"'<>]*(?:key|token|secret|passw|pwd|signature|sig|auth|credential)[^=&#\s\"'<>]*=)"
                r"[^&#\s\"'<>]+", re.I), rf"\1{REDACTED}"),
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # headers: X-Api-Key: xxx / Authorization: xxx (Bearer/Basic handled above)
    (re.compile(r"\b((?:x-)?api-key|authorization)(\s*:\s*)(?!Bearer\b|Basic\b|<redacted>)[^\s\"',;}]{8,}", re.I),
     rf"\1\2{REDACTED}"),
    # "api_key": "xxx" / 'token': 'xxx' (a JSON or Python dict echoed back)
    (re.compile(rf"([\"'](?:{_SECRET_WORDS})[\"']\s*:\s*[\"'])[^\"']{{4,}}([\"'])", re.I), rf"\1{REDACTED}\2"),
    # api_key=xxx / password=xxx
    (re.compile(rf"\b((?:{_SECRET_WORDS})=)(?!<redacted>)[^\s&\"',;]{{4,}}", re.I), rf"\1{REDACTED}"),
    # token shapes: OpenAI / DeepSeek / Anthropic sk-..., Hugging Face hf_..., GitHub, Slack, GitLab, AWS, Google
    (re.compile(r"\b(sk-(?:proj-|ant-)?|hf_|gh[pousr]_|github_pat_|xox[abprs]-|glpat-|AKIA|AIza)[A-Za-z0-9_-]{16,}"),
     rf"\1{REDACTED}"),
    # JWTs
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
]
# Environment variables whose value is a secret (OPENAI_API_KEY, HF_TOKEN, DEEPSEEK_KEY...), not ones that
# name another variable or a file.
_SECRET_ENV_NAME = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:_|$)", re.I)
_NOT_SECRET_ENV_SUFFIX = ("_ENV", "_VAR", "_FILE", "_PATH", "_DIR")
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever it appears from now on (e.g. an API key read from the variable a flag names)."""
    if value and len(value) >= 8:
        _registered.add(value)


def _secret_values(environment: bool) -> list[str]:
    values = set(_registered)
    if environment:
        for name, value in os.environ.items():
            if (_SECRET_ENV_NAME.search(name) and not name.upper().endswith(_NOT_SECRET_ENV_SUFFIX)
                    and len(value) >= 12 and not value.startswith(("/", "~", ".")) and value.split() == [value]):
                values.add(value)
    return sorted(values, key=len, reverse=True)  # longest first: a key containing another is replaced whole


def redact_text(text: str, environment: bool = True) -> str:
    """``text`` with secrets replaced by ``<redacted>``; ``environment``: also the values of secret-named
    environment variables (for error lines; a manifest is not searched for them: a short, plain value would
    be replaced wherever it appears)."""
    for value in _secret_values(environment):
        text = text.replace(value, REDACTED)
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_strings(value: Any) -> Any:
    """``value`` with ``redact_text`` applied to every string inside it (keys untouched)."""
    if isinstance(value, str):
        return redact_text(value, environment=False)
    if isinstance(value, dict):
        return {key: redact_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_strings(item) for item in value]
    return value


def redact(config: Any) -> Any:
    """A config without secrets: values of secret-named keys dropped, secrets inside every string removed."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if _SECRET_KEY_RE.search(str(key)) and not _SECRET_KEY_ALLOWED.search(str(key)) and value:
                out[key] = REDACTED
            else:
                out[key] = redact(value)
        return out
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config]
    return redact_strings(config)
