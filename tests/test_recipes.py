"""Every shipped recipe loads into the typed config; unknown recipes and bad files fail clearly."""

from __future__ import annotations

import pytest
import yaml
from fixtures_models import REPO, run_cli

from distill.config import build
from distill.errors import UserError
from distill.stages.train.config import ACCELERATE_CONFIGS, TrainConfig
from distill.stages.train.recipes import list_recipes, load_recipe, recipe_path, recipes_dir

REQUIRED = {"qwen-1.5b", "qwen-7b", "qwen-32b", "llama-8b", "openthoughts-7b", "smol-demo"}


def test_required_recipes_exist():
    assert REQUIRED <= set(list_recipes())
    assert "base" not in list_recipes()


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_validates(name):
    cfg = build(TrainConfig, load_recipe(name))
    assert cfg.recipe == name and cfg.output_name == name
    text = recipe_path(name).read_text()
    assert text.startswith("#") and f"distill train --recipe {name}" in text  # opens with its command
    own = yaml.safe_load(text)
    assert len(own) <= 20, "a recipe should be a few overrides over base.yaml"
    if cfg.num_gpus > 1:
        assert (recipes_dir() / "accelerate" / f"{cfg.accelerate_config}.yaml").is_file()


def test_recipe_values_that_matter():
    ot = build(TrainConfig, load_recipe("openthoughts-7b"))
    assert (ot.model, ot.learning_rate, ot.num_train_epochs, ot.lr_scheduler_type, ot.warmup_ratio) == (
        "Qwen/Qwen2.5-7B-Instruct", 1e-5, 3.0, "cosine", 0.1)
    assert (ot.max_length, ot.truncate, ot.packing, ot.global_batch_size, ot.precision) == (16384, True, False, 96,
                                                                                          "bf16")
    assert ot.accelerate_config == "zero3-offload" and ot.num_gpus == 8
    assert ot.global_batch_size // (ot.per_device_train_batch_size * ot.num_gpus) == 12  # one 8-GPU node
    smol = build(TrainConfig, load_recipe("smol-demo"))
    assert (smol.model, smol.lora, smol.precision, smol.per_device_train_batch_size, smol.assistant_only_loss) == (
        "bundled", False, "auto", 8, True)
    assert build(TrainConfig, load_recipe("qwen-7b")).model == "Qwen/Qwen2.5-7B-Instruct"
    assert build(TrainConfig, load_recipe("qwen-32b")).model == "Qwen/Qwen2.5-32B-Instruct"
    assert build(TrainConfig, load_recipe("llama-8b")).model == "meta-llama/Llama-3.1-8B-Instruct"
    qlora = build(TrainConfig, load_recipe("qwen-7b-qlora"))  # extends qwen-7b, which extends base
    assert qlora.load_in_4bit and qlora.lora and qlora.model == "Qwen/Qwen2.5-7B-Instruct" and qlora.num_gpus == 1


def test_recipe_file_extends_and_overrides(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("extends: qwen-7b\nlearning_rate: 2.0e-5\n")
    cfg = build(TrainConfig, load_recipe(str(own)), {"lora": True})
    assert cfg.model == "Qwen/Qwen2.5-7B-Instruct" and cfg.learning_rate == 2e-5 and cfg.lora
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(UserError, match="extends itself"):
        load_recipe(str(loop))
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1\n")
    with pytest.raises(UserError, match=r"unknown config key 'learning_rat' for TrainConfig: did you mean 'learning_rate'\?"):
        build(TrainConfig, load_recipe(str(bad)))


def test_accelerate_configs_and_slurm_example():
    for name in ACCELERATE_CONFIGS:
        config = yaml.safe_load((recipes_dir() / "accelerate" / f"{name}.yaml").read_text())
        assert config["distributed_type"] in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    offload = yaml.safe_load((recipes_dir() / "accelerate" / "zero3-offload.yaml").read_text())["deepspeed_config"]
    assert offload["offload_optimizer_device"] == offload["offload_param_device"] == "cpu"
    sbatch = (REPO / "recipes" / "slurm" / "train.sbatch").read_text()
    assert "--machine-rank" in sbatch and "--signal=B:TERM" in sbatch and "distill train --recipe" in sbatch


def test_launch_command_for_multi_node():
    from distill.stages.train.launch import launch_command

    cfg = build(TrainConfig, load_recipe("qwen-7b"), {"accelerate_config": "fsdp", "num_machines": 4,
                                                      "machine_rank": 2, "main_process_ip": "10.0.0.1"})
    command = launch_command(cfg, ["train", "--recipe", "qwen-7b"])
    joined = " ".join(command)
    assert "accelerate.commands.launch" in joined and "--num_processes 32" in joined
    assert "--machine_rank 2" in joined and "--main_process_ip 10.0.0.1" in joined
    assert command[-4:] == ["distill", "train", "--recipe", "qwen-7b"] and "fsdp.yaml" in joined


@pytest.mark.cli
def test_unknown_recipe_lists_the_recipes(tmp_path):
    result = run_cli("train", "--recipe", "qwen-9000", home=tmp_path / "home")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: unknown recipe 'qwen-9000'") and "qwen-7b" in line and "smol-demo" in line
    assert "Traceback" not in result.stderr and not (tmp_path / "home").exists()


def test_a_wheel_ships_the_recipes_and_templates(tmp_path):
    """`pip install distill` (no checkout) must still find --recipe qwen-7b and the accelerate configs."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy: the build leaves build/ and *.egg-info where it runs
    shutil.copytree(REPO / "distill", source / "distill", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    names = set(zipfile.ZipFile(next((tmp_path / "wheel").glob("distill-*.whl"))).namelist())
    package = REPO / "distill"
    shipped = [p for folder in ("recipes", "templates") for p in (package / folder).rglob("*") if p.is_file()]
    assert len(shipped) > 15
    assert {str(p.relative_to(REPO)) for p in shipped} <= names
    assert "distill/recipes/accelerate/zero3-offload.yaml" in names and "distill/recipes/qwen-7b.yaml" in names
