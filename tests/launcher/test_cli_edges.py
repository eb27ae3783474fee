"""The CLIs at their edges: every static mistake of a spec at once, a reader that closes the pipe,
a shard index past the run's shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_spec
from launcher.cli import main as launcher


def _errors(capsys: pytest.CaptureFixture) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_validate_lists_every_static_mistake_one_a_line(tmp_path: Path, linear_spec: dict,
                                                        capsys: pytest.CaptureFixture) -> None:
    linear_spec["name"] = "Bad Name"
    linear_spec["data"]["splits"] = ["train", "validation"]
    linear_spec["compute"].update(precision="fp8", batch_size=0)
    linear_spec["plot"] = {"vmin": 2, "vmax": 1}
    linear_spec["lose"] = "mse"
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["validate", str(path)]) == 2
    lines = _errors(capsys)
    assert [line.split(":")[2].strip() for line in lines] == [
        "name", "data.splits", "compute.precision", "compute.batch_size", "plot.vmin", "lose"], lines
    assert all(line.startswith("launcher: error: ") for line in lines)
    assert "did you mean 'loss'?" in lines[-1]


def test_sections_that_need_a_wrong_one_are_skipped_and_said_to_be(tmp_path: Path, linear_spec: dict,
                                                                   capsys: pytest.CaptureFixture) -> None:
    linear_spec["grid"] = {"x": "-1:1", "y": "1:0:5"}
    linear_spec["directions"]["norm"] = "sideways"  # not seen: directions needs the grid
    linear_spec["loss"] = "hinge"
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["validate", str(path)]) == 2
    lines = _errors(capsys)
    assert lines[0].startswith("launcher: error: loss: expected one of")
    assert lines[1].startswith('launcher: error: grid.x: expected "min:max:num"')
    assert lines[2].startswith("launcher: error: grid.y: min must be below")
    assert lines[3:] == ["launcher: note: directions: not checked, it depends on grid (wrong above)",
                         "launcher: note: compute: not checked, it depends on grid (wrong above)"]


def test_submit_refuses_with_every_mistake_before_anything_is_written(tmp_path: Path, linear_spec: dict,
                                                                      capsys: pytest.CaptureFixture) -> None:
    linear_spec["compute"]["shards"] = "many"
    linear_spec["data"]["subset"] = -3
    path = write_spec(tmp_path, linear_spec)
    assert launcher(["submit", str(path), "--local", "--run-id", "x"]) == 2
    lines = _errors(capsys)
    assert len(lines) == 2 and "data.subset" in lines[0] and "compute.shards" in lines[1]
    assert not (tmp_path / "runs").exists()


def test_one_mistake_is_one_line_as_before(tmp_path: Path, linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    linear_spec["compute"]["shards"] = 0
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 2
    assert _errors(capsys) == ["launcher: error: compute.shards: must be at least 1, got 0"]
    linear_spec["compute"]["shards"] = 1
    linear_spec["grid"]["x"] = "-1:1:0"  # one mistake, and what it kept from being checked
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 2
    assert _errors(capsys) == ['launcher: error: grid.x: num must be at least 1, got "-1:1:0"',
                               "launcher: note: directions: not checked, it depends on grid (wrong above)",
                               "launcher: note: compute: not checked, it depends on grid (wrong above)"]


def test_a_closed_pipe_ends_quietly() -> None:
    """``launcher schema | head -1``: the reader is gone before the output is written; no traceback,
    no 'Exception ignored', the shell's SIGPIPE status (on main this printed a BrokenPipeError traceback)."""
    read, write = os.pipe()
    os.close(read)  # the reader (head) has exited: every write fails with EPIPE
    code = "import sys; from launcher.cli import main; sys.exit(main(sys.argv[1:]))"
    try:
        done = subprocess.run([sys.executable, "-c", code, "schema"], stdout=write, stderr=subprocess.PIPE,
                              timeout=120, text=True)
    finally:
        os.close(write)
    assert done.stderr == "" and done.returncode == 141


def test_both_clis_are_pipe_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard both mains wear: output to a closed pipe is exit 141, stdout then points at /dev/null."""
    import landscape_job.cli
    import launcher.cli

    assert landscape_job.cli.main.__wrapped__ and launcher.cli.main.__wrapped__
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stream)

    @landscape_job.cli.pipe_safe
    def chatty(argv) -> int:
        print("line\n" * 10_000)
        return 0

    try:
        assert chatty([]) == landscape_job.cli.BROKEN_PIPE_EXIT == 141
    finally:
        stream.close()  # its last bytes go to /dev/null now: no error


def test_logs_index_past_the_shards_is_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "runs" / "two"
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.yaml").write_text("compute: {shards: 2}\n")
    (folder / "logs" / "evaluate-0.log").write_text("evaluate: point 1\n")
    assert launcher(["logs", str(folder), "--index", "7"]) == 2
    assert _errors(capsys) == ["launcher: error: --index: 7 is out of range: run two has 2 shards (0..1)"]
    assert launcher(["logs", str(folder), "--index", "1"]) == 2  # in range, not started: as before
    assert "no logs for shard 1" in _errors(capsys)[0]
