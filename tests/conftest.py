"""Shared test setup. Fixtures live in plugin modules, one per area, so they can be shared
session-wide (one vLLM engine / server per test session).

Tiers: bare `pytest` runs the unit tier only; a test that starts vLLM, trains, or spawns the CLI carries the
marker `vllm` / `train` / `cli` (`slow`: end-to-end flows). The `tiers` plugin records the running test and
fails one that starts such a thing without its marker (see tests/tiers.py)."""

import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

pytest_plugins = ["tiers", "fixtures_models", "fixtures_vllm"]
