"""Load a stage's input: an artifact reference, a local jsonl/json/parquet/csv file, or a Hub dataset.

    data, source = load_input("traces@latest")                  # artifact (source.artifact is set)
    data, source = load_input("data/demo/train.jsonl")          # local file
    data, source = load_input("openai/gsm8k", split="test", config="main")   # Hub id

``source.info`` is what a manifest records about where the rows came from (ref / path + content
hash / Hub id + revision); ``source.artifact`` becomes the new artifact's parent. An artifact's rows are
checked against its manifest before they are returned (``Artifact.load_dataset``, see integrity.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill import artifacts
from distill.errors import UserError

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class Source:
    info: dict[str, Any] = field(default_factory=dict)
    artifact: artifacts.Artifact | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_input(spec: str, split: str | None = None, config: str | None = None, default_split: str = "train",
               revision: str | None = None, limit: int | None = None):
    """Return ``(datasets.Dataset, Source)`` for an artifact ref, a local file or a Hub id.

    ``limit``: the caller wants only the first rows. A Hub dataset is then streamed and only those rows
    are read (not the whole split downloaded); local files and artifacts are read whole, callers select."""
    import datasets

    if not spec:
        raise UserError("no input given: pass an artifact reference, a local file or a Hub dataset id")
    path = Path(spec).expanduser()
    if path.suffix.lower() in FILE_FORMATS and not path.exists():
        raise UserError(f"input file {path} not found")
    if path.is_file():
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"unsupported input file {path}: use .jsonl, .json, .parquet or .csv")
        if _has_no_rows(path, fmt):
            raise UserError(f"input file {path} has no rows")
        require_utf8(path, fmt)
        try:
            data = datasets.load_dataset(fmt, data_files=str(path.absolute()), split="train")
        except Exception as exc:  # noqa: BLE001 - pyarrow/json errors vary
            raise UserError(f"cannot read {path} as {fmt} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
        return data, Source(info={"type": "file", "path": str(path.absolute()), "sha256": file_sha256(path)})
    if artifacts.looks_like_reference(spec):
        artifact = artifacts.resolve(spec)
        data = artifact.load_dataset()
        if isinstance(data, datasets.DatasetDict):
            wanted = split or (default_split if default_split in data else next(iter(data)))
            if wanted not in data:
                raise UserError(f"{artifact.ref} has no split {wanted!r} (splits: {', '.join(data)})")
            data = data[wanted]
        return data, Source(info={"type": "artifact", "ref": artifact.ref, "sha256": artifact.content_sha256},
                            artifact=artifact)
    if "@" in spec or path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        # looks like a ref or a path, not a Hub id: let resolve() give the precise error
        artifacts.resolve(spec)
    return _load_hub(spec, split or default_split, config, revision, limit)


def _has_no_rows(path: Path, fmt: str) -> bool:
    """An empty or blank text file, or a parquet file of zero rows (datasets fails on these obscurely)."""
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows == 0
        except Exception:  # noqa: BLE001 - not parquet: the loader says so
            return False
    with open(path, "rb") as handle:
        return not any(line.strip() for line in handle)


def _load_hub(repo_id: str, split: str, config: str | None, revision: str | None, limit: int | None = None):
    import datasets

    try:
        if limit:
            data = _first_rows(repo_id, config, split, revision, limit)
        else:
            data = datasets.load_dataset(repo_id, config, split=split, revision=revision)
    except Exception as exc:  # noqa: BLE001 - offline / not found / gated errors vary
        raise UserError(f"cannot load Hub dataset {repo_id!r} (config {config}, split {split}): "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    resolved_revision = revision
    try:
        from huggingface_hub import HfApi

        resolved_revision = HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # noqa: BLE001 - offline: keep the requested revision
        pass
    info = {"type": "hub", "id": repo_id, "config": config, "split": split, "revision": resolved_revision}
    if limit:
        info["streamed_rows"] = len(data)  # the first rows of the split, read by streaming
    return data, Source(info=info)


def _first_rows(repo_id: str, config: str | None, split: str, revision: str | None, limit: int):
    """The first ``limit`` rows of a split, streamed: only the data files that hold them are read."""
    import itertools

    import datasets

    stream = datasets.load_dataset(repo_id, config, split=split, revision=revision, streaming=True)
    rows = list(itertools.islice(iter(stream), limit))
    features = stream.features
    return datasets.Dataset.from_list(rows, features=features) if features else datasets.Dataset.from_list(rows)


def require_utf8(path: Path, fmt: str, head_bytes: int = 4 << 20) -> None:
    """A text file (json/csv) must be UTF-8; checked on its first ``head_bytes`` (cheap), so the error is ours in
    one line rather than datasets' log and traceback."""
    if fmt not in ("json", "csv"):
        return
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        chunk = handle.read(head_bytes)
    try:
        decoder.decode(chunk, final=len(chunk) < head_bytes)
    except UnicodeDecodeError as exc:
        raise UserError(f"input file {path} is not UTF-8 text (byte {chunk[exc.start]:#04x} at offset {exc.start}): "
                        "re-encode it as UTF-8") from None


def require_columns(data, columns: dict[str, str | None], what: str = "input") -> None:
    """Error (listing the available columns) if any named column is missing."""
    missing = [f"{flag} {name!r}" for flag, name in columns.items() if name and name not in data.column_names]
    if missing:
        raise UserError(f"{what} has no column {', '.join(missing)}; available columns: "
                        f"{', '.join(data.column_names)}")
