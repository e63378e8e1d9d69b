"""The CLI surface, typed configs (YAML < --set < flags) and the Hub card/push arguments."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fixtures_models import run_cli

from distill import artifacts, config
from distill.artifacts import hub
from distill.cli import options
from distill.errors import UserError


@pytest.mark.cli
def test_help_lists_commands_and_version():
    result = run_cli("--help", check=True)
    for command in ("generate", "filter", "train", "eval", "import", "artifacts", "lineage", "models"):
        assert command in result.stdout
    version = run_cli("--version", check=True)
    assert version.stdout.startswith("distill ")


@pytest.mark.cli
def test_unknown_command_exits_2():
    result = run_cli("frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@dataclass
class _Demo:
    name: str = config.option("x", help="output name")
    steps: int = config.option(10, help="steps")
    rate: float = config.option(0.5, help="rate")
    flag: bool = config.option(False, help="a flag")
    columns: list[str] = config.option([], help="columns")


def test_config_precedence_and_types(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 20\nrate: 0.1\nname: from-yaml\n")
    built = config.build(_Demo, config.load_yaml(recipe), config.parse_sets(["steps=30", "flag=true"]),
                         {"name": "from-flag"})
    assert (built.name, built.steps, built.rate, built.flag) == ("from-flag", 30, 0.1, True)
    assert config.build(_Demo, {"columns": "a,b"}).columns == ["a", "b"]
    with pytest.raises(UserError, match=r"unknown config key 'stepz' for _Demo: did you mean 'steps'\?"):
        config.build(_Demo, {"stepz": 1})
    with pytest.raises(UserError, match="expects int"):
        config.build(_Demo, {"steps": "many"})
    with pytest.raises(UserError, match="key=value"):
        config.parse_sets(["oops"])


def test_make_command_builds_typer_options(tmp_path):
    import typer
    from typer.testing import CliRunner

    seen = {}
    app = typer.Typer(rich_markup_mode=None)
    app.command("demo")(options.make_command(_Demo, lambda cfg: seen.setdefault("cfg", cfg)))
    app.command("other")(lambda: None)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 20\n")
    result = CliRunner().invoke(app, ["demo", "--config-file", str(recipe), "--rate", "0.25", "--flag",
                                      "--columns", "a", "--columns", "b", "--set", "name=z"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == _Demo(name="z", steps=20, rate=0.25, flag=True, columns=["a", "b"])
    help_text = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--steps" in help_text and "[default: 10]" in help_text


def test_hub_card_and_push_arguments(home):
    import datasets

    parent_rows = [{"a": 1}]
    with artifacts.create("traces", "traces", config={"teacher": "deepseek-ai/DeepSeek-R1"},
                          licenses={"teacher": "mit"}) as writer:
        writer.save_dataset(datasets.Dataset.from_list(parent_rows))
    parent = artifacts.resolve("traces")
    with artifacts.create("filtered", "filtered", parents=[parent]) as writer:
        writer.save_dataset(datasets.Dataset.from_list(parent_rows))
    artifact = artifacts.resolve("filtered")
    assert artifact.manifest["licenses"] == {"teacher": "mit"}  # carried from the parent

    calls = []

    class RecordingApi:
        def __getattr__(self, name):
            def record(**kwargs):
                calls.append((name, kwargs))
                return f"https://hub.example/{kwargs.get('repo_id')}"
            return record

    hub.push(artifact, "me/my-traces", api=RecordingApi())
    names = [name for name, _ in calls]
    assert names == ["create_repo", "upload_folder", "create_tag"]
    assert calls[0][1]["repo_type"] == "dataset" and calls[0][1]["exist_ok"]
    assert calls[1][1]["folder_path"] == str(artifact.path)
    assert calls[2][1]["tag"] == "v0001"
    card = (artifact.path / "README.md").read_text()
    assert "license: mit" in card and "traces@v0001" in card and artifact.content_sha256 in card

    class FailingApi:
        def create_repo(self, **kwargs):
            raise ConnectionError("no route to host")

    with pytest.raises(UserError, match="push to the Hub repo 'me/x' failed"):
        hub.push(artifact, "me/x", api=FailingApi())


@dataclass
class _Pep604:
    limit: int | None = config.option(None, help="limit")
    names: list[str] | None = config.option(None, help="names")


def test_pep604_optional_fields_are_typed():
    built = config.build(_Pep604, {"limit": "64", "names": "a,b"})
    assert built.limit == 64 and built.names == ["a", "b"]


@pytest.mark.cli
def test_print_config_shows_the_resolved_config_and_runs_nothing(home):
    import yaml

    result = run_cli("train", "--recipe", "smol-demo", "--dataset", "traces@v2", "--set", "learning_rate=3e-4",
                     "--max-steps", "7", "--print-config", home=home)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["learning_rate"] == 3e-4 and resolved["max_steps"] == 7 and resolved["dataset"] == ["traces@v2"]
    assert resolved["model"] == "bundled" and resolved["recipe"] == "smol-demo"
    assert not home.exists()  # nothing ran, nothing was written
    evaluation = yaml.safe_load(run_cli("eval", "--model", "bundled", "--benchmark", "aime24", "--protocol", "open-r1",
                                        "--print-config", home=home).stdout)
    assert evaluation["num_generations"] is None and evaluation["resolved"]["samples_per_problem"] == {"aime24": 64}
    assert (evaluation["resolved"]["temperature"], evaluation["resolved"]["top_p"]) == (0.6, 0.95)
    bad = run_cli("train", "--recipe", "smol-demo", "--dataset", "x", "--precision", "fp8", "--print-config", home=home)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: precision 'fp8' unknown")


@pytest.mark.cli
@pytest.mark.parametrize("args, message", [
    (("filter", "--bogus", "1"), "error: No such option: --bogus (see `distill filter --help`)"),
    (("filter", "--num-proc", "abc"), "error: Invalid value for '--num-proc'"),
    (("frobnicate",), "error: No such command 'frobnicate'."),
    (("eval", "--compare", "a"), "error: --compare needs at least two eval references"),
])
def test_bad_flags_are_one_error_line_and_exit_2(home, args, message):
    result = run_cli(*args, home=home)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith(message), result.stderr
    assert not (home / "data").exists()


@pytest.mark.cli
def test_preflight_command_says_what_a_recipe_needs(home):
    result = run_cli("preflight", "--recipe", "openthoughts-7b", home=home)
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # one error line: no GPU on this machine
    assert result.stderr.startswith("error: no CUDA GPU here: Qwen/Qwen2.5-7B-Instruct") and "H100 GPU-hours" in result.stderr
