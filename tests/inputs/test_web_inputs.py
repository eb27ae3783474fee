"""Web inputs against a loopback server of our own that fails on purpose (issue 12, point 5).

Exit 2 ends an index or a Job for good (podFailurePolicy FailIndex/FailJob), so a passing
fault must never produce it: 5xx, 429, a reset connection and a body cut short are retried
within a bounded budget and end in exit 1; 404, 410, 401 and 403 are the user's and end
in exit 2 after exactly one request. The server counts the requests, so "retried" and
"bounded" are observed, not assumed.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import socket
import struct
import threading
from pathlib import Path
from typing import Iterator

import pytest

from conftest import write_spec
from landscape_job.base.cache import CACHE_ENV
from landscape_job.cli import main as landscape_job
from landscape_job.cli import run_guarded
from landscape_job.base.errors import StageError, UserError
from landscape_job.inputs.fetch import Fetcher
from landscape_job.storage.retry import RetryPolicy, retrying
from landscape_job.inputs.web import retry_after, web_fault

ATTEMPTS = 4
BODY = b"the checkpoint's bytes " * 100
PIN = hashlib.sha256(BODY).hexdigest()


class Script:
    """What the server answers, request by request: a list of actions, the last one repeated."""

    def __init__(self) -> None:
        self.actions: list[tuple] = [("ok",)]
        self.requests: list[str] = []

    def next(self) -> tuple:
        return self.actions.pop(0) if len(self.actions) > 1 else self.actions[0]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Script]]:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("LANDSCAPE_HTTP_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("LANDSCAPE_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("LANDSCAPE_HTTP_BACKOFF_MAX", "0.05")
    monkeypatch.setenv("LANDSCAPE_HTTP_READ_TIMEOUT", "5")
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bool) -> None:
            script.requests.append(f"{self.command} {self.path}")
            action = script.next()
            kind = action[0]
            if kind == "reset":  # RST instead of an answer
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if kind == "status":
                code, headers = action[1], action[2] if len(action) > 2 else {}
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            if body:
                if kind == "short":  # promises the whole body, sends half, hangs up
                    self.wfile.write(BODY[: len(BODY) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(BODY)

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def _fetch(base: str) -> str:
    return Fetcher().file(f"{base}/model.pt", "model.checkpoint", PIN)


def test_passing_faults_are_retried_and_the_input_arrives(server: tuple[str, Script]) -> None:
    base, script = server
    script.actions = [("status", 500), ("reset",), ("short",), ("ok",)]
    path = _fetch(base)
    assert Path(path).read_bytes() == BODY
    assert script.requests == ["GET /model.pt"] * 4
    script.actions = [("status", 503, {"Retry-After": "0"}), ("status", 429), ("ok",)]
    script.requests.clear()
    Fetcher().check(f"{base}/other.pt", "model.checkpoint")  # the launcher's HEAD before a submit
    assert script.requests == ["HEAD /other.pt"] * 3


@pytest.mark.parametrize("action", [("status", 500), ("status", 502), ("status", 503), ("status", 429),
                                    ("status", 403, {"Retry-After": "0"}), ("reset",), ("short",)],
                         ids=["500", "502", "503", "429", "403-rate-limited", "reset", "short"])
def test_a_fault_that_lasts_is_exit_1_after_a_bounded_number_of_attempts(
        server: tuple[str, Script], capsys: pytest.CaptureFixture[str], action: tuple) -> None:
    base, script = server
    script.actions = [action]
    with pytest.raises(StageError, match=rf"^model.checkpoint: download {base}/model.pt: still failing after "
                                         rf"{ATTEMPTS} attempts"):
        _fetch(base)
    assert script.requests == ["GET /model.pt"] * ATTEMPTS
    script.requests.clear()
    assert run_guarded(lambda: _fetch(base), "landscape-job") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "try again later" in err
    assert not list(Path(Fetcher().cache, "files").glob("*/model.pt"))  # nothing half-fetched in the cache


@pytest.mark.parametrize("code,advice", [(404, "fix the URL"), (410, "fix the URL"), (400, "fix the URL"),
                                         (401, "without credentials"), (403, "without credentials"),
                                         (501, "fix the URL")])
def test_the_users_mistakes_are_exit_2_after_one_request(
        server: tuple[str, Script], capsys: pytest.CaptureFixture[str], code: int, advice: str) -> None:
    base, script = server
    script.actions = [("status", code)]
    assert run_guarded(lambda: _fetch(base), "landscape-job") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"landscape-job: error: model.checkpoint: {base}/model.pt answered HTTP {code}")
    assert advice in err and err.count("\n") == 1
    assert script.requests == ["GET /model.pt"]
    with pytest.raises(UserError, match=f"answered HTTP {code}"):
        Fetcher().check(f"{base}/model.pt", "model.checkpoint")


def test_a_wrong_pin_is_exit_2_and_an_unknown_host_too(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    with pytest.raises(UserError, match=r"does not match its sha256 pin"):
        Fetcher().file(f"{base}/model.pt", "model.checkpoint", "0" * 64)
    assert script.requests == ["GET /model.pt"]  # the whole body came: the pin is wrong, not the transfer
    err = web_fault(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert err is None  # NXDOMAIN is an answer, not a hiccup...
    assert web_fault(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))  # ...this is
    assert web_fault(ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(UserError, match=r"^model.checkpoint: .*fix the URL"):
        Fetcher().file(f"{base.replace('http://127.0.0.1', 'http://127.0.0.1:99999')}/m.pt", "model.checkpoint", PIN)


def test_retry_after_is_honoured_within_the_longest_backoff() -> None:
    pauses: list[float] = []

    class Later(Exception):
        def __init__(self, seconds: str):
            super().__init__("later")
            self.headers = {"Retry-After": seconds}

    def call(attempt: int) -> str:
        if attempt == 1:
            raise Later("3")
        if attempt == 2:
            raise Later("1000")
        return "done"

    policy = RetryPolicy(attempts=3, backoff=0.001, backoff_max=10.0)
    assert retrying(call, "x", policy, pauses.append, classify=lambda e: "later", wait_hint=retry_after) == "done"
    assert pauses[0] == pytest.approx(3.0) and pauses[1] == pytest.approx(10.0)


@pytest.mark.slow
@pytest.mark.parametrize("action,code", [(("status", 503), 1), (("status", 404), 2)])
def test_the_prepare_stage_exits_by_class(server: tuple[str, Script], tmp_path: Path, linear_spec: dict,
                                          capsys: pytest.CaptureFixture[str], action: tuple, code: int) -> None:
    base, script = server
    script.actions = [action]
    raw = copy.deepcopy(linear_spec)
    raw["model"]["checkpoint"] = {"url": f"{base}/model.pt", "sha256": PIN}
    spec_file = write_spec(tmp_path, raw)
    run = tmp_path / "run"
    assert landscape_job(["--run", run.as_uri(), "prepare", "--spec-file", str(spec_file)]) == code
    assert "Traceback" not in capsys.readouterr().err
    assert len(script.requests) == (ATTEMPTS if code == 1 else 1)
    assert not (run / "directions.h5").exists()
