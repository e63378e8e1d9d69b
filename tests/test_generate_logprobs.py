"""`distill generate --logprobs K`: the teacher's top-K logprobs per completion token, stored beside each trace.

Unit tier: the option's range (the real command line, in process), the config hash, the partial-dir encoding,
vLLM's two logprob layouts (built with vLLM's own function), and mapping a server's token strings to ids.
vllm tier, on the session engine and server (one start each): the columns against the same engine scoring the
same tokens as a prompt (``VllmEngine.prompt_logprobs``), the artifact round trip, resume, another K, `distill
filter` keeping the columns, the openai engine (ids asked of the server, and strings mapped with the tokenizer),
and a server that returns no logprobs.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
import urllib.request

import numpy as np
import pytest
from fixtures_models import run_cli

from distill import artifacts, log
from distill.config import build
from distill.engines import Request, SamplingConfig, TokenLogprobs, make_engine
from distill.engines.logprobs import TokenIds, from_vllm
from distill.errors import UserError
from distill.stages.generate import GenerateConfig, Teacher, config_hash, run
from distill.stages.generate import logprobs as stored

COLUMNS = ("completion_token_ids", "top_logprob_ids", "top_logprobs")
TOLERANCE = 0.02  # float16 storage (<= 0.01 at logprob -20) + a prompt pass vs decode steps in bfloat16 (~0.004)


def _cells(record: dict, k: int) -> dict[str, list]:
    """The three cells the artifact gets from one partial-dir record."""
    return {column: array.to_pylist()[0] for column, array in stored.row_arrays(record, k).items()}


def _problems(path, count: int):
    rows = [{"id": f"p{i}", "problem": f"What is {i} + {i + 2}?", "answer": str(2 * i + 2)} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------- unit tier


@pytest.mark.parametrize("value", ["0", "-1", "21"])
def test_logprobs_out_of_range_is_one_error_line_and_nothing_written(value, tmp_path, home, capsys):
    from distill.cli import main

    renderer = log._renderer
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", "--teacher", "bundled", "--dataset", str(_problems(tmp_path / "p.jsonl", 2)),
                  "--logprobs", value])
    finally:
        log.set_renderer(renderer)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and stderr.count("\n") == 1, stderr
    assert stderr == f"error: --logprobs must be between 1 and 20 (the top-K log-probabilities engines return), " \
                     f"got {value}\n"
    assert not home.exists() or not any(home.iterdir())


@pytest.mark.cli
def test_logprobs_out_of_range_from_the_real_command_line(tmp_path, home):
    result = run_cli("generate", "--teacher", "bundled", "--dataset", str(_problems(tmp_path / "p.jsonl", 2)),
                     "--logprobs", "-1", home=home)
    assert result.returncode == 2 and result.stderr.startswith("error: --logprobs must be between 1 and 20")
    assert result.stderr.count("\n") == 1 and not home.exists()


def test_config_hash_tells_k_apart_and_keeps_runs_without_logprobs(tmp_path):
    teacher = Teacher(model="some/teacher", info={"checkpoint_sha256": None})
    source = {"sha256": "abc"}

    def hash_of(**overrides):
        return config_hash(build(GenerateConfig, {"teacher": "t", "dataset": "d", **overrides}), source, teacher, None)

    plain, three, five = hash_of(), hash_of(logprobs=3), hash_of(logprobs=5)
    assert len({plain, three, five}) == 3
    assert hash_of(logprobs=3) == three  # stable


def test_partial_record_round_trips_into_the_columns():
    rng = np.random.default_rng(0)
    values = -np.sort(np.abs(rng.standard_normal((7, 4)) * 6).astype(np.float32), axis=1)
    sample = TokenLogprobs(token_ids=rng.integers(0, 49152, 7), top_ids=rng.integers(0, 49152, (7, 4)),
                           top_logprobs=values)
    record = json.loads(json.dumps({"id": "a", "sample_index": 0, "completion_tokens": 7,
                                    "logprobs": stored.encode(sample)}))
    columns = _cells(record, 4)
    assert columns["completion_token_ids"] == sample.token_ids.tolist()
    assert columns["top_logprob_ids"] == sample.top_ids.tolist()
    back = np.array(columns["top_logprobs"], np.float32)
    assert np.allclose(back, values, rtol=2 ** -11, atol=0) and (np.diff(back, axis=1) <= 0).all()
    assert _cells({"id": "b", "completion_tokens": 0}, 4) == {c: [] for c in COLUMNS}  # its prompt was too long
    with pytest.raises(UserError, match="holds top-4 logprobs, not 3"):
        stored.decode(record, 3)


def test_both_vllm_layouts_give_the_top_k_by_rank():
    """vLLM puts the sampled token first, then the top K; a sampled token outside the top K must not take a slot."""
    from vllm.logprobs import append_logprobs_for_next_position, create_sample_logprobs

    sampled = [7, 3, 9]
    # (ids as vLLM lists them: sampled first, then top-3), their logprobs, the sampled token's rank
    steps = [([7, 1, 2, 3], [-5.0, -0.5, -1.0, -2.0], 6),   # sampled outside the top 3
             ([3, 3, 4, 5], [-0.25, -0.25, -2.5, -3.0], 1),   # sampled is the most likely
             ([9, 8, 9, 6], [-1.5, -1.5, -1.5, -4.0], 1)]   # a tie: 9 and 8 share a value, 8 ranked first
    for flat in (False, True):
        logprobs = create_sample_logprobs(flat)
        for ids, values, rank in steps:
            append_logprobs_for_next_position(logprobs, ids, values, [None] * len(ids), rank, 3)
        result = from_vllm(sampled, logprobs, 3)
        assert result.token_ids.tolist() == sampled
        assert result.top_ids.tolist() == [[1, 2, 3], [3, 4, 5], [8, 9, 6]], flat
        assert result.top_logprobs.tolist() == [[-0.5, -1.0, -2.0], [-0.25, -2.5, -3.0], [-1.5, -1.5, -4.0]]
        assert result.sampled.tolist() == [-5.0, -0.25, -1.5]


def test_token_strings_map_back_to_ids(bundled_model_dir):
    """What servers send: each token's own decode (and, by the OpenAI API, its exact bytes)."""
    from transformers import AutoTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    mapper = TokenIds(tokenizer, "bundled")
    ids = tokenizer("The naïve café owner said 🙂 漢字 twice.<|im_end|>", add_special_tokens=False).input_ids
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    partial = [i for i in ids if "\ufffd" in tokenizer.decode([i])]  # a character's bytes, split over tokens
    assert len(partial) >= 2 and len(ids) > 8
    for token_id in ids:
        text = tokenizer.decode([token_id])
        if token_id in partial:
            with pytest.raises(UserError, match="does not name one entry"):
                mapper(text, list(text.encode()))  # bytes that only re-encode the text decide nothing: no guess
            exact = [byte_of[char] for char in tokenizer.convert_ids_to_tokens(token_id)]
            assert mapper(text, exact) == token_id  # the OpenAI API's exact token bytes do
        else:
            assert mapper(text, list(text.encode())) == token_id, text
    # the byte table this test trusts: every token's bytes, joined, are the text's
    assert b"".join(bytes(byte_of[c] for c in tokenizer.convert_ids_to_tokens(i)) for i in ids[:-1]) == \
        "The naïve café owner said 🙂 漢字 twice.".encode()
    assert mapper("token_id:4321") == 4321
    with pytest.raises(UserError, match="pass --tokenizer"):
        TokenIds(None, "served-name")("hello")


# ---------------------------------------------------------------------------- vllm tier


class _Interrupting:
    """The real engine, with a Ctrl-C after ``after`` samples (the run is then resumed)."""

    def __init__(self, engine, after: int):
        self._engine, self._after = engine, after

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, requests, sampling):
        import contextlib

        with contextlib.closing(self._engine.generate(requests, sampling)) as samples:
            for count, sample in enumerate(samples, start=1):
                yield sample
                if count == self._after:
                    raise KeyboardInterrupt


def _partial_records(home, name: str) -> list[dict]:
    return [json.loads(line) for part in sorted((home / "data" / name).glob(".partial-*/part-*.jsonl"))
            for line in part.read_text().splitlines()]


def _check_rows(rows: list[dict], k: int, scorer, tokenizer) -> int:
    """Every row's columns: shapes, order, and values against ``scorer`` (the same model scoring the same tokens
    as a prompt). Returns how many sampled tokens were outside the stored top K."""
    outside = 0
    for row in rows:
        ids, top_ids = row["completion_token_ids"], row["top_logprob_ids"]
        values = np.array(row["top_logprobs"], np.float32)
        assert len(ids) == len(top_ids) == len(values) == row["completion_tokens"] > 0
        assert values.shape == (len(ids), k) and all(len(set(position)) == k for position in top_ids)
        assert (values <= 0).all() and (np.diff(values, axis=1) <= 0).all()  # most likely first
        assert tokenizer.decode(ids, skip_special_tokens=True) == row["completion"]  # the ids of this completion
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        reference = scorer.prompt_logprobs(prompt + ids, k + 5, start=len(prompt))
        assert reference.token_ids.tolist() == ids
        for t, token in enumerate(ids):
            known = {**dict(zip(reference.top_ids[t].tolist(), reference.top_logprobs[t].tolist(), strict=True)),
                     token: float(reference.sampled[t])}
            for j, alternative in enumerate(top_ids[t]):
                assert alternative in known and abs(known[alternative] - values[t, j]) <= TOLERANCE, (t, j)
            assert reference.top_logprobs[t, k - 1] <= values[t, -1] + TOLERANCE  # nothing likelier left out
            if token in top_ids[t]:  # the sampled token's own logprob, where it is among the K
                assert abs(values[t, top_ids[t].index(token)] - reference.sampled[t]) <= TOLERANCE
            else:
                outside += 1
                assert reference.sampled[t] <= values[t, -1] + TOLERANCE
    return outside


@pytest.mark.vllm
@pytest.mark.train
def test_generate_logprobs_columns_resume_other_k_and_filter(home, tmp_path, vllm_engine, bundled_model_dir):
    import datasets
    from transformers import AutoTokenizer

    from distill.stages.filter import FilterConfig
    from distill.stages.filter import run as filter_run

    path = _problems(tmp_path / "problems.jsonl", 3)
    base = {"teacher": "bundled", "dataset": str(path), "num_generations": 2, "temperature": 1.0, "max_tokens": 32,
            "logprobs": 3, "name": "lp", "progress": False, "seed": 7}
    with pytest.raises(KeyboardInterrupt):  # a first run stopped after 2 samples ...
        run(build(GenerateConfig, base), engine=_Interrupting(vllm_engine, after=2))
    first = _partial_records(home, "lp")
    assert len(first) == 2 and not artifacts.list_versions(home / "data" / "lp")
    artifact = run(build(GenerateConfig, base), engine=vllm_engine)  # ... and the same command resumes it
    assert len(artifact.manifest["generation"]["runs"]) == 2

    data = artifacts.resolve("lp@latest").load_dataset()  # the artifact, read back from disk
    assert data.features["completion_token_ids"] == datasets.List(datasets.Value("int32"))
    assert data.features["top_logprob_ids"] == datasets.List(datasets.List(datasets.Value("int32")))
    assert data.features["top_logprobs"] == datasets.List(datasets.List(datasets.Value("float16")))
    rows = data.to_list()
    assert sorted((r["id"], r["sample_index"]) for r in rows) == [(f"p{i}", j) for i in range(3) for j in range(2)]
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir)
    outside = _check_rows(rows, 3, vllm_engine, tokenizer)
    assert outside > 0  # at temperature 1 some sampled tokens are not among the 3 likeliest: they take no slot
    by_key = {(r["id"], r["sample_index"]): r for r in rows}
    for record in first:  # the interrupted run's samples are in the artifact, columns and all
        row = by_key[(record["id"], record["sample_index"])]
        assert {c: row[c] for c in COLUMNS} == _cells(record, 3)
    record = artifact.manifest["logprobs"]
    assert (record["k"], record["tokenizer"], record["columns"]) == (3, str(bundled_model_dir), list(COLUMNS))

    # the same command again reuses the version; another K is another config: a new version
    assert run(build(GenerateConfig, base), engine=vllm_engine).ref == artifact.ref
    five = run(build(GenerateConfig, {**base, "logprobs": 5}), engine=vllm_engine)
    assert five.ref != artifact.ref and five.manifest["logprobs"]["k"] == 5
    assert {len(position) for row in five.load_dataset()["top_logprobs"] for position in row} == {5}
    assert not list((home / "data" / "lp").glob(".partial-*"))

    # distill filter keeps the columns on the rows it keeps (and on the rejected ones)
    filtered = filter_run(build(FilterConfig, {"input": artifact.ref, "name": "lp-filtered", "num_proc": 1,
                                               "skip": ["complete", "format", "correct", "language", "dedup"],
                                               "max_per_prompt": 1}))
    splits = filtered.load_dataset()
    assert len(splits["train"]) == 3 and set(splits["rejected"]["reject_reason"]) == {"over_cap"}
    for split in splits.values():
        assert {c: split.features[c] for c in COLUMNS} == {c: data.features[c] for c in COLUMNS}
        for row in split.to_list():
            assert {c: row[c] for c in COLUMNS} == {c: by_key[(row["id"], row["sample_index"])][c] for c in COLUMNS}

    # one teacher pass serves logit distillation: a student trains on the stored logprobs (vocabulary checked
    # against the tokenizer the traces' manifest names, found through the filtered artifact's lineage)
    from distill.stages import train
    from distill.stages.train.config import TrainConfig
    from distill.stages.train.recipes import load_recipe

    student = train.run(build(TrainConfig, load_recipe("smol-demo"), {
        "method": "logit", "dataset": [filtered.ref], "max_steps": 2, "name": "lp-student", "report_to": ["none"],
        "per_device_train_batch_size": 3, "eval_fraction": 0, "logging_steps": 1}))
    assert student.manifest["method"]["name"] == "logit" and student.manifest["method"]["top_k"] == 3
    assert filtered.ref in json.dumps(student.manifest["parents"])
    losses = [e["loss"] for e in json.loads((student.path / "trainer_state.json").read_text())["log_history"]
              if "loss" in e]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


class _NoLogprobsProxy(http.server.ThreadingHTTPServer):
    """A real server behind a proxy that drops `logprobs` from its answers, as servers without them do."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        super().__init__(("127.0.0.1", 0), _StrippingHandler)


class _StrippingHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _forward(self, body: bytes | None):
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = json.loads(response.read())
        for choice in payload.get("choices") or []:
            choice["logprobs"] = None
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._forward(None)

    def do_POST(self):
        self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))


@pytest.mark.vllm
def test_openai_engine_logprobs_by_id_and_by_string(home, tmp_path, vllm_server, vllm_engine):
    from transformers import AutoTokenizer

    from distill.engines import EngineConfig

    path = _problems(tmp_path / "problems.jsonl", 2)
    base = {"teacher": vllm_server.model, "dataset": str(path), "engine": "openai", "base_url": vllm_server.base_url,
            "num_generations": 2, "temperature": 1.0, "max_tokens": 24, "logprobs": 2, "name": "api-lp",
            "progress": False}
    artifact = run(build(GenerateConfig, base))
    assert artifact.manifest["logprobs"]["tokenizer"] == vllm_server.model
    rows = artifact.load_dataset().to_list()
    assert len(rows) == 4
    # K = 2 at temperature 1: where the sampled token is not among the 2 likeliest, a vLLM server's list of 2
    # holds it and drops the 2nd likeliest; the engine asks for 3 and keeps the 2 best
    _check_rows(rows, 2, vllm_engine, AutoTokenizer.from_pretrained(vllm_server.model))

    # a server that names tokens only by their text: the local tokenizer maps them to the same ids
    engine = make_engine(EngineConfig(engine="openai", model=vllm_server.model, base_url=vllm_server.base_url))
    try:
        assert engine.server_token_ids  # a vLLM server: asked for ids
        requests = [Request(key="q", messages=[{"role": "user", "content": "Name three fruits, café-style."}])]
        greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=24, logprobs=3)
        by_id = next(iter(engine.generate(requests, greedy))).logprobs
        engine.server_token_ids = False
        engine.check_logprobs(3)
        by_text = next(iter(engine.generate(requests, greedy))).logprobs
    finally:
        engine.close()
    assert by_text.token_ids.tolist() == by_id.token_ids.tolist() and len(by_id.token_ids) == 24
    assert np.array_equal(by_text.top_logprobs, by_id.top_logprobs)
    for t in range(24):  # the same ids; which of tied tokens comes first (or last in) is the server's choice
        values = by_id.top_logprobs[t]
        for value in set(values.tolist()) - {values.min()}:
            assert set(by_text.top_ids[t][values == value].tolist()) == set(by_id.top_ids[t][values == value].tolist())

    # a server that returns no logprobs: one error, before anything is written
    proxy = _NoLogprobsProxy(f"http://127.0.0.1:{vllm_server.port}")
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserError, match="returned no logprobs") as error:
            run(build(GenerateConfig, {**base, "base_url": f"http://127.0.0.1:{proxy.server_port}/v1",
                                       "name": "api-none"}))
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert "\n" not in str(error.value)
    assert not (home / "data" / "api-none").exists()
    # K = 20 asks a vLLM server for 21 (its default limit is 20): refused, clearly, rather than a wrong 20th
    with pytest.raises(UserError, match="top_logprobs 21: lower --logprobs, or raise the server's limit"):
        run(build(GenerateConfig, {**base, "logprobs": 20, "name": "api-20"}))
    assert not (home / "data" / "api-20").exists()
