"""`distill eval` with the real vLLM engine on the bundled SmolLM2-135M (CPU build in CI).

One real CLI run end to end, and one engine-level run of a checkpoint artifact through the session's
shared engine (`vllm_engine`), checking lineage and the recorded conversation.
"""

import json
import os
from pathlib import Path

import pytest
from fixtures_models import run_cli

from distill import artifacts
from distill.config import build
from distill.stages.eval import EvalConfig, run

SMALL = str(Path(__file__).parent / "data" / "eval_small.jsonl")
pytestmark = pytest.mark.vllm


@pytest.mark.slow
@pytest.mark.cli
def test_eval_cli_end_to_end(home):
    result = run_cli("eval", "--model", "bundled", "--benchmark", SMALL, "--protocol", "greedy", "--max-tokens", "64",
                     "--enforce-eager", home=home, check=True)
    artifact = artifacts.resolve("eval-smollm2-135m-instruct", kind="eval")
    rows = artifact.load_dataset().to_list()
    assert sorted(r["id"] for r in rows) == ["add-1", "half-1", "mul-1", "sub-1"]  # greedy: n = 1
    assert all(r["completion"] and 0 < r["completion_tokens"] <= 64 for r in rows)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)
    assert all(r["status"] in ("correct", "incorrect", "unverified") and isinstance(r["lenient"], bool) for r in rows)
    assert all(r["prompt"][-1]["content"].endswith("put your final answer within \\boxed{}.") for r in rows)

    results = json.loads((artifact.path / "results.json").read_text())
    assert results["sampling"] == {"protocol": "greedy", "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 0}
    assert results["model"]["spec"] == "bundled" and results["model"]["ref"] is None
    assert len(results["model"]["generation_config_sha256"]) == 64
    assert len(results["conversation"]["chat_template_sha256"]) == 64
    assert "SmolLM" in results["conversation"]["effective_system_prompt"]  # the template's hidden default
    metrics = results["benchmarks"]["eval_small"]["metrics"]
    # the table's numbers are the per-sample verdicts averaged (n = 1: one sample per problem)
    assert metrics["pass@1"]["mean"] == pytest.approx(sum(r["correct"] for r in rows) / 4)
    assert metrics["lenient_accuracy"]["mean"] == pytest.approx(sum(r["lenient"] for r in rows) / 4)
    assert metrics["truncated"]["mean"] == pytest.approx(sum(r["finish_reason"] == "length" for r in rows) / 4)
    assert metrics["stopped"]["mean"] + metrics["truncated"]["mean"] == pytest.approx(1.0)
    assert metrics["completion_tokens"]["mean"] == pytest.approx(sum(r["completion_tokens"] for r in rows) / 4)
    assert "| eval_small | 4 × 1 |" in result.stdout and "wrote eval-smollm2-135m-instruct@v0001" in result.stdout
    # quiet by default: vLLM's start-up output (~140 lines, weight-loading warnings above all) goes to a log file
    output = result.stdout + result.stderr
    assert len(output.splitlines()) < 40 and "Attempted to load weight" not in output, output[-3000:]
    assert "starting vLLM on" in result.stderr and "vLLM ready in" in result.stderr
    log_file = Path(result.stderr.split("its log: ", 1)[1].split()[0])
    assert log_file.is_file() and log_file.stat().st_size > 0


def _checkpoint(model_dir: Path, conversation: dict) -> str:
    """A checkpoint artifact holding the bundled model (symlinked files) and a recorded conversation."""
    with artifacts.create("ckpt-smol", "checkpoint", config={"base_model": "bundled"}) as writer:
        writer.model_path.mkdir()
        for item in Path(model_dir).iterdir():
            if item.is_file():
                os.symlink(item, writer.model_path / item.name)
        writer.extra.update({"conversation": conversation, "base_model": "bundled"})
    return artifacts.resolve("ckpt-smol").ref


def test_eval_checkpoint_with_the_session_engine(vllm_engine, bundled_model_dir, home, capsys):
    system = "You are a careful math tutor."
    template = "Solve: {problem}\nAnswer with \\boxed{}."
    ref = _checkpoint(bundled_model_dir, {"system_prompt": system, "prompt_template": template, "few_shot": None})
    cfg = build(EvalConfig, {"model": ref, "benchmark": [SMALL], "protocol": "greedy", "max_tokens": 16, "n": 2,
                             "limit": 2, "pass_at": [1, 2]})
    eval_ref = run(cfg, engine=vllm_engine)

    artifact = artifacts.resolve(eval_ref, kind="eval")
    assert artifact.name == "eval-ckpt-smol"
    assert [p["ref"] for p in artifact.manifest["parents"]] == [ref]  # the evaluated checkpoint
    assert artifact.manifest["conversation"]["recorded_from"] == ref
    rows = artifact.load_dataset().to_list()
    assert sorted((r["id"], r["sample_index"]) for r in rows) == [("add-1", 0), ("add-1", 1), ("mul-1", 0),
                                                                   ("mul-1", 1)]
    first = rows[0]["prompt"]
    assert first[0] == {"role": "system", "content": system}
    assert first[-1]["content"] == template.replace("{problem}", rows[0]["problem"])
    by_id = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r["completion"])
    assert all(a == b for a, b in by_id.values())  # greedy: both samples of a problem are the same text
    results = json.loads((artifact.path / "results.json").read_text())
    assert results["model"]["ref"] == ref
    assert set(results["benchmarks"]["eval_small"]["metrics"]) >= {"pass@1", "pass@2", "lenient_accuracy"}
    assert "| eval_small | 2 × 2 |" in capsys.readouterr().out


def test_eval_through_an_openai_compatible_server_matches_the_in_process_engine(vllm_server, vllm_engine, home,
                                                                                capsys):
    """`--engine openai` against a real `vllm serve`: same prompts, same greedy text as the in-process engine."""
    common = {"benchmark": [SMALL], "protocol": "greedy", "max_tokens": 24}
    served = run(build(EvalConfig, {**common, "model": vllm_server.model, "engine": "openai",
                                    "base_url": vllm_server.base_url, "name": "eval-served"}))
    local = run(build(EvalConfig, {**common, "model": "bundled", "name": "eval-local"}), engine=vllm_engine)

    served_artifact, local_artifact = artifacts.resolve(served, kind="eval"), artifacts.resolve(local, kind="eval")
    served_rows = {r["id"]: r for r in served_artifact.load_dataset().to_list()}
    local_rows = {r["id"]: r for r in local_artifact.load_dataset().to_list()}
    assert sorted(served_rows) == sorted(local_rows) == ["add-1", "half-1", "mul-1", "sub-1"]
    for key, row in served_rows.items():
        assert row["prompt"] == local_rows[key]["prompt"]
        assert 0 < row["completion_tokens"] <= 24 and row["finish_reason"] in ("stop", "length")
    same = sum(row["completion"] == local_rows[key]["completion"] for key, row in served_rows.items())
    assert same >= 3, [(r["completion"], local_rows[k]["completion"]) for k, r in served_rows.items()]
    results = json.loads((served_artifact.path / "results.json").read_text())
    assert results["model"]["spec"] == vllm_server.model and results["sampling"]["max_tokens"] == 24
    assert results["model"]["engine"] == "openai" and results["model"]["base_url"] == vllm_server.base_url
    metrics = results["benchmarks"]["eval_small"]["metrics"]
    assert metrics["pass@1"]["mean"] == pytest.approx(sum(r["correct"] for r in served_rows.values()) / 4)
    assert "| eval_small | 4 × 1 |" in capsys.readouterr().out
