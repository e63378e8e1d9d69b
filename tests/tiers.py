"""Test tiers: bare `pytest` is the unit tier; `make test` (CI) runs every tier.

A test that starts something heavy carries the marker of what it starts (declared in pyproject.toml):

- ``vllm``:  the real vLLM engine or a vLLM server (``vllm_engine`` / ``vllm_server`` / ``start_vllm_server``
  in fixtures_vllm.py, or ``vllm.LLM`` some other way);
- ``train``: real trainer steps (``Trainer.train`` in process, or ``accelerate launch`` / torchrun of `distill`);
- ``cli``:   the `distill` CLI or a repo script (scripts/*.py) in a subprocess (``run_cli`` in fixtures_models.py);
- ``slow``:  an end-to-end flow (not enforced).

pyproject's addopts deselect all four (``-m "not (vllm or train or cli or slow)"``); `make test` passes
``-m ""``, which replaces that expression and selects everything. ``pytest -m vllm`` runs one tier.

So that an unmarked heavy test cannot slip into the unit tier, this plugin (loaded by conftest.py) records the
running test and fails it, with a message naming the missing marker, where a heavy thing starts:

- ``require(marker, what)``: called by run_cli and start_vllm_server, and by the vLLM fixtures;
- at setup, a test whose fixture closure holds ``vllm_engine`` / ``vllm_server`` (session fixtures: only
  the first test that uses one runs its body, so the check is on every requesting test's fixture names);
- ``subprocess.Popen``: a command line that runs ``-m distill``, a repo script, a vLLM server, or
  ``accelerate launch`` / torchrun, whoever starts it (a test's own subprocess.run, ``launch.run_launcher``);
- in process, ``vllm.LLM.__init__`` and ``transformers.Trainer.train``: wrapped when their modules are first
  imported (an import hook; both import lazily, often mid-test), so the checks cost nothing where unused and
  do not depend on distill's internals. Training in a CLI subprocess is caught by the ``cli`` check
  instead; mark such a test ``train`` as well by reading it.

Outside a test (collection, session teardown) nothing is checked.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TIERS = ("vllm", "train", "cli", "slow")
REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
FIXTURE_NEEDS = {"vllm_engine": "vllm", "vllm_server": "vllm"}  # fixtures of fixtures_vllm.py that start vLLM

_current: pytest.Item | None = None


def require(marker: str, what: str) -> None:
    """Fail the running test unless it carries ``marker`` (no-op outside a test)."""
    item = _current
    if item is None or item.get_closest_marker(marker) is not None:
        return
    pytest.fail(f"{item.nodeid} {what} but is not marked `{marker}`: add @pytest.mark.{marker} (or "
                f"`pytestmark = pytest.mark.{marker}` for the module) so that bare `pytest` (the unit tier) skips "
                f"it; see tests/tiers.py", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _current
    _current = item
    try:
        return (yield)
    finally:
        _current = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for name in item.fixturenames:
        if name in FIXTURE_NEEDS:
            require(FIXTURE_NEEDS[name], f"uses the fixture `{name}` (it starts vLLM)")


# ---------------------------------------------------------------------------- subprocesses


def _needs(args, cwd) -> list[tuple[str, str]]:
    """The markers a command line needs, with what it does."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        try:
            argv = shlex.split(text)
        except ValueError:
            argv = text.split()
    else:
        argv = [os.fsdecode(a) for a in args]
    if not argv:
        return []
    needs = []
    names = {os.path.basename(argv[0])}
    modules = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"}
    if any(a.startswith("vllm.entrypoints") for a in modules) or (names & {"vllm"} and "serve" in argv[1:2]):
        needs.append(("vllm", "starts a vLLM server"))
    if modules & {"accelerate.commands.launch", "torch.distributed.run"} or names & {"accelerate", "torchrun"}:
        needs.append(("train", "launches distributed training (accelerate launch / torchrun)"))
    base = Path(os.fsdecode(cwd)) if cwd else Path.cwd()
    scripts = [a for a in argv if a.endswith(".py") and (base / a).resolve().parent == SCRIPTS]
    if "distill" in modules or names & {"distill"} or scripts:
        needs.append(("cli", f"runs {' '.join(scripts) if scripts else 'the distill CLI'} in a subprocess"))
    return needs


_popen_init = subprocess.Popen.__init__


@functools.wraps(_popen_init)
def _checked_popen_init(self, args, *rest, **kwargs):
    if _current is not None:
        for marker, what in _needs(args, kwargs.get("cwd")):
            require(marker, what)
    return _popen_init(self, args, *rest, **kwargs)


# ---------------------------------------------------------------------------- in-process engines and trainers


def _guard(cls, method: str, marker: str, what: str) -> None:
    original = getattr(cls, method)
    if getattr(original, "_tier_guard", False):
        return

    @functools.wraps(original)
    def checked(*args, **kwargs):
        require(marker, what)
        return original(*args, **kwargs)

    checked._tier_guard = True
    setattr(cls, method, checked)


IN_PROCESS = {  # module -> how to guard it once imported
    "vllm.entrypoints.llm": lambda m: _guard(m.LLM, "__init__", "vllm", "starts the vLLM engine (vllm.LLM)"),
    "transformers.trainer": lambda m: _guard(m.Trainer, "train", "train", "runs trainer steps (Trainer.train)"),
}


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """Applies IN_PROCESS's guard right after its module is executed, the first time it is imported."""

    def find_spec(self, name, path=None, target=None):
        if name not in IN_PROCESS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_and_guard(module):
                exec_module(module)
                IN_PROCESS[name](module)

            spec.loader.exec_module = exec_and_guard  # this spec's own loader instance
        return spec


def pytest_configure(config):
    subprocess.Popen.__init__ = _checked_popen_init
    sys.meta_path.insert(0, _GuardOnImport())
    for name, guard in IN_PROCESS.items():
        if name in sys.modules:  # imported before this plugin
            guard(sys.modules[name])
