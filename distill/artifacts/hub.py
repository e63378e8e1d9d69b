"""`--push-to-hub REPO`: upload an artifact version with a card and a `vNNNN` tag/branch."""

from __future__ import annotations

import json

from distill.artifacts import Artifact
from distill.errors import UserError

REPO_TYPES = {"checkpoint": "model"}


def repo_type_for(artifact: Artifact) -> str:
    return REPO_TYPES.get(artifact.kind, "dataset")


def card_text(artifact: Artifact) -> str:
    """A dataset/model card carrying the manifest (lineage, config, licences)."""
    manifest = artifact.manifest
    licenses = manifest.get("licenses") or {}
    license_line = f"license: {next(iter(licenses.values()))}\n" if len(set(licenses.values())) == 1 else ""
    parents = "\n".join(f"- `{p['ref']}` ({p.get('kind', '?')}, sha256 `{p.get('sha256', '')[:16]}`)"
                        for p in manifest.get("parents") or []) or "- none"
    config = manifest.get("config") or {}
    origin = config.get("teacher") or config.get("model") or config.get("dataset") or ""
    counts = ", ".join(f"{k}: {v}" for k, v in (manifest.get("counts") or {}).items())
    return (
        f"---\n{license_line}tags:\n- distill\n- {artifact.kind}\n---\n\n"
        f"# {artifact.name} {artifact.version}\n\n"
        f"A `{artifact.kind}` artifact made with distill {manifest.get('distill_version')}"
        f"{f' from `{origin}`' if origin else ''}.\n\n"
        f"Counts: {counts or 'n/a'}. Content sha256: `{artifact.content_sha256}`.\n\n"
        f"## Lineage\n{parents}\n\n"
        f"## Licences\n" + ("\n".join(f"- {k}: {v}" for k, v in licenses.items()) or "- unknown") + "\n\n"
        "## Manifest\n```json\n" + json.dumps(manifest, indent=2, default=str) + "\n```\n"
    )


def push(artifact: Artifact, repo_id: str, api=None, private: bool = False) -> str:
    """Upload the version directory to ``repo_id`` and tag it ``vNNNN``; returns the repo URL.

    ``api`` is an ``huggingface_hub.HfApi`` (injectable for tests; the Hub is not reachable here).
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    repo_type = repo_type_for(artifact)
    card = artifact.path / "README.md"
    if not card.exists() or artifact.kind != "checkpoint":
        card.write_text(card_text(artifact))
    try:
        url = api.create_repo(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(artifact.path), repo_id=repo_id, repo_type=repo_type,
                          commit_message=f"distill: {artifact.ref}")
        api.create_tag(repo_id=repo_id, repo_type=repo_type, tag=artifact.version,
                       tag_message=f"{artifact.ref} sha256:{artifact.content_sha256}", exist_ok=True)
    except Exception as exc:  # noqa: BLE001 - network/auth errors from huggingface_hub vary
        raise UserError(f"push to the Hub repo {repo_id!r} failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); the local artifact "
                        f"{artifact.ref} is intact") from None
    return str(url)
