"""Bad input to any stage is ONE `error:` line and exit 2 (a UserError in process), never a traceback,
and nothing is written.

- ``NUMBERS``: one table of bad numbers, each sent the three ways a value enters: as a flag (the real
  command line, in process), as ``--set key=value`` and as a YAML ``--config-file``;
- every float and int option of every stage config (read from the dataclasses, so a new option is
  covered): nan / inf / over-long numbers are refused where they enter (``distill.config.coerce``);
- worker counts: ``--num-proc`` is capped at the cores available, and a pool never starts more workers
  than it has tasks;
- bad files: a missing / empty / non-UTF-8 input, a binary or non-mapping ``--config-file``;
- a handful of real CLI runs (``cli``): stderr is exactly one line, exit code 2, no new directories.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures_models import run_cli

from distill import config, log
from distill.errors import UserError
from distill.stages.eval import EvalConfig
from distill.stages.filter import FilterConfig
from distill.stages.generate import GenerateConfig
from distill.stages.imports import ImportConfig
from distill.verify.pool import WorkerPool, available_cpus

HUGE = "9" * 5000  # past Python's 4,300-digit int/str conversion limit
CONFIGS = {"filter": FilterConfig, "generate": GenerateConfig, "eval": EvalConfig, "import": ImportConfig}


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    rows = [{"problem": f"{i}+{i}?", "completion": f"<think>{i} plus {i} is {2 * i}, so the sum is {2 * i}.</think> "
             f"\\boxed{{{2 * i}}}", "answer": str(2 * i)} for i in (1, 2)]
    out = {"two": tmp_path / "two.jsonl", "empty": tmp_path / "empty.jsonl", "missing": tmp_path / "missing.jsonl",
           "non_utf8": tmp_path / "non_utf8.jsonl", "binary_yaml": tmp_path / "binary.yaml",
           "list_yaml": tmp_path / "list.yaml", "scalar_yaml": tmp_path / "scalar.yaml"}
    out["two"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    out["empty"].write_text("")
    out["non_utf8"].write_bytes(b"\xff\xfe\x00\x01{\"problem\": \"\xe9\"}\n\x80\x81\n")
    out["binary_yaml"].write_bytes(bytes(range(256)) * 4)
    out["list_yaml"].write_text("- timeout\n- 5\n")
    out["scalar_yaml"].write_text("just a sentence\n")
    return out


def base_args(command: str, files) -> list[str]:
    """Arguments that make each command's config valid (so the case under test is the only problem)."""
    return {"filter": ["filter", "--input", str(files["two"])],
            "generate": ["generate", "--teacher", "bundled", "--dataset", str(files["two"])],
            "eval": ["eval", "--model", "bundled", "--benchmark", "gsm8k"],
            "import": ["import", "open-thoughts/OpenThoughts-114k"]}[command]


def base_config(command: str, files) -> dict:
    return {"filter": {"input": str(files["two"])},
            "generate": {"teacher": "bundled", "dataset": str(files["two"])},
            "eval": {"model": "bundled", "benchmark": ["gsm8k"]},
            "import": {"source": "open-thoughts/OpenThoughts-114k"}}[command]


def long_flag(cls, key: str) -> str:
    f = next(f for f in dataclasses.fields(cls) if f.name == key)
    return f.metadata.get("flag") or "--" + key.replace("_", "-")


def names_flag(message: str, flag: str) -> bool:
    """``--timeout`` is named, not just ``--code-timeout`` / ``--request-timeout``."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", message) is not None


def in_process(argv: list[str], capsys) -> tuple[int, str]:
    """The real command line (``distill.cli.main``), in this process: (exit code, stderr)."""
    from distill.cli import main

    renderer = log._renderer
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        log.set_renderer(renderer)
    return exit_info.value.code, capsys.readouterr().err


def assert_one_error_line(code: int, stderr: str) -> str:
    assert code == 2, stderr[-2000:]
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line:\n{stderr[-3000:]}"
    assert stderr.startswith("error: "), stderr
    return stderr[len("error: "):].strip()


def assert_nothing_written(home: Path) -> None:
    assert not home.exists() or not any(home.iterdir()), f"written under {home}: {sorted(home.rglob('*'))[:5]}"


# ---------------------------------------------------------------------------- the numbers table

# (command, config key, the value as a user types it, what the message says besides the flag)
NUMBERS = [
    ("filter", "timeout", "nan", "finite"),
    ("filter", "timeout", "inf", "finite"),
    ("filter", "timeout", "-inf", "finite"),
    ("filter", "timeout", "1e999", "finite"),
    ("filter", "timeout", "-1", "out of range"),
    ("filter", "timeout", "0", "out of range"),
    ("filter", "timeout", "1e300", "out of range"),
    ("filter", "timeout", "abc", "expects float"),
    ("filter", "timeout", HUGE, "finite|too long"),
    ("filter", "code_timeout", "nan", "finite"),
    ("filter", "code_timeout", "inf", "finite"),
    ("filter", "code_timeout", "-1", "out of range"),
    ("filter", "min_pass_fraction", "2", "out of range"),
    ("filter", "min_pass_fraction", "nan", "finite"),
    ("filter", "num_proc", "0", "out of range"),
    ("filter", "num_proc", "-3", "out of range"),
    ("filter", "num_proc", "many", "expects int"),
    ("filter", "num_proc", HUGE, "too long"),
    ("filter", "min_reasoning_chars", "-1", "out of range"),
    ("filter", "max_language_mix", "nan", "finite"),
    ("filter", "near_duplicate_threshold", "inf", "finite"),
    ("filter", "fuzzy_threshold", "nan", "finite"),
    ("filter", "ngram", "0", "out of range"),
    ("filter", "min_tokens", "-1", "out of range"),
    ("filter", "max_per_prompt", "0", "out of range"),
    ("filter", "seed", HUGE, "too long"),
    ("generate", "num_generations", "0", "at least 1"),
    ("generate", "num_generations", "1000000000", "at most 10,000.*held in memory"),
    ("generate", "num_generations", "1e9", "expects int"),
    ("generate", "num_generations", "four", "expects int"),
    ("generate", "num_generations", HUGE, "too long"),
    ("generate", "temperature", "-1", ">= 0"),
    ("generate", "temperature", "nan", "finite"),
    ("generate", "temperature", "inf", "finite"),
    ("generate", "top_p", "0", r"in \(0, 1\]"),
    ("generate", "top_p", "1.5", r"in \(0, 1\]"),
    ("generate", "top_p", "nan", "finite"),
    ("generate", "max_tokens", "0", "at least 1"),
    ("generate", "max_tokens", "3000000000", "below 2\\^31"),
    ("generate", "max_tokens", HUGE, "too long"),
    ("generate", "limit", "0", "at least 1"),
    ("generate", "request_timeout_s", "-1", "> 0"),
    ("generate", "request_timeout_s", "0", "> 0"),
    ("generate", "request_timeout_s", "inf", "finite"),
    ("generate", "request_timeout_s", "nan", "finite"),
    ("generate", "request_timeout_s", "1e9", "<= 86400"),
    ("generate", "price_in", "nan", "finite"),
    ("generate", "price_out", "-1", ">= 0"),
    ("generate", "max_concurrency", "0", ">= 1"),
    ("generate", "max_concurrency", "1000000", "<= 4096"),
    ("generate", "max_retries", "-1", ">= 0"),
    ("generate", "max_retries", "100000", "<= 100"),
    ("generate", "seed", "-1", ">= 0"),
    ("generate", "seed", "4294967296", "<= 4294967295"),
    ("generate", "gpu_memory_utilization", "0", r"in \(0, 1\]"),
    ("generate", "gpu_memory_utilization", "1.5", r"in \(0, 1\]"),
    ("generate", "gpu_memory_utilization", "nan", "finite"),
    ("generate", "max_model_len", "0", ">= 1"),
    ("generate", "tensor_parallel_size", "0", ">= 1"),
    ("eval", "timeout", "inf", "finite"),
    ("eval", "timeout", "nan", "finite"),
    ("eval", "code_timeout", "nan", "finite"),
    ("eval", "request_timeout_s", "-1", "> 0"),
    ("eval", "request_timeout_s", "inf", "finite"),
    ("eval", "num_generations", "0", ">= 1"),
    ("eval", "num_generations", "1000000000", "at most 10,000"),
    ("eval", "num_generations", HUGE, "too long"),
    ("eval", "temperature", "-1", ">= 0"),
    ("eval", "temperature", "nan", "finite"),
    ("eval", "top_p", "0", r"in \(0, 1\]"),
    ("eval", "top_p", "1.5", r"in \(0, 1\]"),
    ("eval", "max_tokens", "0", ">= 1"),
    ("eval", "limit", "0", ">= 1"),
    ("eval", "pass_at", "0", ">= 1"),
    ("eval", "pass_at", "100000", "at most 10,000"),
    ("eval", "min_pass_fraction", "2", "out of range"),
    ("eval", "num_proc", "0", "out of range"),
    ("import", "limit", "0", "at least 1"),
    ("import", "limit", "ten", "expects int"),
    ("import", "limit", HUGE, "too long"),
    ("import", "num_proc", "0", "at least 1"),
    ("import", "num_proc", HUGE, "too long"),
]


def _case_id(case) -> str:
    command, key, raw, _ = case
    return f"{command}-{key}={raw if len(raw) < 20 else f'{len(raw)}digits'}"


@pytest.mark.parametrize("case", NUMBERS, ids=[_case_id(c) for c in NUMBERS])
def test_bad_number_as_a_flag_is_one_error_line(case, files, home, capsys):
    command, key, raw, why = case
    flag = long_flag(CONFIGS[command], key)
    code, stderr = in_process([*base_args(command, files), f"{flag}={raw}"], capsys)
    message = assert_one_error_line(code, stderr)
    assert names_flag(message, flag), message
    # click itself refuses a value that is no number of the flag's type: "Invalid value for '--flag'"
    assert re.search(why, message) or message.startswith(f"Invalid value for '{flag}'"), message
    assert_nothing_written(home)


@pytest.mark.parametrize("case", NUMBERS, ids=[_case_id(c) for c in NUMBERS])
def test_bad_number_in_set_or_yaml_is_a_user_error(case, files, home, tmp_path):
    """--set and --config-file values go through the same checks as flags (distill.config.coerce)."""
    command, key, raw, why = case
    cls, flag = CONFIGS[command], long_flag(CONFIGS[command], key)
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"{key}: {raw}\n")
    for layer in (config.parse_sets([f"{key}={raw}"]), config.load_yaml(recipe)):
        with pytest.raises(UserError) as error:
            config.build(cls, base_config(command, files), layer)
        message = str(error.value)
        assert "\n" not in message and len(message) < 400, message
        assert names_flag(message, flag) and re.search(why, message), message
    assert_nothing_written(home)


# ---------------------------------------------------------------------------- every number option


def _number_fields():
    for command, cls in CONFIGS.items():
        for f in dataclasses.fields(cls):
            inner, _ = config.base_type(config.field_types(cls)[f.name])
            if inner in (int, float):
                yield pytest.param(command, f.name, inner, id=f"{command}-{f.name}")


@pytest.mark.parametrize("command, key, inner", list(_number_fields()))
def test_every_number_option_refuses_nan_inf_and_huge_numbers(command, key, inner, files):
    cls = CONFIGS[command]
    flag = config.flag_name(cls, key)[0]
    bad = [float("nan"), "nan", ".nan", HUGE, 10**5000]
    bad += [float("inf"), float("-inf"), "inf", "1e999", 10**400] if inner is float else [2**63, "1e9", True]
    for value in bad:
        layer = config.parse_sets([f"{key}={value}"]) if isinstance(value, str) else {key: value}
        with pytest.raises(UserError) as error:
            config.build(cls, base_config(command, files), layer)
        message = str(error.value)
        assert "\n" not in message and len(message) < 400, message
        assert flag in message, message


def test_a_field_may_allow_inf_but_never_nan():
    @dataclass
    class Limits:
        budget: float = config.option(1.0, "Seconds (inf: no limit).", allow_inf=True)
        rate: float = config.option(0.5, "A rate.")

    assert config.build(Limits, {"budget": "inf"}).budget == math.inf
    with pytest.raises(UserError, match="--budget must be a finite number, got nan"):
        config.build(Limits, {"budget": float("nan")})
    with pytest.raises(UserError, match="--rate must be a finite number, got inf"):
        config.build(Limits, {"rate": "inf"})


def test_messages_name_the_flag_and_the_key_when_they_differ():
    with pytest.raises(UserError) as error:
        config.build(GenerateConfig, {"teacher": "bundled", "dataset": "x.jsonl", "request_timeout_s": "inf"})
    assert str(error.value) == "--request-timeout must be a finite number, got inf (config key 'request_timeout_s')"
    with pytest.raises(UserError) as error:
        config.build(GenerateConfig, {"teacher": "bundled", "dataset": "x.jsonl", "num_generations": "many"})
    assert str(error.value) == "-n/--num-generations expects int, got 'many'"


# ---------------------------------------------------------------------------- worker counts


@pytest.mark.parametrize("cls, base", [(FilterConfig, {}), (EvalConfig, {"model": "bundled", "benchmark": ["gsm8k"]}),
                                       (ImportConfig, {"source": "open-thoughts/OpenThoughts-114k"})])
def test_num_proc_is_capped_at_the_cores_available(cls, base):
    assert config.build(cls, base, {"num_proc": 10**6}).num_proc == available_cpus()
    assert config.build(cls, base, {"num_proc": 1}).num_proc == 1
    assert config.build(cls, base).num_proc is None  # unset stays unset (the stage's default: all cores / 1)


def test_worker_pool_never_starts_more_workers_than_cores_or_tasks():
    assert WorkerPool(10**6).num_workers == available_cpus()
    assert WorkerPool(0).num_workers == WorkerPool(None).num_workers == available_cpus()
    with WorkerPool(10**6) as pool:
        assert pool.workers == []  # nothing starts before there is work
        assert pool.map(math.sqrt, [4.0], timeout_s=30, on_timeout=lambda p: None) == [2.0]
        assert len(pool.workers) == 1  # one task: one worker
        assert pool.map(math.sqrt, [], timeout_s=30, on_timeout=lambda p: None) == []


# ---------------------------------------------------------------------------- bad files


FILE_CASES = [
    ("filter", ["--input", "{missing}"], "not found"),
    ("filter", ["--input", "{empty}"], "no rows"),
    ("generate", ["--dataset", "{missing}"], "not found"),
    ("generate", ["--dataset", "{empty}"], "empty"),
    ("eval", ["--benchmark", "{missing}"], "not found"),
    ("eval", ["--benchmark", "{empty}"], "no rows"),
    ("eval", ["--outputs", "{missing}"], "not found"),
    ("eval", ["--outputs", "{empty}"], "no rows"),
    ("import", ["--data-files", "{missing}"], "no such file"),
]
CONFIG_FILE_CASES = [
    ("{missing}", "not found"),
    ("{binary_yaml}", "not a UTF-8 text file"),
    ("{list_yaml}", "must hold a mapping of key: value, not a list"),
    ("{scalar_yaml}", "must hold a mapping of key: value, not a str"),
    ("{tmp}", "not found"),  # a directory
]


@pytest.mark.parametrize("command, args, why", FILE_CASES, ids=[f"{c[0]}{c[1][0]}={c[1][1][1:-1]}" for c in FILE_CASES])
def test_bad_input_file_is_one_error_line(command, args, why, files, home, capsys):
    paths = {k: str(v) for k, v in files.items()}
    argv = [*base_args(command, files), *(a.format(**paths) for a in args)]
    if command == "eval":  # the file is the only benchmark (or the outputs to grade)
        argv = ["eval", *(["--model", "bundled"] if args[0] == "--benchmark" else []), *(a.format(**paths) for a in args)]
    code, stderr = in_process(argv, capsys)
    assert why in assert_one_error_line(code, stderr)
    assert_nothing_written(home)


def test_non_utf8_input_is_a_user_error(files):
    """In process the reader raises a UserError; that the CLI prints only its line is checked in the cli tier."""
    from distill.artifacts.sources import load_input

    with pytest.raises(UserError, match="is not UTF-8 text \\(byte 0xff at offset 0\\)"):
        load_input(str(files["non_utf8"]))


@pytest.mark.parametrize("command", sorted(CONFIGS))
@pytest.mark.parametrize("path, why", CONFIG_FILE_CASES, ids=[c[0][1:-1] for c in CONFIG_FILE_CASES])
def test_bad_config_file_is_one_error_line(command, path, why, files, home, tmp_path, capsys):
    paths = {**{k: str(v) for k, v in files.items()}, "tmp": str(tmp_path)}
    code, stderr = in_process([*base_args(command, files), "--config-file", path.format(**paths)], capsys)
    assert why in assert_one_error_line(code, stderr)
    assert_nothing_written(home)


@pytest.mark.parametrize("text, why", [
    ("timeout: .nan\n", "--timeout must be a finite number, got nan"),
    (f"num_proc: {HUGE}\n", "--num-proc is too long: 5000 characters"),
    ("timeout: [1, 2]\n", "--timeout expects float, got [1, 2]"),
    ("1: 2\n", "unknown config key '1'"),
    ("when: 2024-13-45\n", "holds a value YAML cannot read: month must be in 1..12"),
    ("timeout: [1\n", "is not valid YAML"),
    ("[" * 5000 + "\n", "cannot read"),  # nesting deeper than the parser's recursion
])
def test_bad_values_in_a_config_file(text, why, tmp_path, files, home, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    code, stderr = in_process([*base_args("filter", files), "--config-file", str(recipe)], capsys)
    assert why in assert_one_error_line(code, stderr)
    assert_nothing_written(home)


# ---------------------------------------------------------------------------- end to end (subprocess)


@pytest.mark.cli
@pytest.mark.parametrize("args, why", [
    (("filter", "--input", "{two}", "--code-timeout", "nan"), "--code-timeout must be a finite number, got nan"),
    (("filter", "--input", "{two}", "--timeout", "inf"), "--timeout must be a finite number, got inf"),
    (("filter", "--input", "{two}", "--num-proc", HUGE), "Invalid value for '--num-proc'"),
    (("generate", "--teacher", "bundled", "--dataset", "{two}", "--request-timeout", "-1"), "--request-timeout must"),
    (("generate", "--teacher", "bundled", "--dataset", "{two}", "-n", "1000000000"), "at most 10,000"),
    (("eval", "--model", "bundled", "--benchmark", "gsm8k", "--timeout", "inf"), "--timeout must be a finite"),
    (("filter", "--input", "{two}", "--config-file", "{binary_yaml}"), "not a UTF-8 text file"),
    (("filter", "--input", "{empty}"), "no rows"),
    (("filter", "--input", "{two}", "--set", "timeout=.nan"), "--timeout must be a finite number, got nan"),
    pytest.param(("filter", "--input", "{non_utf8}"), "is not UTF-8 text", id="filter-non-utf8"),
    pytest.param(("generate", "--teacher", "bundled", "--dataset", "{non_utf8}"), "is not UTF-8 text",
                 id="generate-non-utf8"),
    pytest.param(("eval", "--model", "bundled", "--benchmark", "{non_utf8}"), "is not UTF-8 text",
                 id="eval-non-utf8"),
    pytest.param(("import", "open-thoughts/OpenThoughts-114k", "--data-files", "{non_utf8}"), "is not UTF-8 text",
                 id="import-non-utf8"),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(args, why, files, home):
    paths = {k: str(v) for k, v in files.items()}
    result = run_cli(*(a.format(**paths) if "{" in a else a for a in args), home=home, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr[-2000:]
    assert why in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not home.exists(), sorted(home.rglob("*"))[:5]
