"""Read a published dataset's rows: from the Hub (revision resolved to a commit) or a local copy.

A local copy is a file (``.jsonl``/``.json``/``.parquet``), a glob, or a directory laid out like
the Hub repo (``data/train-00000-of-00006.parquet``, ``metadata/train-….parquet``): the config's
folder is picked from the source's spec, so a ``huggingface-cli download`` of the repo works as is.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Any

from distill.artifacts.sources import FILE_FORMATS, file_sha256, load_input, require_utf8
from distill.errors import UserError
from distill.stages.imports.spec import ConfigSpec, SourceSpec


def load_raw(spec: SourceSpec, config: str, config_spec: ConfigSpec, split: str, revision: str | None,
             data_files: str | None, limit: int | None = None):
    """(published rows as a ``datasets.Dataset``, provenance for the manifest)."""
    if data_files:
        files = local_files(data_files, config_spec.directory, split)
        data = _read_files(files)
        return data, {"type": "local", "hub_id": spec.hub_id, "config": config, "split": split,
                      "revision": revision, "files": [str(f) for f in files],
                      "sha256": _files_digest(files)}
    data, source = load_input(spec.hub_id, split=split, config=config, revision=revision, limit=limit)
    return data, {**source.info, "hub_id": spec.hub_id}


def local_files(spec: str, directory: str, split: str) -> list[Path]:
    """The data files a local path names, in a stable order."""
    path = Path(spec).expanduser()
    if any(ch in spec for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
    elif path.is_file():
        files = [path]
    elif path.is_dir():
        base = path / directory if (path / directory).is_dir() else path
        candidates = [p for p in sorted(base.iterdir()) if p.is_file() and p.suffix.lower() in FILE_FORMATS]
        for_split = [p for p in candidates if p.name.split("-")[0].split(".")[0] == split]
        files = for_split or candidates
    else:
        raise UserError(f"--data-files {spec}: no such file or directory")
    files = [f.absolute() for f in files if f.suffix.lower() in FILE_FORMATS]
    if not files:
        raise UserError(f"--data-files {spec}: no .jsonl/.json/.parquet/.csv files there "
                        f"(for a Hub-layout folder, files go in {directory}/{split}-*.parquet)")
    return files


def _read_files(files: list[Path]):
    import datasets

    formats = {FILE_FORMATS[f.suffix.lower()] for f in files}
    if len(formats) != 1:
        raise UserError(f"--data-files mixes formats ({', '.join(sorted(formats))}): give one kind of file")
    fmt = formats.pop()
    for file in files:
        require_utf8(file, fmt)
    try:
        return datasets.load_dataset(fmt, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # noqa: BLE001 - arrow/json errors vary
        raise UserError(f"cannot read {files[0]}{' and others' if len(files) > 1 else ''} as {fmt} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None


def _files_digest(files: list[Path]) -> str:
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def describe(info: dict[str, Any]) -> str:
    where = info.get("id") or info.get("hub_id")
    if info.get("type") == "local":
        return f"{where} (local copy: {len(info['files'])} file(s))"
    return f"{where}@{(info.get('revision') or 'main')[:12]}"
