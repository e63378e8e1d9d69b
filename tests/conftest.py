"""Shared test setup. Fixtures live in plugin modules, one per area, so they can be shared
session-wide (one vLLM engine / server per test session).

Tiers: bare `pytest` runs the unit tier only; a test that starts vLLM, trains, or spawns the CLI carries the
marker `vllm` / `train` / `cli` (`slow`: end-to-end flows). The `tiers` plugin records the running test and
fails one that starts such a thing without its marker (see tests/tiers.py)."""

import os

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

pytest_plugins = ["tiers", "fixtures_models", "fixtures_vllm"]

# Markers for test files whose owner is mid-refactor (they cannot take a `pytestmark` edit right now): move
# these into the files as decorators, then delete the entry. Applied before `-m` deselects.
PENDING_MARKS = {  # (file name, test function) -> markers
    ("test_filter.py", "test_filter_cli_on_realistic_traces"): ("cli",),
    ("test_filter.py", "test_same_hash_whatever_num_proc"): ("cli",),
    ("test_filter.py", "test_bad_input_is_one_line_and_exit_2"): ("cli",),
    ("test_filter.py", "test_code_rows_are_run_in_the_sandbox"): ("cli",),
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in PENDING_MARKS.get((item.path.name, getattr(item, "originalname", item.name)), ()):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)
