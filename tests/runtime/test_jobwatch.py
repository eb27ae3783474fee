"""The merge pod fails fast when evaluate indexes have failed, reading the Job over HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import run_all, spec_from
from landscape_job import stages
from landscape_job.base.errors import StageError
from landscape_job.runtime.jobwatch import failure_check, job_failure, job_reader
from landscape_job.run.shards import shard_key
from launcher.local.runner import open_run

RUNNING = {"status": {"active": 2, "completedIndexes": "0-1"}}
INDEX_FAILED = {"status": {"active": 1, "completedIndexes": "0,2", "failedIndexes": "1,3"}}
JOB_FAILED = {"status": {"failedIndexes": "1", "conditions": [
    {"type": "FailureTarget", "status": "True"},
    {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}]}}
COMPLETE = {"status": {"completedIndexes": "0-2", "conditions": [{"type": "Complete", "status": "True"}]}}


def test_job_failure_reads_real_shaped_status() -> None:
    assert job_failure(RUNNING) is None and job_failure(COMPLETE) is None and job_failure({}) is None
    assert "indexes 1,3 failed" in job_failure(INDEX_FAILED)
    message = job_failure(JOB_FAILED)
    assert "the evaluate Job failed (FailedIndexes: Job has failed indexes)" in message and "failed indexes: 1" in message


class _FakeApi(BaseHTTPRequestHandler):
    job: dict = RUNNING
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps({"apiVersion": "batch/v1", "kind": "Job", **type(self).job}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeApi.seen = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_merge_stops_waiting_when_indexes_failed(tmp_path: Path, linear_spec: dict, fake_api) -> None:
    linear_spec["compute"]["shards"] = 3
    run = open_run(spec_from(tmp_path, linear_spec), "failfast")
    run_all(run, 3)
    run.delete(shard_key(1, 3))
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    url = f"http://127.0.0.1:{fake_api.server_port}/apis/batch/v1/namespaces/ns/jobs/r-evaluate"
    _FakeApi.job = INDEX_FAILED
    check = failure_check(job_reader(url, token), log=lambda _: None)
    with pytest.raises(StageError, match=r"indexes 1,3 failed and will not be retried; see their pods. logs; 1 missing .*shard-1-of-3"):
        stages.merge(run, log=lambda _: None, plots=False, wait_seconds=30, abort=check)
    assert _FakeApi.seen[0] == ("/apis/batch/v1/namespaces/ns/jobs/r-evaluate", "Bearer sa-token")


@pytest.mark.slow
def test_an_unreachable_api_does_not_fail_the_merge(tmp_path: Path, linear_spec: dict) -> None:
    """A shard still missing while the API is unreachable: the merge asks the API at
    every poll, logs the trouble once, keeps waiting on storage, and merges when the
    shard arrives."""
    linear_spec["compute"]["shards"] = 2
    run = open_run(spec_from(tmp_path, linear_spec), "noapi")
    run_all(run, 2)
    late = run.get(shard_key(1, 2))
    run.delete(shard_key(1, 2))
    run.delete("surface.h5")
    token = tmp_path / "token"
    token.write_text("t")
    messages: list[str] = []
    reader = job_reader("http://127.0.0.1:9/apis/batch/v1/namespaces/ns/jobs/x", token, timeout=2)
    calls = {"n": 0}

    def counted() -> dict:
        calls["n"] += 1
        return reader()

    arrives = threading.Timer(2.0, lambda: run.put(shard_key(1, 2), late))
    arrives.start()
    try:
        stages.merge(run, log=lambda _: None, plots=False, wait_seconds=30,
                     abort=failure_check(counted, messages.append))
    finally:
        arrives.cancel()
    assert run.exists("surface.h5")
    assert calls["n"] >= 2
    assert len(messages) == 1 and messages[0].startswith("merge: cannot read the evaluate Job's status (")


@pytest.mark.parametrize("error", [OSError("connection refused"), ValueError("not JSON")])
def test_failure_check_logs_api_trouble_once_and_keeps_waiting(error: Exception) -> None:
    messages: list[str] = []

    def broken() -> dict:
        raise error

    check = failure_check(broken, messages.append)
    assert check() is None and check() is None
    assert messages == [f"merge: cannot read the evaluate Job's status ({error}); waiting on storage alone"]


def test_failure_check_passes_the_job_s_verdict_on() -> None:
    jobs = iter([RUNNING, INDEX_FAILED])
    check = failure_check(lambda: next(jobs), log=lambda _: None)
    assert check() is None
    assert check() == job_failure(INDEX_FAILED)


@pytest.mark.parametrize("condition,want", [
    ({"type": "Failed", "status": "True"}, "the evaluate Job failed (Failed)"),
    ({"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}, "the evaluate Job failed (DeadlineExceeded)"),
    ({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the "
      "specified backoff limit"}, "the evaluate Job failed (BackoffLimitExceeded: Job has reached the specified "
                                  "backoff limit)"),
    ({"type": "Failed", "status": "False", "reason": "Nope"}, None),
])
def test_a_failed_job_without_failed_indexes_is_named_exactly(condition: dict, want: str | None) -> None:
    """A Job can fail as a whole (its deadline, its backoff limit) with no failed index;
    the reason and message are optional fields: the line says what there is, no more."""
    assert job_failure({"status": {"conditions": [condition]}}) == want


@pytest.mark.parametrize("code,final", [(404, "is gone (deleted; the run cancelled?)"), (403, "is out of reach (forbidden)"),
                                        (503, None), (429, None)])
def test_a_deleted_or_forbidden_job_is_final_a_busy_server_is_not(code: int, final: str | None) -> None:
    from landscape_job.runtime.kube import ApiError

    def reader() -> dict:
        raise ApiError(code, "jobs.batch \"r-evaluate\" not found")

    messages: list[str] = []
    check = failure_check(reader, messages.append)
    verdicts = [check(), check()]
    if final is None:  # logged once, the merge waits on storage alone
        assert verdicts == [None, None]
        assert messages == [f"merge: cannot read the evaluate Job's status (HTTP {code}: jobs.batch \"r-evaluate\" "
                            "not found); waiting on storage alone"]
    else:
        assert verdicts == [f"the evaluate Job {final}: jobs.batch \"r-evaluate\" not found"] * 2 and messages == []
