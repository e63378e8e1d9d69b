"""Versioned artifacts with manifests and lineage: the one module every stage uses.

An artifact is ``HOME/<kind dir>/NAME/vNNNN/`` holding a payload and ``manifest.json``:

    HOME/data/traces/v0001/{manifest.json, dataset/}        (traces | filtered | imported)
    HOME/checkpoints/qwen-7b/v0002/{manifest.json, model/}  (checkpoint)
    HOME/evals/eval-smol/v0001/{manifest.json, dataset/, results.json}   (eval)

``HOME`` is ``--home`` / ``$DISTILL_HOME``, else ``./artifacts``. References are ``NAME``,
``NAME@latest``, ``NAME@v3`` / ``NAME@v0003``, or a path to a version directory. A name belongs
to one kind only. Writes are atomic: a version is built in a hidden temp dir beside its final
place and renamed into place, so an interrupted write leaves no visible version. Inputs are verified against
their manifests before use and secrets are redacted from manifests: ``integrity.py``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.artifacts.integrity import IntegrityError as IntegrityError  # re-exported
from distill.artifacts.integrity import redact as redact  # re-exported
from distill.errors import UserError

KIND_DIRS = {
    "traces": "data",
    "filtered": "data",
    "imported": "data",
    "checkpoint": "checkpoints",
    "eval": "evals",
}
DATASET_DIR = "dataset"
MODEL_DIR = "model"
MANIFEST = "manifest.json"
# Unfinished state beside a name's versions (never a version; `distill artifacts clean` lists it):
STAGING_PREFIX = ".tmp-"  # create() writes here, then renames to vNNNN
PARTIAL_PREFIX = ".partial-"  # distill generate: samples of a run not finished yet (+ config hash)
RUNS_DIR = ".runs"  # distill train: resumable trainer checkpoints, one folder per run hash
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def home(explicit: str | os.PathLike | None = None) -> Path:
    """The artifact root: explicit value, else ``$DISTILL_HOME``, else ``./artifacts``."""
    return Path(explicit or os.environ.get("DISTILL_HOME") or "artifacts").expanduser().absolute()


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UserError(
            f"invalid artifact name {name!r}: use letters, digits, '.', '_' or '-' "
            "(e.g. --name traces-gsm8k)"
        )
    return name


def format_version(number: int) -> str:
    return f"v{number:04d}"


# ---------------------------------------------------------------------------- reading


@dataclass
class Artifact:
    """A committed artifact version on disk."""

    path: Path
    manifest: dict[str, Any]
    verified: bool = field(default=False, repr=False, compare=False)  # checked against its manifest (integrity)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def dataset_path(self) -> Path:
        return self.path / DATASET_DIR

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def content_sha256(self) -> str:
        return self.manifest.get("content_sha256", "")

    def load_dataset(self, split: str | None = None):
        """The payload dataset (a ``DatasetDict``, or one split of it), verified against the manifest."""
        import datasets

        from distill.artifacts import integrity

        try:
            data = datasets.load_from_disk(str(self.dataset_path))
        except Exception as exc:  # noqa: BLE001 - arrow/IO errors vary widely
            raise UserError(
                f"artifact {self.ref} has an unreadable dataset at {self.dataset_path} "
                f"({type(exc).__name__}): re-create it with the stage that wrote it"
            ) from None
        integrity.require_intact(self, loaded=data)
        if split is None:
            return data
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise UserError(f"artifact {self.ref} has no split {split!r} (splits: {', '.join(data)})")
            return data[split]
        return data


def _read_manifest(version_dir: Path) -> dict[str, Any]:
    manifest_path = version_dir / MANIFEST
    if not manifest_path.is_file():
        raise UserError(
            f"{version_dir} has no {MANIFEST}: it is not a distill artifact (or it is damaged); "
            "delete it or point to another version"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"corrupted manifest {manifest_path} ({exc}): delete this version or restore it") from None
    missing = [k for k in ("name", "version", "kind") if k not in manifest]
    if not isinstance(manifest, dict) or missing:
        raise UserError(f"corrupted manifest {manifest_path}: missing {', '.join(missing) or 'fields'}")
    return manifest


def _name_dirs(root: Path, name: str) -> list[Path]:
    """All directories that hold versions of ``name`` (one per kind dir that has it)."""
    return [root / d / name for d in sorted(set(KIND_DIRS.values())) if (root / d / name).is_dir()]


def list_versions(name_dir: Path) -> list[Path]:
    found = [p for p in name_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
    return sorted(found, key=lambda p: int(_VERSION_RE.match(p.name).group(1)))


def looks_like_reference(text: str, root: Path | None = None) -> bool:
    """Whether ``text`` names an existing artifact (used to tell refs from files / Hub ids)."""
    try:
        resolve(text, root=root, verify=False)
        return True
    except UserError:
        return False


def resolve(ref: str, root: Path | None = None, kind: str | None = None, verify: bool | None = None) -> Artifact:
    """Resolve ``NAME``, ``NAME@latest``, ``NAME@vN`` or a version directory path.

    ``verify``: check it against its manifest (``integrity.require_intact``; one-line error if it differs).
    Default: when ``kind`` is given, i.e. a stage resolves an input it will use (a checkpoint to load, evals to
    compare); a dataset is verified by ``load_dataset`` anyway; lineage walks and browsing do not hash."""
    artifact = _resolve(ref, root, kind)
    if verify or (verify is None and kind is not None):
        from distill.artifacts import integrity

        integrity.require_intact(artifact)
    return artifact


def _resolve(ref: str, root: Path | None, kind: str | tuple[str, ...] | None) -> Artifact:
    root = root or home()
    ref = str(ref).strip()
    candidate = Path(ref).expanduser()
    if ("/" in ref or ref.startswith(".")) and candidate.is_dir() and "@" not in ref:
        if (candidate / MANIFEST).exists() or _VERSION_RE.match(candidate.name):
            artifact = Artifact(candidate.absolute(), _read_manifest(candidate))
            return _check_kind(artifact, kind)
        versions = list_versions(candidate)
        if versions:  # a NAME directory: its latest version
            return _check_kind(Artifact(versions[-1].absolute(), _read_manifest(versions[-1])), kind)
    name, _, version = ref.partition("@")
    if not _NAME_RE.match(name):
        raise UserError(f"unknown artifact {ref!r}: expected NAME, NAME@latest, NAME@v3 or a path")
    dirs = _name_dirs(root, name)
    if not dirs:
        known = sorted({p.name for d in set(KIND_DIRS.values()) if (root / d).is_dir() for p in (root / d).iterdir()})
        hint = f"known: {', '.join(known)}" if known else f"no artifacts under {root} yet"
        raise UserError(f"unknown artifact {name!r} in {root} ({hint}); see `distill artifacts list`")
    versions = [v for d in dirs for v in list_versions(d)]
    if not versions:
        raise UserError(f"artifact {name!r} has no committed version in {root}")
    if version in ("", "latest"):
        chosen = max(versions, key=lambda p: int(p.name[1:]))
    else:
        match = re.fullmatch(r"v?(\d+)", version)
        if not match:
            raise UserError(f"bad version {version!r} in {ref!r}: use @latest, @v3 or @v0003")
        wanted = format_version(int(match.group(1)))
        chosen = next((v for v in versions if v.name == wanted), None)
        if chosen is None:
            have = ", ".join(v.name for v in versions)
            raise UserError(f"artifact {name!r} has no version {wanted} (have: {have})")
    return _check_kind(Artifact(chosen, _read_manifest(chosen)), kind)


def _check_kind(artifact: Artifact, kind: str | tuple[str, ...] | None) -> Artifact:
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and artifact.kind not in kinds:
        raise UserError(f"{artifact.ref} is a {artifact.kind} artifact; expected {' or '.join(kinds)}")
    return artifact


def list_artifacts(root: Path | None = None) -> list[Artifact]:
    root = root or home()
    found = []
    for kind_dir in sorted(set(KIND_DIRS.values())):
        base = root / kind_dir
        if not base.is_dir():
            continue
        for name_dir in sorted(base.iterdir()):
            if not name_dir.is_dir():
                continue
            for version_dir in list_versions(name_dir):
                try:
                    found.append(Artifact(version_dir, _read_manifest(version_dir)))
                except UserError:
                    found.append(Artifact(version_dir, {"name": name_dir.name, "version": version_dir.name,
                                                        "kind": "?", "corrupted": True}))
    return found


# ---------------------------------------------------------------------------- hashing


def _canonical(value: Any) -> Any:
    """A JSON-stable form of a dataset cell (floats rounded to survive arrow round trips)."""
    if isinstance(value, float):
        return repr(round(value, 10))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    if hasattr(value, "tolist"):
        return _canonical(value.tolist())
    return value


def dataset_sha256(data) -> str:
    """Hash of a Dataset / DatasetDict over its rows in canonical form (split names included).

    Arrow files carry fingerprints and shard layouts that change between identical writes, so
    the hash is computed over the rows (sorted column names, canonical JSON), in row order.
    """
    import datasets

    digest = hashlib.sha256()
    splits = data.items() if isinstance(data, datasets.DatasetDict) else [("", data)]
    for split, dataset in sorted(splits, key=lambda kv: kv[0]):
        digest.update(f"split:{split}\n".encode())
        columns = sorted(dataset.column_names)
        digest.update(json.dumps(columns).encode())
        for batch in dataset.with_format("python").iter(batch_size=1000):
            for i in range(len(batch[columns[0]]) if columns else 0):
                row = {c: _canonical(batch[c][i]) for c in columns}
                digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
                digest.update(b"\n")
    return digest.hexdigest()


def files_sha256(directory: Path) -> str:
    """Hash of a directory over relative paths and file contents (for models)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def payload_sha256(version_dir: Path) -> str:
    if (version_dir / DATASET_DIR).is_dir():
        import datasets

        return dataset_sha256(datasets.load_from_disk(str(version_dir / DATASET_DIR)))
    if (version_dir / MODEL_DIR).is_dir():
        return files_sha256(version_dir / MODEL_DIR)
    return ""


def verify(artifact: Artifact) -> tuple[bool, str]:
    """Recompute the content hash (and the manifest's and other files' hashes); returns (ok, message)."""
    from distill.artifacts import integrity

    return integrity.verify(artifact)


# ---------------------------------------------------------------------------- writing


@dataclass
class ArtifactWriter:
    """A version under construction; fill ``path`` then let ``create`` commit it."""

    name: str
    kind: str
    path: Path
    config: dict[str, Any]
    parents: list[Artifact]
    stats: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset_path(self) -> Path:
        return self.path / DATASET_DIR

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_DIR

    def save_dataset(self, data) -> None:
        """Save a Dataset or DatasetDict as the payload; row counts per split are recorded."""
        import datasets

        # datasets 5.2 cannot load back an empty split saved with the default sharding: force one shard.
        if isinstance(data, datasets.DatasetDict):
            data.save_to_disk(str(self.dataset_path), num_shards={k: 1 for k, d in data.items() if len(d) == 0} or None)
        else:
            data.save_to_disk(str(self.dataset_path), num_shards=1 if len(data) == 0 else None)
        if isinstance(data, datasets.DatasetDict):
            self.counts.update({split: len(d) for split, d in data.items()})
        else:
            self.counts["rows"] = len(data)


def check_name_kind(name: str, kind: str, root: Path | None = None) -> None:
    """Refuse an output name that already belongs to another kind."""
    root = root or home()
    for name_dir in _name_dirs(root, name):
        for version_dir in reversed(list_versions(name_dir)):
            try:
                existing = _read_manifest(version_dir)["kind"]
            except UserError:
                continue
            if existing != kind:
                raise UserError(
                    f"artifact name {name!r} is already used by a {existing} artifact; "
                    f"choose another --name for this {kind}"
                )
            return


@contextmanager
def create(name: str, kind: str, config: dict[str, Any] | None = None, parents: list[Artifact] | None = None,
           root: Path | None = None, licenses: dict[str, str] | None = None) -> Iterator[ArtifactWriter]:
    """Build a new version of ``name`` atomically.

    Yields a writer whose ``path`` is a hidden temp dir beside the versions; on normal exit the
    manifest is written and the dir renamed to the next ``vNNNN``. On error (or a kill) the temp dir
    is removed (or left hidden, never listed), so no half-written version is ever visible.
    """
    if kind not in KIND_DIRS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    root = root or home()
    validate_name(name)
    check_name_kind(name, kind, root)
    name_dir = root / KIND_DIRS[kind] / name
    name_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=name_dir))
    writer = ArtifactWriter(name=name, kind=kind, path=tmp, config=redact(dict(config or {})),
                            parents=list(parents or []))
    try:
        yield writer
        _commit(writer, name_dir, licenses or {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit(writer: ArtifactWriter, name_dir: Path, licenses: dict[str, str]) -> Path:
    from distill.artifacts import integrity
    from distill.environment import environment_info, git_commit, package_version

    content_sha256, other_files, hashes = integrity.hash_version(writer.path)

    manifest: dict[str, Any] = {
        "name": writer.name,
        "version": None,
        "kind": writer.kind,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "distill_version": package_version(),
        "git_commit": git_commit(),
        "config": writer.config,
        "parents": [{"ref": p.ref, "kind": p.kind, "sha256": p.content_sha256} for p in writer.parents],
        "counts": writer.counts,
        "stats": writer.stats,
        "licenses": _inherit_licenses(writer.parents, licenses),
        "environment": environment_info(),
        "content_sha256": content_sha256,
    }
    manifest.update(writer.extra)
    manifest = integrity.prepare_manifest(manifest, other_files)  # redacted; + other files, inputs_verified
    while True:  # concurrent writers: the first rename into a free number wins
        versions = list_versions(name_dir)
        number = int(versions[-1].name[1:]) + 1 if versions else 1
        manifest["version"] = format_version(number)
        integrity.seal(manifest)  # manifest_sha256, over every other field (the version included)
        (writer.path / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.chmod(writer.path, 0o755)  # mkdtemp makes it 0700
        try:
            os.rename(writer.path, name_dir / manifest["version"])
        except OSError:
            if (name_dir / manifest["version"]).exists():
                continue
            raise
        writer.path = name_dir / manifest["version"]
        integrity.remember(writer.path, hashes)
        return writer.path


def _inherit_licenses(parents: list[Artifact], own: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for parent in parents:
        merged.update(parent.manifest.get("licenses") or {})
    merged.update({k: v for k, v in own.items() if v})
    return merged


# ---------------------------------------------------------------------------- lineage


def lineage(artifact: Artifact, root: Path | None = None, _depth: int = 0, _seen: set | None = None) -> list[str]:
    """Lines of an indented tree: the artifact, then each parent recursively."""
    seen = _seen if _seen is not None else set()
    pad = "  " * _depth + ("└─ " if _depth else "")
    config = artifact.manifest.get("config") or {}
    origin = config.get("teacher") or config.get("model") or config.get("source") or config.get("dataset") or ""
    detail = f"  [{artifact.kind}]" + (f"  from {origin}" if isinstance(origin, str) and origin else "")
    lines = [f"{pad}{artifact.ref}{detail}  sha256:{artifact.content_sha256[:12]}"]
    if artifact.ref in seen:
        return lines
    seen.add(artifact.ref)
    for parent in artifact.manifest.get("parents") or []:
        try:
            parent_artifact = resolve(parent["ref"], root=root, verify=False)
        except UserError:
            lines.append("  " * (_depth + 1) + f"└─ {parent['ref']}  (missing)")
            continue
        marker = "" if parent_artifact.content_sha256 == parent.get("sha256") else "  (CHANGED since use)"
        sub = lineage(parent_artifact, root, _depth + 1, seen)
        sub[0] += marker
        lines.extend(sub)
    from distill.artifacts.origins import outside_sources

    lines.extend("  " * (_depth + 1) + f"└─ {leaf}" for leaf in outside_sources(config))
    return lines


def nearest_in_lineage(artifact: Artifact | None, pick, max_depth: int = 8) -> tuple[Any, str] | None:
    """``(value, ref)`` of the nearest artifact — this one, then its parents breadth-first — for which
    ``pick(manifest)`` is not None; parents that no longer resolve are skipped. The one ancestor walk."""
    frontier, seen = ([artifact] if artifact is not None else []), set()
    for _ in range(max_depth + 1):
        next_frontier = []
        for current in frontier:
            if current.ref in seen:
                continue
            seen.add(current.ref)
            value = pick(current.manifest)
            if value is not None:
                return value, current.ref
            for parent in current.manifest.get("parents") or []:
                try:
                    next_frontier.append(resolve(parent["ref"], verify=False))
                except UserError:
                    continue
        frontier = next_frontier
    return None
