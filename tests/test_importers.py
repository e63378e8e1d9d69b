"""`distill import`: each published schema (local fixtures in the exact Hub columns) -> our schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_models import fake_hub_dataset, run_cli

from distill import artifacts, config
from distill.errors import UserError
from distill.stages import imports as importers
from distill.stages.imports import schema
from distill.stages.imports.openthoughts import MATH_PREFIX

DATA = Path(__file__).resolve().parent / "data"
OT = "open-thoughts/OpenThoughts-114k"


def _import(**kwargs):
    artifact = importers.run(config.build(importers.ImportConfig, kwargs))
    return artifact, artifact.load_dataset().to_list()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_row_contract(row: dict) -> None:
    """What filter/train rely on, for every row of every source."""
    assert row["messages"][-1] == {"role": "assistant", "content": row["completion"]}
    assert row["prompt"] == row["messages"][:-1]
    if row["system"]:
        assert row["messages"][0] == {"role": "system", "content": row["system"]}
    else:
        assert all(m["role"] != "system" for m in row["messages"])
    assert row["problem"] and row["problem"] in next(m["content"] for m in row["messages"] if m["role"] == "user")


# ---------------------------------------------------------------------------- OpenThoughts-114k


def test_openthoughts_default_think_rewrites_tags_and_system_prompt(home):
    artifact, rows = _import(source=OT, data_files=str(DATA / "openthoughts/default.jsonl"))
    published = _jsonl(DATA / "openthoughts/default.jsonl")
    assert artifact.ref == "openthoughts-114k-default@v0001" and artifact.kind == "imported"
    assert len(rows) == len(published) == 6
    for row in rows:
        _assert_row_contract(row)
        assert schema.tags_disagree(row["system"], row["completion"]) is None
        assert "<|begin_of_thought|>" not in row["system"] and "<|begin_of_solution|>" not in row["system"]
        assert "<think>" in row["system"] and row["completion"].startswith("<think>\n")
        assert "<|" not in row["completion"]
    first = rows[0]
    reasoning, solution = published[0]["conversations"][1]["value"].split("<|end_of_thought|>")
    assert first["completion"] == (
        "<think>\n" + reasoning.replace("<|begin_of_thought|>", "").strip() + "\n</think>\n\n"
        + solution.replace("<|begin_of_solution|>", "").replace("<|end_of_solution|>", "").strip())
    assert first["problem"] == published[0]["conversations"][0]["value"][len(MATH_PREFIX):]
    assert first["domain"] == "math" and first["answer"] is None and first["id"] == "openthoughts-114k-000000"
    assert [r["domain"] for r in rows] == ["math", "code", "code", None, None, "math"]
    # the truncated trace (no end tags) is kept and flagged, not repaired
    truncated = rows[-1]
    assert truncated["completion"].startswith("<think>\n") and "</think>" not in truncated["completion"]
    assert truncated["well_formed"] is False and artifact.manifest["stats"]["malformed"] == 1
    assert artifact.manifest["stats"]["tag_mismatch"] == 0


def test_openthoughts_native_is_the_published_text_verbatim(home):
    artifact, rows = _import(source=OT, data_files=str(DATA / "openthoughts/default.jsonl"), format="native")
    assert artifact.name == "openthoughts-114k-default-native"
    for row, raw in zip(rows, _jsonl(DATA / "openthoughts/default.jsonl"), strict=True):
        _assert_row_contract(row)
        assert row["system"] == raw["system"] == schema.SKY_T1_SYSTEM_PROMPT
        assert [m["content"] for m in row["messages"]] == [raw["system"]] + [t["value"] for t in raw["conversations"]]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert schema.tags_disagree(row["system"], row["completion"]) is None
    manifest = artifact.manifest
    assert manifest["conversation"]["system_prompt"] == schema.SKY_T1_SYSTEM_PROMPT
    assert manifest["conversation"]["reasoning_tags"] == "openthoughts"
    assert manifest["licenses"] == {OT: "apache-2.0"}
    assert manifest["source"]["hub_id"] == OT and manifest["source"]["type"] == "local"
    assert len(manifest["source"]["sha256"]) == 64 and manifest["source"]["format"] == "native"


def test_openthoughts_metadata_rebuilds_the_default_conversation_exactly(home):
    """OpenThoughts built `default` from `metadata` (open_thoughts/prompt.py); so do we."""
    _, from_metadata = _import(source=OT, config="metadata", format="native",
                               data_files=str(DATA / "openthoughts/metadata.jsonl"))
    _, from_default = _import(source=OT, format="native", data_files=str(DATA / "openthoughts/default.jsonl"))
    assert len(from_metadata) == 5
    for meta, default in zip(from_metadata, from_default[:5], strict=True):
        assert meta["messages"] == default["messages"]
        assert meta["problem"] in default["messages"][1]["content"]


def test_openthoughts_metadata_rows_carry_what_the_filter_verifies(home):
    artifact, rows = _import(source=OT, config="metadata", data_files=str(DATA / "openthoughts/metadata.jsonl"))
    published = _jsonl(DATA / "openthoughts/metadata.jsonl")
    by_domain = {r["domain"]: r for r in rows}
    assert [r["domain"] for r in rows] == [p["domain"] for p in published] == [
        "math", "code", "code", "science", "puzzle"]
    assert rows[0]["answer"] == "72" and rows[0]["source"] == "gsm8k"
    assert by_domain["science"]["answer"] == "4" and by_domain["puzzle"]["answer"] == "9"
    stdin_code, call_code = rows[1], rows[2]
    assert stdin_code["answer"] is None and json.loads(stdin_code["test_cases"])["outputs"] == ["15\n", "1\n", "5050\n"]
    assert stdin_code["fn_name"] is None and stdin_code["starter_code"] is None
    assert call_code["fn_name"] == "add_digits" and call_code["starter_code"] == "def add_digits(num):\n\t"
    assert call_code["messages"][1]["content"].endswith("\ndef add_digits(num):\n\t")
    for row, raw in zip(rows, published, strict=True):
        _assert_row_contract(row)
        assert row["completion"] == schema.think_completion(raw["deepseek_reasoning"], raw["deepseek_solution"])
        assert row["ground_truth_solution"] == raw["ground_truth_solution"]
        assert schema.tags_disagree(row["system"], row["completion"]) is None
    assert artifact.manifest["stats"]["domains"] == {"math": 1, "code": 2, "science": 1, "puzzle": 1}


def test_system_prompt_and_answer_tags_always_agree():
    """Every conversion pairs a completion with a system prompt that asks for its tags."""
    think_system = schema.rewrite_system_for_think(schema.SKY_T1_SYSTEM_PROMPT)
    assert schema.tag_styles(think_system) == {"think"}
    assert "{thought with steps separated with '\\n\\n'}" in think_system
    assert "written after </think> as follows: {final formatted, precise, and clear solution}" in think_system
    native = schema.openthoughts_completion("I think.", "42")
    converted, ok = schema.openthoughts_to_think(native)
    assert ok and converted == "<think>\nI think.\n</think>\n\n42"
    assert schema.tags_disagree(schema.SKY_T1_SYSTEM_PROMPT, native) is None
    assert schema.tags_disagree(think_system, converted) is None
    # the two mismatches the check exists for
    assert "openthoughts" in schema.tags_disagree(schema.SKY_T1_SYSTEM_PROMPT, converted)
    assert "think" in schema.tags_disagree(think_system, native)
    assert schema.tags_disagree(None, converted) is None and schema.tags_disagree("Be brief.", native) is None


# ---------------------------------------------------------------------------- other sources


def test_openr1_math_one_row_per_generation_with_its_flags(home):
    artifact, rows = _import(source="open-r1/OpenR1-Math-220k",
                             data_files=str(DATA / "import_openr1_math/default.jsonl"))
    published = _jsonl(DATA / "import_openr1_math/default.jsonl")
    assert len(rows) == 5 and artifact.manifest["counts"] == {"rows": 5, "source_rows": 2}
    first = [r for r in rows if r["id"] == published[0]["uuid"]]
    assert [r["sample_index"] for r in first] == [0, 1, 2]
    assert [r["correctness_math_verify"] for r in first] == [True, False, False]
    assert [r["is_reasoning_complete"] for r in first] == [True, True, False]
    assert [r["finish_reason"] for r in first] == ["stop", "stop", "length"]
    assert all(r["correctness_llama"] is None and r["answer"] == "2" and r["domain"] == "math" for r in first)
    assert first[2]["well_formed"] is False and "</think>" not in first[2]["completion"]
    second = [r for r in rows if r["id"] == published[1]["uuid"]]
    assert [r["correctness_llama"] for r in second] == [True, True] and second[0]["finish_reason"] is None
    for row in rows:
        _assert_row_contract(row)
        assert row["completion"] == published[0 if row in first else 1]["generations"][row["sample_index"]]
        assert row["source"] == ("olympiads" if row in first else "cn_contest")
    assert artifact.manifest["licenses"] == {"open-r1/OpenR1-Math-220k": "apache-2.0"}


def test_r1_distill_sft_restores_the_prefilled_think_opener(home):
    _, v0 = _import(source="ServiceNow-AI/R1-Distill-SFT", config="v0",
                    data_files=str(DATA / "import_r1_distill_sft/v0.jsonl"))
    raw = _jsonl(DATA / "import_r1_distill_sft/v0.jsonl")
    assert [r["answer"] for r in v0] == ["4", "70^\\circ"] and {r["domain"] for r in v0} == {"math"}
    assert not raw[1]["reannotated_assistant_content"].startswith("<think>")
    assert v0[1]["completion"].startswith("<think>\nOkay, the sum") and v0[1]["well_formed"]
    assert [r["id"] for r in v0] == ["0", "1"] and v0[0]["source"] == "synthetic_math"
    _, native = _import(source="ServiceNow-AI/R1-Distill-SFT", config="v0", format="native",
                        data_files=str(DATA / "import_r1_distill_sft/v0.jsonl"))
    assert [r["completion"] for r in native] == [r["reannotated_assistant_content"] for r in raw]
    artifact, v1 = _import(source="ServiceNow-AI/R1-Distill-SFT", config="v1",
                           data_files=str(DATA / "import_r1_distill_sft/v1.jsonl"))
    assert [r["domain"] for r in v1] == ["math", "general"] and [r["answer"] for r in v1] == ["144", None]
    assert v1[1]["completion"].startswith("<think>\nOkay, the user wants a haiku")
    for row in v0 + v1:
        _assert_row_contract(row)
    assert artifact.manifest["licenses"] == {"ServiceNow-AI/R1-Distill-SFT": "cc-by-nc-sa-4.0"}


def test_mixture_of_thoughts_domains_from_the_upstream_source(home):
    _, rows = _import(source="open-r1/Mixture-of-Thoughts",
                      data_files=str(DATA / "import_mixture_of_thoughts/all.jsonl"))
    assert [r["domain"] for r in rows] == ["math", "code", "science"]
    assert [r["num_tokens"] for r in rows] == [41, 88, 30]
    for row in rows:
        _assert_row_contract(row)
        assert row["answer"] is None and row["well_formed"]


# ---------------------------------------------------------------------------- loading and the CLI


def test_local_copy_in_the_hub_layout_picks_the_config_folder(home, tmp_path):
    import datasets

    repo = tmp_path / "OpenThoughts-114k"
    for config_name, folder in (("default", "data"), ("metadata", "metadata")):
        (repo / folder).mkdir(parents=True)
        rows = _jsonl(DATA / f"openthoughts/{config_name}.jsonl")
        datasets.Dataset.from_list(rows).to_parquet(str(repo / folder / "train-00000-of-00001.parquet"))
    artifact, rows = _import(source=OT, config="metadata", data_files=str(repo), limit=3)
    assert len(rows) == 3 and rows[0]["answer"] == "72"
    assert artifact.manifest["source"]["files"] == [str(repo / "metadata/train-00000-of-00001.parquet")]
    assert artifact.manifest["stats"]["published_rows"] == 5
    _, default_rows = _import(source=OT, data_files=str(repo), name="ot-default")
    assert len(default_rows) == 6


def test_hub_import_records_id_config_and_resolved_revision(home, monkeypatch):
    """The Hub path (unreachable here): load_dataset and the revision lookup are faked at the network edge."""
    calls = fake_hub_dataset(monkeypatch, _jsonl(DATA / "openthoughts/default.jsonl"))
    artifact, rows = _import(source=OT, revision="main", limit=2)
    assert calls == {"path": OT, "name": "default", "split": "train", "revision": "main"}
    source = artifact.manifest["source"]
    assert source["type"] == "hub" and source["id"] == OT and source["revision"] == "a" * 40
    assert source["config"] == "default" and len(rows) == 2


@pytest.mark.cli
def test_cli_import_and_user_errors(home):
    ok = run_cli("import", OT, "--data-files", "tests/data/openthoughts/default.jsonl", "--format", "native",
                 "--name", "ot-native", "--limit", "4", home=home, check=True)
    assert "imported 4 rows from 4 published rows" in ok.stdout and "-> ot-native@v0001" in ok.stdout
    assert "apache-2.0" in ok.stdout
    assert artifacts.resolve("ot-native", root=home).manifest["counts"]["rows"] == 4
    for args, needle in (
        (["import", "nobody/unknown-set"], "unknown import source"),
        (["import", OT, "--config", "nope", "--data-files", "tests/data/openthoughts/default.jsonl"], "configs: default, metadata"),
        (["import", OT, "--data-files", "tests/data/openthoughts/missing.jsonl"], "no such file"),
        (["import", OT, "--format", "chatml"], "use think or native"),
    ):
        result = run_cli(*args, home=home)
        assert result.returncode == 2, result.stderr
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_config_validation_is_a_user_error():
    with pytest.raises(UserError, match="--limit"):
        config.build(importers.ImportConfig, {"source": OT, "limit": 0})
