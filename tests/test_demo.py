"""`make demo`, CI-sized: the real CLI flow on the bundled model (fewer problems, samples and steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from distill import artifacts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.slow, pytest.mark.cli, pytest.mark.vllm, pytest.mark.train]  # scripts/demo.py: all stages


def test_demo_flow_small(tmp_path):
    home = tmp_path / "demo_home"
    result = subprocess.run([sys.executable, "scripts/demo.py", "--small", "--home", str(home)], cwd=REPO,
                            capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for ref in ("demo-traces", "demo-filtered", "demo-student", "demo-eval-before", "demo-eval-after"):
        assert artifacts.resolve(ref, root=home).version == "v0001"
    lineage = artifacts.lineage(artifacts.resolve("demo-eval-after", root=home), root=home)
    chain = [line.strip().lstrip("└─ ").split()[0] for line in lineage]
    assert chain[:4] == ["demo-eval-after@v0001", "demo-student@v0001", "demo-filtered@v0001", "demo-traces@v0001"]

    def metrics(name):
        results = json.loads((artifacts.resolve(name, root=home).path / "results.json").read_text())
        return next(iter(results["benchmarks"].values()))["metrics"]

    before, after = metrics("demo-eval-before"), metrics("demo-eval-after")
    assert after["well_formed"]["mean"] > before["well_formed"]["mean"]
    assert after["pass@1"]["mean"] >= before["pass@1"]["mean"]
    assert (home / "demo_results.md").is_file() and (home / "demo_results.png").stat().st_size > 1000
    assert "demo-traces@v0001" in result.stdout  # the lineage was printed
