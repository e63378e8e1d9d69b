"""Secrets never reach an `error:` line or a manifest (distill/artifacts/integrity.py: redact_text, redact).

- each secret form: credentials in a URL, a secret query parameter, `sk-...` / `hf_...` / GitHub tokens,
  an `Authorization: Bearer` value, an API key in an echoed JSON body or `key=value`, the value of a
  secret-named environment variable and a registered secret; text around them, and look-alikes that are
  not secrets, are left alone;
- the real command line: a local server that echoes the key it received (and other secrets) in a 400 body
  gives one `error:` line without any of them, `--base-url` credentials included;
- manifests: a real `distill eval` with credentials in `--base-url`, and every string field of a manifest
  (config, stats, extra), are stored redacted, and the manifest still verifies.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from pathlib import Path

import datasets
import pytest

from distill import artifacts, log
from distill.artifacts import integrity

ENV_KEY = "Zq8vTt2LmW0pXc7Rr5Nn"  # no known shape: only its variable's name says it is a secret
CASES = {
    "url credentials": ("fetching https://alice:s3cretPassw0rd@api.example.com/v1 failed", "s3cretPassw0rd",
                        "https://<redacted>@api.example.com/v1 failed"),
    "url token as user": ("clone https://ghx_tokenvalue123456@github.com/org/repo.git", "ghx_tokenvalue123456",
                          "https://<redacted>@github.com/org/repo.git"),
    "query parameter": ("GET https://api.example.com/v1/models?api_key=QWERTY123456&limit=5 -> 401",
                        "QWERTY123456", "?api_key=<redacted>&limit=5 -> 401"),
    "access_token parameter": ("see https://h.example/x?foo=1&access_token=ya29.a0AfH6SM", "ya29.a0AfH6SM",
                               "?foo=1&access_token=<redacted>"),
    "sk- key": ("Incorrect API key provided: sk-proj-AbCdEf0123456789XyZaBc. You can find", "AbCdEf0123456789XyZaBc",
                "provided: sk-proj-<redacted>. You can find"),
    "hf_ token": ("token hf_AbCdEfGhIjKlMnOpQrStUv is not authorized", "hf_AbCdEfGhIjKlMnOpQrStUv",
                  "token hf_<redacted> is not authorized"),
    "github token": ("bad credentials ghp_0123456789abcdefghijABCDEFGHIJ", "0123456789abcdefghijABCDEFGHIJ",
                     "ghp_<redacted>"),
    "bearer header": ("headers: {'Authorization': 'Bearer abc.DEF-123_456789xyz'}", "abc.DEF-123_456789xyz",
                      "'Bearer <redacted>'"),
    "x-api-key header": ("sent X-Api-Key: 7f3a9c2e1b8d4f60 upstream", "7f3a9c2e1b8d4f60", "X-Api-Key: <redacted>"),
    "echoed json body": ('{"error": {"message": "bad request", "api_key": "plainsecretvalue"}}', "plainsecretvalue",
                         '"api_key": "<redacted>"'),
    "assignment": ("login failed for password=hunter2hunter2, retry", "hunter2hunter2", "password=<redacted>, retry"),
    "environment value": (f"the key {ENV_KEY} does not exist", ENV_KEY, "the key <redacted> does not exist"),
}
NOT_SECRETS = [
    "max_tokens=32768 num_tokens=5 token: 5",
    "https://huggingface.co/datasets/open-r1/OpenR1-Math-220k?download=true",
    "the API key variable OPENAI_API_KEY is not set (export OPENAI_API_KEY=...)",
    "a task-specific-identifier-that-is-long and a disk-backed cache",
    "sha256 b0f77d3009f266233eed9d1a3decf0631982cd2c87ce78a256ebf5a3aa030dee",
    "<think>\n1 plus 1 is 2\n</think>\n\n\\boxed{2}",
]


@pytest.fixture(autouse=True)
def secret_environment(monkeypatch):
    monkeypatch.setenv("TEAM_API_KEY", ENV_KEY)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # a TOKEN-ish name that holds no secret
    monkeypatch.setattr(integrity, "_registered", set())


@pytest.mark.parametrize("case", list(CASES))
def test_each_secret_form_is_redacted_from_text(case):
    text, secret, expected = CASES[case]
    redacted = integrity.redact_text(text)
    assert secret not in redacted and expected in redacted, redacted


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_text_without_secrets_is_unchanged(text):
    assert integrity.redact_text(text) == text


def test_environment_values_only_in_error_lines_and_registered_secrets_everywhere():
    assert ENV_KEY in integrity.redact_text(f"name {ENV_KEY}", environment=False)  # manifests: shapes only
    integrity.register_secret("a-key-read-from-a-flag-named-variable")
    for environment in (True, False):
        assert integrity.redact_text("got a-key-read-from-a-flag-named-variable", environment) == "got <redacted>"


# ---------------------------------------------------------------------------- error lines (real CLI)


class _EchoingServer(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible server that answers 400 to /models, echoing secrets in its error message."""

    daemon_threads = True
    message = ""       # a template: {auth} is the Authorization header received, {key} the key
    last_message = ""  # what it last sent back


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        message = self.server.message.format(auth=self.headers.get("Authorization", ""), key=ENV_KEY)
        self.server.last_message = message
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echoing_server():
    server = _EchoingServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# echo -> (the server's error message, the secret in it, --base-url's user:password or "")
ECHOES = {
    "the authorization header": ("invalid credentials: {auth}", ENV_KEY, ""),  # Bearer KEY
    "the key alone": ("the key {key} does not exist", ENV_KEY, ""),
    "an sk- key": ("Incorrect API key provided: sk-live-0123456789abcdefABCDEF", "0123456789abcdefABCDEF", ""),
    "an hf_ token": ("upstream refused hf_AbCdEfGhIjKlMnOpQrStUv", "hf_AbCdEfGhIjKlMnOpQrStUv", ""),
    "an upstream url": ("upstream https://svc:upstreamPass99@10.0.0.1/v1?token=tok123456 failed", "upstreamPass99", ""),
    "--base-url credentials (sent as Basic auth)": ("invalid credentials: {auth}", "urlPassw0rd42",
                                                    "alice:urlPassw0rd42@"),
}


@pytest.mark.parametrize("echo", list(ECHOES))
def test_error_line_of_a_real_command_has_no_secret(echo, echoing_server, home, tmp_path, capsys):
    from distill.cli import main

    template, secret, userinfo = ECHOES[echo]
    echoing_server.message = template
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    port = echoing_server.server_address[1]
    argv = ["generate", "--engine", "openai", "--base-url", f"http://{userinfo}127.0.0.1:{port}/v1",
            "--api-key-env", "TEAM_API_KEY", "--teacher", "served-model", "--dataset", str(dataset)]
    capsys.readouterr()
    renderer = log._renderer
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        log.set_renderer(renderer)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured.err[-2000:]
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    basic = base64.b64encode(userinfo.rstrip("@").encode()).decode() if userinfo else secret  # httpx's Basic auth
    assert secret in echoing_server.last_message or basic in echoing_server.last_message  # the server sent it back
    assert "answered 400 to /models" in err and "<redacted>" in err
    for leaked in (secret, ENV_KEY, "urlPassw0rd42", basic):
        assert leaked not in err + captured.out, err
    # where it went is still said
    assert f"http://{'<redacted>@' if userinfo else ''}127.0.0.1:{port}/v1 answered" in err


# ---------------------------------------------------------------------------- manifests


def test_real_eval_stores_base_url_without_credentials(home, tmp_path, capsys):
    from distill.cli import main

    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text(json.dumps({"problem": "1+1?", "answer": "2", "completion": "<think>2</think> \\boxed{2}"}) + "\n")
    base_url = "https://alice:urlPassw0rd42@api.example.com/v1?api_key=QWERTY123456"
    renderer = log._renderer
    try:
        main(["eval", "--outputs", str(outputs), "--engine", "openai", "--base-url", base_url, "--name", "ev"])
    finally:
        log.set_renderer(renderer)
    evaluated = artifacts.resolve("ev", kind="eval")  # verified: the hash is over the redacted manifest
    text = (evaluated.path / artifacts.MANIFEST).read_text()
    assert "urlPassw0rd42" not in text and "QWERTY123456" not in text
    assert evaluated.manifest["config"]["base_url"] == "https://<redacted>@api.example.com/v1?api_key=<redacted>"


def test_every_string_of_a_manifest_is_redacted(home):
    config = {"base_url": CASES["url credentials"][0], "hosts": [CASES["query parameter"][0]],
              "note": {"deep": CASES["sk- key"][0]}, "api_key": "plain", "api_key_env": "TEAM_API_KEY"}
    with artifacts.create("traces", "traces", config=config) as writer:
        writer.save_dataset(datasets.Dataset.from_list([{"a": 1}]))
        writer.stats["server_said"] = CASES["hf_ token"][0]
        writer.extra["served_by"] = CASES["bearer header"][0]
    artifact = artifacts.resolve("traces", kind="traces")  # the manifest hash is over what was written
    text = Path(artifact.path / artifacts.MANIFEST).read_text()
    for case in ("url credentials", "query parameter", "sk- key", "hf_ token", "bearer header"):
        assert CASES[case][1] not in text, case
    manifest = artifact.manifest
    assert manifest["config"]["api_key"] == "<redacted>" and manifest["config"]["api_key_env"] == "TEAM_API_KEY"
    assert manifest["stats"]["server_said"] == "token hf_<redacted> is not authorized"
