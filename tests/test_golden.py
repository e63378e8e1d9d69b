"""Golden values: `distill filter` and every `distill import` source, pinned to exact outputs.

A refactor must not change what the pipeline writes without someone noticing. These tests run the
filter on a checked-in traces file and each importer on its checked-in fixture, in process, and
compare the row counts and the artifact content hash (``artifacts.dataset_sha256`` over the rows,
the value `distill artifacts show` verifies) with hard-coded values.

The expected values below are RECORDED FACTS, not hand-derived: they were produced by the
pre-refactor code (commit 26b04f7, flat modules ``distill.filter`` / ``distill.importers``) on these
same inputs and configs. A mismatch means the current code writes different rows than that code
did. Do not update a value to make a test pass unless the change of output is intended.

Regenerating deliberately (after an intended change of output, e.g. a new check column):
run ``pytest tests/test_golden.py``; each failure message prints the actual values as a
paste-ready literal. Review the difference (which split, which reason count changed; compare
``artifact.load_dataset()`` row by row against the previous version if needed), paste the new
values here, and say in the commit message why the output changed.

Fixtures: ``tests/data/golden/traces.jsonl`` (48 rows, 24 prompts: every reject reason of the
filter, one row per ``case`` with the reason the baseline gave it in ``expected``) and
``tests/data/golden/bench.jsonl`` (a 3-problem local benchmark for decontamination); the importer
fixtures are the ones of ``test_importers.py`` (``tests/data/openthoughts``, ``tests/data/import_*``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_models import fake_hub_dataset

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
OT = "open-thoughts/OpenThoughts-114k"

# ---------------------------------------------------------------------------- filter

FILTER_CONFIG = {"decontaminate": [str(GOLDEN / "bench.jsonl")], "max_per_prompt": 2, "max_tokens": 8192,
                 "timeout": 10.0, "num_proc": 1}  # + input; everything else at its default

GOLDEN_FILTER = {
    "kept": 20,
    "rejected": 28,
    "rejected_by_reason": {"incomplete": 2, "format": 7, "incorrect": 6, "unverified": 3, "language": 2,
                           "length": 1, "contaminated": 2, "duplicate": 2, "near_duplicate": 1, "over_cap": 2},
    # regenerated when the columns pass_rate, samples, judge_verdict and judge_rationale were added; with those
    # four columns removed the splits still hash to the earlier values (bedaa045… / 0600c597…), checked below
    "train_sha256": "436f0c85d00c87482274aff60b42b0537e6ea6cc250aff3fc6447b61e308e919",
    "rejected_sha256": "dcae3c28402aa568dd267426a7f700556c511b3a974113985133c45081a96c17",
    "content_sha256": "997dbfc0f0f0493344af19877e223fb0e0522d7677dc1815c5697a4e328c3cb3",
}
# the splits without the columns added after the recording above: the rows themselves did not change
GOLDEN_FILTER_BEFORE_NEW_COLUMNS = {
    "columns": ("pass_rate", "samples", "judge_verdict", "judge_rationale"),
    "train_sha256": "bedaa045ae5dbc29b7140d6147185750810adc949bcc2f8295041a673d691280",
    "rejected_sha256": "0600c597c8751882c1f1d005f073a93e5401cad13681be2a6541f078d05f235c",
}

# ---------------------------------------------------------------------------- importers

# case -> (ImportConfig fields, with data_files relative to tests/data)
IMPORTS = {
    "openthoughts-default": dict(source=OT, data_files="openthoughts/default.jsonl"),
    "openthoughts-default-native": dict(source=OT, data_files="openthoughts/default.jsonl", format="native"),
    "openthoughts-metadata": dict(source=OT, config="metadata", data_files="openthoughts/metadata.jsonl"),
    "openthoughts-metadata-native": dict(source=OT, config="metadata", format="native",
                                         data_files="openthoughts/metadata.jsonl"),
    "openr1-math": dict(source="open-r1/OpenR1-Math-220k", data_files="import_openr1_math/default.jsonl"),
    "r1-distill-sft-v0": dict(source="ServiceNow-AI/R1-Distill-SFT", config="v0",
                              data_files="import_r1_distill_sft/v0.jsonl"),
    "r1-distill-sft-v0-native": dict(source="ServiceNow-AI/R1-Distill-SFT", config="v0", format="native",
                                     data_files="import_r1_distill_sft/v0.jsonl"),
    "r1-distill-sft-v1": dict(source="ServiceNow-AI/R1-Distill-SFT", config="v1",
                              data_files="import_r1_distill_sft/v1.jsonl"),
    "mixture-of-thoughts": dict(source="open-r1/Mixture-of-Thoughts", data_files="import_mixture_of_thoughts/all.jsonl"),
}

# case -> (rows, content_sha256)
GOLDEN_IMPORTS = {
    "openthoughts-default": (6, "23a39174e74deb54f4eea72ae7ccccc13cda8ce01d4a4062fb5ebd6e031b41db"),
    "openthoughts-default-native": (6, "f8502fea8be506bac724a08de7c8db2c43f64aabed2868b3252b10898129f769"),
    "openthoughts-metadata": (5, "03eef7fc87dc4460e86c48217c22663f12dfef279f6bc1e45f7b763c3f5c89ab"),
    "openthoughts-metadata-native": (5, "e3b4fd86dee87309d02f35f4a2056003905684c3d663a6e6791615f40d6fdd1c"),
    "openr1-math": (5, "c17181b5b154c8646802077189d70893e2f3d248fe47ce4101890c91827adecf"),
    "r1-distill-sft-v0": (2, "db242f51cf8f9938fcffefdb4c41c0d033acf29049e0a238be0f320808c1122d"),
    "r1-distill-sft-v0-native": (2, "2c4ceae73b9cfc8d1f4bd6e3cc56fbd6a726ae17203e94461ac2afa408d359c1"),
    "r1-distill-sft-v1": (2, "e9eb79f232b2dd6f03452143e0d298f06a7295ba6fc07a5f2a1261f6d6e1793c"),
    "mixture-of-thoughts": (3, "705947b7e5c1e0eb666c1cc3e63390cf0299c084e3a901cc4bb607c505db6aa2"),
}

# the Hub path of `distill import` (load_dataset and HfApi faked at the network edge, as in test_importers.py)
GOLDEN_HUB_IMPORT = (2, "11efbfcff5d8393e5e0d9189567495f2cd0acdf2ae52c51213e79f1303758b76")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _differs(what: str, actual, expected) -> str:
    return (f"{what} differs from the golden value recorded from the pre-refactor code (see the module docstring "
            f"before changing it).\nexpected: {expected!r}\nactual:   {actual!r}")


def test_golden_filter(home):
    from distill import artifacts, config
    from distill.stages import filter as filter_stage

    cfg = config.build(filter_stage.FilterConfig, {"input": str(GOLDEN / "traces.jsonl"), **FILTER_CONFIG})
    artifact = filter_stage.run(cfg)
    data = artifact.load_dataset()

    # which row got which reason (recorded per case in the fixture's `expected` column)
    got = {row["case"]: row["reject_reason"] or "kept" for split in data.values() for row in split}
    expected = {row["case"]: row["expected"] for row in _jsonl(GOLDEN / "traces.jsonl")}
    changed = {case: (expected[case], got.get(case)) for case in expected if got.get(case) != expected[case]}
    assert not changed, (f"reject_reason differs from the golden value recorded from the pre-refactor code for "
                         f"these cases, as case: (expected, actual): {changed!r}")

    actual = {
        "kept": len(data["train"]),
        "rejected": len(data["rejected"]),
        "rejected_by_reason": {k: v for k, v in artifact.manifest["stats"]["rejected_by_reason"].items() if v},
        "train_sha256": artifacts.dataset_sha256(data["train"]),
        "rejected_sha256": artifacts.dataset_sha256(data["rejected"]),
        "content_sha256": artifact.content_sha256,
    }
    assert actual == GOLDEN_FILTER, _differs("filter output", actual, GOLDEN_FILTER)
    before = GOLDEN_FILTER_BEFORE_NEW_COLUMNS
    for split in ("train", "rejected"):
        assert artifacts.dataset_sha256(data[split].remove_columns(list(before["columns"]))) == \
            before[f"{split}_sha256"]
    assert artifacts.verify(artifact)[0]  # the manifest hash is the hash of what is on disk


@pytest.mark.parametrize("case", sorted(IMPORTS))
def test_golden_import(home, case):
    from distill import config
    from distill.stages import imports as importers

    fields = {**IMPORTS[case], "data_files": str(DATA / IMPORTS[case]["data_files"]), "name": case}
    artifact = importers.run(config.build(importers.ImportConfig, fields))
    actual = (len(artifact.load_dataset()), artifact.content_sha256)
    assert actual == GOLDEN_IMPORTS[case], _differs(f"import {case} (rows, content_sha256)", actual,
                                                    GOLDEN_IMPORTS[case])


def test_golden_import_from_the_hub(home, monkeypatch):
    from distill import config
    from distill.stages import imports as importers

    fake_hub_dataset(monkeypatch, _jsonl(DATA / "openthoughts/default.jsonl"))
    artifact = importers.run(config.build(importers.ImportConfig, {"source": OT, "revision": "main", "limit": 2}))
    actual = (len(artifact.load_dataset()), artifact.content_sha256)
    assert actual == GOLDEN_HUB_IMPORT, _differs("Hub import (rows, content_sha256)", actual, GOLDEN_HUB_IMPORT)
