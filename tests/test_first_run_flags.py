"""A first run with a non-reasoning teacher (issue 18, items 6 and 10): --prefill, --few-shot-from DATASET:K,
--problem-column (old name --prompt-column), eval's -n, and the `generate --help` example for the bundled teacher.

Unit tier: the prompt rendering with a prefill (the bundled tokenizer, and an R1 template that opens
<think> itself), the stored completion, few-shot examples built from GSM8K rows, their rows left out of the
prompts, the aliases, and bad values (one `error:` line, exit 2, nothing written). vllm: one generate run on
the session engine with both flags, and the --help example run as written.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from distill.config import build
from distill.engines import chat
from distill.errors import UserError
from distill.stages.eval import EvalConfig
from distill.stages.generate import HELP, GenerateConfig, Teacher, build_prompts, config_hash, run
from distill.stages.generate import shots as shot_module
from distill.think import CLOSE, OPEN

# The first rows of GSM8K's train split, as published (question, worked answer ending in "#### N").
GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
               "$<<0.2*50=10>>10.\n#### 10"},
    {"question": "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she "
                 "needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much "
                 "as her parents. How much more money does Betty need to buy the wallet?",
     "answer": "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 "
               "= $<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5"},
]
# More GSM8K-style problems for the prompts (short, so the vllm run stays quick on a CPU).
MORE_PROBLEMS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "Tom has 3+4 = 7.\n#### 7"},
    {"question": "A box holds 6 pens. How many pens are in 2 boxes?", "answer": "2*6 = 12 pens.\n#### 12"},
    {"question": "Sara had 10 stickers and gave away 4. How many are left?", "answer": "10-4 = 6.\n#### 6"},
]
REPO = Path(__file__).resolve().parent.parent
R1_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}"
               "{% endif %}")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(**values) -> GenerateConfig:
    return build(GenerateConfig, {"teacher": "bundled", "dataset": "x.jsonl", **values})


# ---------------------------------------------------------------------------- --prefill: prompt and completion


def test_prefill_is_appended_after_the_generation_prompt(bundled_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    messages = chat.build_messages("What is 2 + 2?")
    plain = chat.render(tokenizer, messages)
    prefilled = chat.render(tokenizer, messages + [chat.prefill_message("<think>\n")])
    assert prefilled == plain + "<think>\n"  # the assistant turn opened, then the prefill
    assert plain.endswith("<|im_start|>assistant\n")
    # a template that opens <think> itself gets no second opener; more text after it is appended
    r1 = chat.render(tokenizer, messages, R1_TEMPLATE)
    assert r1.endswith("<think>\n")
    assert chat.render(tokenizer, messages + [chat.prefill_message("<think>\n")], R1_TEMPLATE) == r1
    assert chat.render(tokenizer, messages + [chat.prefill_message("<think>")], R1_TEMPLATE) == r1
    assert chat.render(tokenizer, messages + [chat.prefill_message("<think>\nOkay,")], R1_TEMPLATE) == r1 + "Okay,"
    # without the marker a trailing assistant message is a turn of its own, as before
    turn = chat.render(tokenizer, messages + [{"role": "assistant", "content": "<think>\n"}])
    assert turn != prefilled and turn.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("engine_text, prefill, template_prefill, stored", [
    # the engine saw no template prefill; a completion closing its reasoning got "<think>\n" put back: not twice
    ("<think>\nadd them</think>\n\n4", "<think>\n", None, "<think>\nadd them</think>\n\n4"),
    ("add them", "<think>\n", None, "<think>\nadd them"),  # cut off before </think>: still opened
    ("<think>\n so 4</think>\n\n4", "<think>\nOkay,", "<think>\n", "<think>\nOkay, so 4</think>\n\n4"),
    ("<think>\nhmm</think>4", "<think>\n", "<think>\n", "<think>\nhmm</think>4"),  # the template's own opener
    ("The sum is 4.", "Sure. ", None, "Sure. The sum is 4."),
])
def test_stored_completion_starts_with_the_prefill(engine_text, prefill, template_prefill, stored):
    assert chat.completion_with_prefill(engine_text, prefill, template_prefill) == stored
    assert stored.startswith(chat.effective_prefill(prefill, template_prefill))


def test_prefill_flag_reads_escapes_and_enters_the_config_hash():
    assert _cfg(prefill="<think>\\n").prefill == "<think>\n"  # as a shell passes '<think>\n'
    assert _cfg(prefill="a\\tb\\\\n").prefill == "a\tb\\n"
    source, teacher = {"type": "file", "sha256": "abc"}, Teacher("m", {"checkpoint_sha256": None})
    plain = config_hash(_cfg(), source, teacher, None)
    assert config_hash(_cfg(prefill="<think>\n"), source, teacher, None) != plain
    assert config_hash(_cfg(prefill="<think>\n"), source, teacher, None) != config_hash(
        _cfg(prefill="<think>\nOkay"), source, teacher, None)


# ---------------------------------------------------------------------------- --few-shot-from


def test_few_shot_from_gsm8k_builds_think_examples_and_leaves_their_rows_out(tmp_path):
    from distill.artifacts.sources import load_input

    path = _jsonl(tmp_path / "gsm8k_train.jsonl", GSM8K_ROWS + MORE_PROBLEMS)
    cfg = _cfg(dataset=str(path), problem_column="question", few_shot_from=f"{path}:2")
    data, source = load_input(str(path))
    shots = shot_module.load_shots(cfg, data, source)
    assert [m["role"] for m in shots.messages] == ["user", "assistant"] * 2
    assert shots.messages[0]["content"] == cfg.prompt_template.replace("{problem}", GSM8K_ROWS[0]["question"])
    assert shots.messages[1]["content"] == (
        f"{OPEN}\nNatalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May."
        f"\n{CLOSE}\n\nThe answer is \\boxed{{72}}")  # calculator annotations and the "#### 72" line gone
    assert shots.messages[3]["content"].endswith("The answer is \\boxed{10}")
    assert shots.record["same_source_as_dataset"] and shots.record["rows"] == [0, 1]
    prompts = build_prompts(data, cfg, shots.messages, frozenset(shots.problems))
    assert prompts.excluded == 2 and len(prompts) == 4
    assert prompts.problems == [r["question"] for r in GSM8K_ROWS[2:] + MORE_PROBLEMS]
    assert prompts.rows == [2, 3, 4, 5]  # positions in the source, for the carried columns
    assert prompts.messages[0][:4] == shots.messages and prompts.messages[0][4]["role"] == "user"
    # --limit counts the rows that remain
    limited = build_prompts(data, _cfg(dataset=str(path), problem_column="question", limit=2), shots.messages,
                            frozenset(shots.problems))
    assert limited.problems == [GSM8K_ROWS[2]["question"], MORE_PROBLEMS[0]["question"]]
    # solutions in a 'solution' column with \boxed{} (MATH-style), and a completion with its own <think> block
    math = _jsonl(tmp_path / "math.jsonl", [
        {"problem": "What is 1+1?", "solution": "Adding: $1+1=2$, so \\boxed{2}."},
        {"problem": "What is 2+3?", "solution": f"{OPEN}\n2 and 3 make 5.\n{CLOSE}\n\nSo \\boxed{{5}}."}])
    # another file than --dataset: loaded on its own, not the same source
    math_shots = shot_module.load_shots(_cfg(dataset=str(path), few_shot_from=f"{math}:2"), data, source)
    assert not math_shots.record["same_source_as_dataset"]
    assert math_shots.messages[1]["content"] == (f"{OPEN}\nAdding: $1+1=2$, so \\boxed{{2}}.\n{CLOSE}\n\n"
                                                 "The answer is \\boxed{2}")
    assert math_shots.messages[3]["content"] == f"{OPEN}\n2 and 3 make 5.\n{CLOSE}\n\nThe answer is \\boxed{{5}}"


def test_few_shot_from_spec_parsing():
    assert shot_module.parse_spec("data/gsm8k.jsonl:4") == ("data/gsm8k.jsonl", 4)
    assert shot_module.parse_spec("traces@v2:3") == ("traces@v2", 3)
    for bad, needle in (("gsm8k.jsonl", "use DATASET:K"), ("gsm8k.jsonl:0", "between 1 and"),
                        ("gsm8k.jsonl:x", "whole number"), (":3", "use DATASET:K"),
                        ("gsm8k.jsonl:1000", "between 1 and")):
        with pytest.raises(UserError, match=needle):
            shot_module.parse_spec(bad)


# ---------------------------------------------------------------------------- one vocabulary


def test_problem_column_and_its_old_name(capsys):
    from distill.cli import main

    assert _cfg(prompt_column="q").problem_column == "q"  # old config key (YAML, --set, Python)
    assert _cfg(problem_column="q").problem_column == "q"
    with pytest.raises(UserError, match="old name of --problem-column"):
        _cfg(problem_column="a", prompt_column="b")
    for flag in ("--problem-column", "--prompt-column"):
        main(["generate", "--print-config", "--teacher", "bundled", "--dataset", "x.jsonl", flag, "question"])
        printed = capsys.readouterr().out
        assert "problem_column: question" in printed and "prompt_column" not in printed


def test_eval_n_is_num_generations_as_in_generate(capsys):
    from distill.cli import main

    base = {"model": "bundled", "benchmark": ["gsm8k"]}
    assert build(EvalConfig, base, {"n": 3}).num_generations == 3  # the old key
    assert build(EvalConfig, base, {"num_generations": 3}).num_generations == 3
    for args in (["-n", "5"], ["--n", "5"], ["--num-generations", "5"]):
        main(["eval", "--print-config", "--model", "bundled", "--benchmark", "gsm8k", *args])
        printed = capsys.readouterr().out
        assert "num_generations: 5" in printed and "\nn:" not in printed, printed
        assert "gsm8k: 5" in printed  # what the run will use


def test_train_config_file_on_top_of_the_recipe(capsys, tmp_path, home):
    """default < recipe < --config-file < --set < flags."""
    from distill.cli import main

    config_file = tmp_path / "mine.yaml"
    config_file.write_text("learning_rate: 3.0e-5\nmax_steps: 7\nsave_steps: 5\n"
                           "trainer_args: [neftune_noise_alpha=5]\n")
    main(["train", "--recipe", "smol-demo", "--config-file", str(config_file), "--set", "max_steps=9",
          "--save-steps", "3", "--print-config"])
    printed = capsys.readouterr().out
    assert "recipe: smol-demo" in printed and "model: bundled" in printed  # from the recipe
    assert "learning_rate: 3.0e-05" in printed  # the file over the recipe
    assert "max_steps: 9" in printed and "save_steps: 3" in printed  # --set and flags over the file
    assert "neftune_noise_alpha=5" in printed
    _fails_cleanly(["train", "--config-file", str(tmp_path / "missing.yaml"), "--print-config"], capsys, home,
                   "missing.yaml")


# ---------------------------------------------------------------------------- bad values: one line, exit 2


def _fails_cleanly(args, capsys, home, *needles):
    from distill.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (home / "data").exists(), "something was written"


def test_bad_values_are_one_error_line(home, tmp_path, capsys):
    gsm8k = _jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    no_solutions = _jsonl(tmp_path / "answers.jsonl", [{"problem": "1+1?", "answer": "2"}] * 3)
    unmarked = _jsonl(tmp_path / "unmarked.jsonl", [{"problem": "1+1?", "solution": "Count: one, two."}])
    base = ["generate", "--teacher", "bundled", "--dataset", str(gsm8k), "--problem-column", "question"]
    cases = [
        (["--few-shot-from", f"{gsm8k}:0"], ["K must be between 1 and"]),
        (["--few-shot-from", str(gsm8k)], ["use DATASET:K"]),
        (["--few-shot-from", f"{no_solutions}:2"], ["has no worked solutions", "problem, answer"]),
        (["--few-shot-from", f"{unmarked}:1"], ["row 0 has no worked solution with a final answer"]),
        (["--few-shot-from", f"{gsm8k}:5"], ["has only 3 row(s), 5 wanted"]),
        (["--few-shot-from", f"{gsm8k}:3"], ["no rows besides the 3 shown as few-shot examples"]),
        (["--few-shot-from", f"{tmp_path / 'missing.jsonl'}:2"], ["not found"]),
        (["--few-shot-from", f"{gsm8k}:2", "--few-shot", "data/demo/few_shot.json"], ["not both"]),
        (["--prefill", ""], ["--prefill is empty"]),
        (["--prefill", "  "], ["--prefill is empty"]),
        (["--prefill", "<think>\\n", "--logprobs", "2"], ["--prefill with --logprobs"]),
        (["--prompt-column", "nope"], ["--problem-column 'nope'", "question, answer"]),
    ]
    for args, needles in cases:
        _fails_cleanly(base + args, capsys, home, *needles)
    _fails_cleanly(["eval", "--model", "bundled", "--benchmark", "gsm8k", "-n", "0"], capsys, home,
                   "-n/--num-generations must be >= 1")


# ---------------------------------------------------------------------------- real runs (vLLM)


def _help_example(teacher: str) -> list[str]:
    """The `distill generate` example of --help for ``teacher``, as argument words."""
    lines = HELP.splitlines()
    start = next(i for i, line in enumerate(lines) if f"--teacher {teacher} " in line)
    text = lines[start]
    while text.endswith("\\"):
        start += 1
        text = text[:-1] + lines[start]
    words = shlex.split(text)
    return words[words.index("generate") + 1:]


def _as_config(words: list[str]) -> dict:
    """Flag words -> config keys (the real CLI's names: a flag is its key with dashes, -n is num_generations)."""
    values, i = {}, 0
    while i < len(words):
        key = "num_generations" if words[i] == "-n" else words[i].lstrip("-").replace("-", "_")
        values[key] = words[i + 1]
        i += 2
    return values


@pytest.mark.vllm
def test_prefill_through_an_openai_server(home, tmp_path, vllm_server):
    """--engine openai --prefill: the server continues the assistant turn (continue_final_message): its prompt
    holds the prefill's tokens, the reply is only the new text, the stored completion starts with the prefill."""
    from transformers import AutoTokenizer

    path = _jsonl(tmp_path / "gsm8k_train.jsonl", GSM8K_ROWS)
    cfg = build(GenerateConfig, {"teacher": vllm_server.model, "engine": "openai", "base_url": vllm_server.base_url,
                                 "tokenizer": vllm_server.model, "dataset": str(path), "problem_column": "question",
                                 "prefill": "<think>\\nFirst,", "num_generations": 1, "max_tokens": 24,
                                 "temperature": 0.0, "name": "served-prefill", "progress": False})
    rows = run(cfg).load_dataset().to_list()
    tokenizer = AutoTokenizer.from_pretrained(vllm_server.model)
    assert len(rows) == len(GSM8K_ROWS)
    for row in rows:
        assert row["completion"].startswith("<think>\nFirst,") and "<|im_start|>" not in row["completion"]
        rendered = chat.render(tokenizer, row["prompt"] + [chat.prefill_message("<think>\nFirst,")])
        assert rendered.endswith("<|im_start|>assistant\n<think>\nFirst,")
        assert row["prompt_tokens"] == len(tokenizer(rendered, add_special_tokens=False).input_ids)


@pytest.mark.vllm
def test_prefill_and_few_shot_from_with_the_bundled_teacher(home, tmp_path, vllm_engine):
    from transformers import AutoTokenizer

    path = _jsonl(tmp_path / "gsm8k_train.jsonl", GSM8K_ROWS + MORE_PROBLEMS)
    cfg = build(GenerateConfig, {"teacher": "bundled", "dataset": str(path), "problem_column": "question",
                                 "few_shot_from": f"{path}:2", "prefill": "<think>\\n", "num_generations": 2,
                                 "max_tokens": 48, "temperature": 0.7, "name": "first-run", "progress": False})
    artifact = run(cfg, engine=vllm_engine)
    rows = artifact.load_dataset().to_list()
    assert len(rows) == 8 and {r["problem"] for r in rows} == {r["question"] for r in GSM8K_ROWS[2:] + MORE_PROBLEMS}
    for row in rows:
        assert row["completion"].startswith("<think>\n"), row["completion"]
        assert not row["completion"].startswith("<think>\n<think>")
        assert row["prompt"][-1]["role"] == "user"  # the prefill is not a turn of the stored prompt
        assert len(row["prompt"]) == 5 and "\\boxed{72}" in row["prompt"][1]["content"]
    # the engine was asked to continue after the prefill: its prompt holds the prefill's tokens
    tokenizer = AutoTokenizer.from_pretrained(vllm_engine.tokenizer.name_or_path)
    rendered = chat.render(tokenizer, rows[0]["prompt"] + [chat.prefill_message("<think>\n")])
    assert rendered.endswith("<|im_start|>assistant\n<think>\n")
    assert rows[0]["prompt_tokens"] == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    manifest = artifact.manifest
    conversation = manifest["conversation"]
    assert conversation["prefill"] == "<think>\n" and conversation["prefill_source"] == "--prefill"
    assert conversation["few_shot"] == rows[0]["prompt"][:4]
    assert conversation["few_shot_from"]["excluded_rows"] == 2 and conversation["few_shot_from"]["k"] == 2
    assert manifest["source"]["few_shot_excluded_rows"] == 2 and manifest["source"]["problem_column"] == "question"
    assert manifest["config"]["prefill"] == "<think>\n"
    assert manifest["stats"]["think_share"] > 0  # every completion opens the block; some close it in 48 tokens


@pytest.mark.vllm
def test_help_example_for_the_bundled_teacher_gives_usable_traces(home, vllm_engine, monkeypatch):
    from distill.verify.format import OK, check_format

    words = _help_example("bundled")
    assert "--few-shot" in words or "--few-shot-from" in words or "--prefill" in words, words
    monkeypatch.chdir(REPO)  # the example's paths are relative to the repository
    artifact = run(build(GenerateConfig, {**_as_config(words), "progress": False}), engine=vllm_engine)
    rows = artifact.load_dataset().to_list()
    well_formed = [r for r in rows if check_format(r["completion"])[0] == OK]
    assert artifact.manifest["stats"]["think_share"] >= 0.5, [r["completion"] for r in rows]
    assert len(well_formed) >= len(rows) // 2, [r["completion"] for r in rows]  # what `distill filter` keeps
