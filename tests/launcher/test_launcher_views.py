"""What the cluster commands print and the progress bar draws, without a cluster: pure functions of
the server's objects (``launcher.kubernetes.job_state``, ``launcher.commands.views``) and the tqdm bar on a stream."""

from __future__ import annotations

import io
from typing import Any

import pytest

from landscape_job.run.records import ProgressRecord
from launcher import progress
from launcher.commands.follow import merged, stop_error
from launcher.commands.logs import latest_pods
from launcher.backends.pulling import pulled_keys
from launcher.commands.views import (SHARDS_SHOWN, failed_parts, failed_pod_heading, format_seconds, format_size,
                                     job_line, progress_lines, runs_table, status_head)
from launcher.run_status import cluster_stage
from launcher.kubernetes.job_state import INDEX_KEY, end_condition, exit_code, indexes, job_state, newest, pod_index


def job(stage: str, run: str = "r1", conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"{run}-{stage}", "labels": {"landscape.run": run, "landscape.stage": stage}},
            "spec": {"completions": 4} if stage == "evaluate" else {},
            "status": {"conditions": conditions or [], **status}}


def ended(kind: str, reason: str = "Why", message: str = "what happened") -> list[dict[str, Any]]:
    return [{"type": kind, "status": "True", "reason": reason, "message": message}]


def pod(name: str, stage: str, created: str, index: int | None = None, phase: str = "Running",
        code: int | None = None) -> dict[str, Any]:
    labels = {"landscape.stage": stage, **({INDEX_KEY: str(index)} if index is not None else {})}
    statuses = [{"state": {"terminated": {"exitCode": code}}}] if code is not None else []
    return {"metadata": {"name": name, "labels": labels, "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": statuses}}


# -- job_state ----------------------------------------------------------------------------

def test_indexes_expand_ranges() -> None:
    assert indexes("1,3-5") == [1, 3, 4, 5] and indexes(None) == [] and indexes("") == []


def test_a_job_has_ended_only_on_complete_or_failed() -> None:
    target = [{"type": "FailureTarget", "status": "True"}]
    assert end_condition(job("merge", conditions=target)) is None
    assert job_state(job("merge", conditions=target, active=1)) == "Running"
    assert job_state(job("merge")) == "Pending"
    assert job_state({**job("merge"), "spec": {"suspend": True}}) == "Suspended"
    assert job_state(job("merge", conditions=ended("Failed"))) == "Failed"
    assert job_state(job("merge", conditions=[{"type": "Complete", "status": "False"}])) == "Pending"


def test_pod_index_from_label_or_annotation_and_exit_code() -> None:
    assert pod_index(pod("p", "evaluate", "t", index=3)) == 3
    annotated = {"metadata": {"name": "p", "labels": {}, "annotations": {INDEX_KEY: "2"}}}
    assert pod_index(annotated) == 2 and pod_index(pod("m", "merge", "t")) is None
    assert exit_code(pod("p", "merge", "t", code=2)) == 2 and exit_code(pod("p", "merge", "t")) is None


def test_newest_keeps_the_latest_pod_per_key_and_leaves_out_none() -> None:
    pods = [pod("a", "evaluate", "2024-01-01T00:00:02Z", 0), pod("b", "evaluate", "2024-01-01T00:00:05Z", 0),
            pod("c", "evaluate", "2024-01-01T00:00:01Z", 1), pod("m", "merge", "2024-01-01T00:00:09Z")]
    latest = newest(pods, lambda p: pod_index(p))
    assert {k: p["metadata"]["name"] for k, p in latest.items()} == {0: "b", 1: "c"}


# -- views --------------------------------------------------------------------------------

def test_seconds_and_sizes() -> None:
    assert [format_seconds(s) for s in (None, 4.7, 61, 7500)] == ["--", "0m04s", "1m01s", "2h05m"]
    assert [format_size(n) for n in (512, 1500, 2_500_000, 3e12)] == ["512 B", "1.5 kB", "2.5 MB", "3000.0 GB"]


def test_job_lines() -> None:
    evaluate = job("evaluate", conditions=ended("Failed", "BackoffLimitExceeded", "too many"),
                   completedIndexes="0,2", failedIndexes="1", active=0)
    assert job_line("evaluate", evaluate) == \
        "  evaluate  Failed     2/4 shards complete, failed: 1; BackoffLimitExceeded: too many"
    assert job_line("prepare", job("prepare", active=1)) == "  prepare   Running"
    assert job_line("merge", None) == "  merge     (gone: deleted, or removed after ttlSecondsAfterFinished)"


def test_status_lines() -> None:
    jobs = {"prepare": job("prepare", conditions=ended("Complete", "Done", "ok"))}
    head = status_head("r1", "team-a", "s3://b/runs/r1", jobs)
    assert head[0] == "run r1  namespace team-a  storage s3://b/runs/r1"
    assert head[1] == "  prepare   Complete   Done: ok" and head[2].startswith("  evaluate  (gone")
    running = ProgressRecord(done=3, total=10, rate=1.5, eta_s=4.7, state="running", host="h", device="cpu")
    finished = ProgressRecord(done=10, total=10, rate=2, state="done", host="g", device="cuda:0")
    assert progress_lines({0: running, 1: finished}, 4) == [
        "shards: 2 of 4 started, 13 points done, 1.50 points/s",
        "  shard    0  3/10 points  1.50 points/s  ETA 0m04s  running on h (cpu)",
        "  shard    1  10/10 points  2.00 points/s  ETA -  done on g (cuda:0)"]
    many = progress_lines({i: finished for i in range(SHARDS_SHOWN + 3)}, 60)
    assert len(many) == 1 + SHARDS_SHOWN + 1 and many[-1] == "  ... 3 more shards"


def test_failed_parts_and_their_headings() -> None:
    jobs = {"evaluate": job("evaluate", failedIndexes="1,3"), "merge": job("merge", conditions=ended("Failed")),
            "prepare": job("prepare", conditions=ended("Complete"))}
    assert failed_parts(cluster_stage(stage, j) for stage, j in jobs.items()) == {("evaluate", 1): "shard 1", ("evaluate", 3): "shard 3", ("merge", None): "merge"}
    assert failed_pod_heading("shard 1", {}) == "shard 1 failed; its pod is gone, and its log with it"
    assert failed_pod_heading("shard 1", pod("r1-evaluate-1-x", "evaluate", "t", 1, "Failed", code=2)) == \
        "shard 1 failed: pod r1-evaluate-1-x, exit code 2 (a mistake in the spec or its inputs: not retried); " \
        "last lines of its log:"


def test_runs_table() -> None:
    cm = {"metadata": {"labels": {"landscape.run": "r1"}, "creationTimestamp": "2024-01-01T00:00:00Z"},
          "data": {"spec.yaml": "storage: {url: s3://b/runs/}\n"}}
    bare = {"metadata": {"labels": {"landscape.run": "r0"}, "creationTimestamp": "2023-01-01T00:00:00Z"},
            "data": {"spec.yaml": "storage: /tmp/runs\n"}}
    jobs = [job("evaluate", completedIndexes="0-1"), job("merge", active=1)]
    lines = runs_table([cm, bare], jobs)
    assert lines[0].split() == ["RUN", "STATUS", "SHARDS", "CREATED", "STORAGE"]
    assert lines[1].split() == ["r0", "(no", "jobs)", "-", "2023-01-01T00:00:00Z", "/tmp/runs/r0"]
    assert lines[2].split() == ["r1", "Running", "2/4", "2024-01-01T00:00:00Z", "s3://b/runs/r1"]


# -- the commands' pure parts -------------------------------------------------------------

def test_follow_stops_on_a_failed_or_vanished_run_and_ends_on_merge() -> None:
    assert stop_error("r1", {}) == "run r1: its Jobs are gone (cancelled?)"
    failed = {"evaluate": job("evaluate", conditions=ended("Failed", "BackoffLimitExceeded", "x"), failedIndexes="2")}
    assert stop_error("r1", failed) == (
        "run r1: the evaluate Job failed (BackoffLimitExceeded: x); failed shards: 2; see launcher status r1. "
        "To resume: launcher cancel r1, then submit again with --run-id r1")
    done = {"merge": job("merge", conditions=ended("Complete"))}
    assert stop_error("r1", done) is None and merged(done) and not merged({"merge": job("merge", active=1)})


def test_logs_take_the_newest_pod_per_stage_and_shard_in_order() -> None:
    pods = [pod("m", "merge", "t5"), pod("e1", "evaluate", "t3", 1), pod("e0-old", "evaluate", "t1", 0),
            pod("e0", "evaluate", "t2", 0), pod("p", "prepare", "t0")]
    assert [p["metadata"]["name"] for p in latest_pods(pods, None)] == ["p", "e0", "e1", "m"]
    assert [p["metadata"]["name"] for p in latest_pods(pods, 1)] == ["e1"]


def test_pull_fetches_the_results_first_and_shards_only_when_asked() -> None:
    available = {"plots/b.png", "plots/a.png", "report.json", "surface.h5", "spec.yaml", "shards/shard-0-of-1.h5"}
    assert pulled_keys(available, False) == ["surface.h5", "report.json", "spec.yaml", "plots/a.png", "plots/b.png"]
    assert pulled_keys(available, True)[-1] == "shards/shard-0-of-1.h5"


# -- the progress bar ---------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_the_bar_is_sparse_whole_lines() -> None:
    log = io.StringIO()
    with progress.points_bar(20, log) as bar:
        for done in range(0, 21):
            progress.advance_to(bar, done)
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert len(lines) == 2, text  # the first line, then the last: updates within LOG_INTERVAL draw nothing
    assert lines[0].startswith("evaluate ") and "0/20 points" in lines[0]
    assert "20/20 points" in lines[-1] and "points/s" in lines[-1] and "ETA" in lines[-1]


def test_in_a_log_a_line_comes_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0)
    log = io.StringIO()
    with progress.points_bar(3, log) as bar:
        for done in (1, 2, 3):
            progress.advance_to(bar, done)
    assert [line.split("| ")[1].split()[0] for line in log.getvalue().splitlines()] == ["0/3", "1/3", "2/3", "3/3",
                                                                                        "3/3"]


def test_on_a_terminal_the_bar_redraws_one_line() -> None:
    terminal = Terminal()
    with progress.points_bar(4, terminal) as bar:
        progress.advance_to(bar, 4)
    text = terminal.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and "\r" in text and "4/4 points" in text


def test_suspended_stages_say_they_wait_for_prepare_or_never_start():
    from launcher.run_status import StageStatus, gated

    def stages(prepare: str, kueue: str | None = None) -> dict[str, tuple]:
        merge = StageStatus("merge", "Suspended", "Kueue" if kueue else None, kueue)
        shown = gated((StageStatus("prepare", prepare), StageStatus("evaluate", "Suspended"), merge))
        return {s.stage: (s.state, s.reason, s.message) for s in shown}

    running = stages("Running")
    assert running["prepare"] == ("Running", None, None)
    assert running["evaluate"] == ("Suspended", "Gated", "released by prepare once its output is written")
    failed = stages("Failed")
    assert failed["evaluate"] == failed["merge"] == ("Suspended", "NotStarted", "prepare failed: never released")
    assert stages("Complete", kueue="in queue q")["merge"] == ("Suspended", "Kueue", "in queue q")  # Kueue's word stays
