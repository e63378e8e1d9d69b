"""scripts/gpu_check.py (`make gpu-check`): its arithmetic and batching in process, and every row of its --tiny
mode on CPU (the same code paths as on a GPU) so that the check cannot rot before a GPU runs it."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.py"
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(gpu_check):
    return gpu_check.Check(argparse.Namespace(tiny=True, peak_tflops=None, without=["bitsandbytes"]))


def test_peak_flops_by_device_name(gpu_check):
    assert gpu_check.peak_flops("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert gpu_check.peak_flops("NVIDIA H200") == 989e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.peak_flops("NVIDIA H100 NVL") == 835e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.peak_flops("Tesla T4") is None
    assert gpu_check.mfu(10**9, 1000.0, None) is None  # unknown GPU: no MFU


def test_mfu_matches_the_published_7b_anchor(gpu_check):
    """100 % MFU for the 7B shape's ~7.07e9 multiplying parameters on an H100 is ~23k tok/s by 6N."""
    tokens_per_s = 989e12 / (6 * 7.07e9)
    assert 23_000 < tokens_per_s < 24_000
    assert gpu_check.mfu(7_070_000_000, tokens_per_s, 989e12) == pytest.approx(1.0)
    assert gpu_check.mfu(7_070_000_000, tokens_per_s / 2, 989e12) == pytest.approx(0.5)


def test_matmul_params_leave_out_an_untied_input_embedding(gpu_check, tiny):
    tied, untied = tiny.build("small"), tiny.build("large")
    assert gpu_check.matmul_params(tied) == sum(p.numel() for p in tied.parameters())
    embedding = untied.get_input_embeddings().weight.numel()
    assert gpu_check.matmul_params(untied) == sum(p.numel() for p in untied.parameters()) - embedding
    assert all(p.dtype == torch.bfloat16 for p in untied.parameters())


def test_padded_and_packed_batches_hold_the_same_tokens(tiny):
    sequences = tiny.sequences(512, steps=3)
    real = sum(map(len, sequences))
    padded, packed = tiny.padded_batches(sequences, pad=510), tiny.packed_batches(sequences)
    assert sum(int(b["attention_mask"].sum()) for b in padded) == real
    assert sum(b["input_ids"].numel() for b in packed) == real  # padding-free: no position is padding
    assert sum(b["input_ids"].numel() for b in padded) > real
    first = packed[0]
    starts = (first["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts[0] == 0 and len(starts) > 1  # several sequences per packed row, positions restart at each
    assert (first["labels"][0, starts] == -100).all()  # no loss across a sequence boundary
    assert all(b["input_ids"].shape[1] <= tiny.plan["tokens_per_step"] for b in packed)
    flattened = [t for b in packed for t in b["input_ids"][0].tolist()]
    assert flattened == [t for s in sequences for t in s]


def test_generalized_jsd(gpu_check):
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 11, generator=generator), torch.randn(3, 5, 11, generator=generator)
    assert gpu_check.generalized_jsd(a, a, 0.5).abs().max() < 1e-6
    jsd = gpu_check.generalized_jsd(a, b, 0.5)
    assert (jsd > 0).all() and (jsd <= math.log(2) + 1e-6).all()  # JSD is bounded by ln 2
    assert torch.allclose(jsd, gpu_check.generalized_jsd(b, a, 0.5), atol=1e-6)  # symmetric at beta 0.5


def test_the_tokenizer_maps_words_to_their_ids(tiny):
    tokenizer = tiny.tokenizer(512)
    assert tokenizer("t17 t3 t509")["input_ids"] == [17, 3, 509]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (510, 511)
    assert tokenizer.decode([17, 3, 511], skip_special_tokens=True) == "t17 t3"


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--peak-tflops", "1", "--out", str(out), *args],
                            capture_output=True, text=True, cwd=str(REPO), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tok/s" in result.stdout  # the table is printed
    return json.loads(out.read_text())


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.cli
@pytest.mark.train
@pytest.mark.slow
def test_tiny_mode_fills_every_row(tmp_path):
    report = _run(tmp_path)
    rows = report["rows"]
    assert [r["row"] for r in rows] == ["sft"] * 8 + ["lora", "qlora", "distill", "grpo"]
    assert {(r["model"], r["setup"]) for r in rows if r["row"] == "sft"} == {
        (model, f"{layout}, grad ckpt {gc}") for model in ("tiny-tied", "tiny-untied")
        for layout in ("padded", "packed") for gc in ("on", "off")}
    for r in rows:
        assert r["status"] == "ok", r
        for key in ("tokens_per_s", "step_s", "peak_memory_gib"):
            assert _numeric(r[key]), (key, r)
    assert all(_numeric(r["mfu"]) for r in rows if r["row"] == "sft")  # --peak-tflops stands in for a GPU's
    assert all(r["mfu"] is None for r in rows if r["row"] != "sft")
    by_row = {r["row"]: r for r in rows}
    assert by_row["distill"]["impl"] == "TRL DistillationTrainer"
    assert by_row["grpo"]["impl"] == "TRL GRPOTrainer"
    assert report["optional_packages"] == {"trl": True, "datasets": True, "bitsandbytes": True}
    assert report["tiny"] is True


@pytest.mark.cli
@pytest.mark.train
@pytest.mark.slow
def test_without_the_optional_packages_rows_degrade_and_say_so(tmp_path):
    report = _run(tmp_path, "--without", "trl", "--without", "bitsandbytes", "--only", "qlora", "--only", "distill",
                  "--only", "grpo")
    by_row = {r["row"]: r for r in report["rows"]}
    assert set(by_row) == {"qlora", "distill", "grpo"}
    assert by_row["qlora"]["status"] == "skipped" and by_row["qlora"]["notes"] == "bitsandbytes not installed"
    assert by_row["qlora"]["tokens_per_s"] is None
    for name in ("distill", "grpo"):
        assert by_row[name]["status"] == "ok"
        assert by_row[name]["impl"] == "minimal loop (TRL not installed)"
        for key in ("tokens_per_s", "step_s", "peak_memory_gib"):
            assert _numeric(by_row[name][key]), (key, by_row[name])
