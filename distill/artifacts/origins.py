"""Where an artifact's data came from when it was not another artifact, for `distill lineage`.

    outside_sources(manifest["config"])   # ["data: /data/gsm8k_train.jsonl  [file]  sha256:17f347dc5147"]
"""

from __future__ import annotations


def outside_sources(config: dict) -> list[str]:
    """The inputs that are not artifacts (a local file, a Hub dataset, an eval's benchmarks), so a lineage ends
    where the data came from."""
    source = config.get("source")
    if isinstance(source, dict) and source.get("type") == "file":
        return [f"data: {source.get('path')}  [file]  sha256:{str(source.get('sha256') or '')[:12]}"]
    if isinstance(source, dict) and source.get("type") == "hub":
        where = ":".join(str(source[k]) for k in ("config", "split") if source.get(k))
        revision = f"@{str(source['revision'])[:12]}" if source.get("revision") else ""
        return [f"data: {source.get('id')}{revision}{f' ({where})' if where else ''}  [hub]"]
    benchmarks = config.get("benchmark")
    if isinstance(benchmarks, list) and benchmarks:
        return [f"benchmarks: {', '.join(map(str, benchmarks))}"]
    return []
