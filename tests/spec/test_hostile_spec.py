"""Hostile and careless spec text (issue 13, point 4): one line, exit 2, no traceback, nothing written.

Each case is refused by ``launcher validate`` and by ``launcher submit --local`` alike
(they share one check), in well under a second, with a message that never echoes the
unbounded value, and before the storage folder exists.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_spec
from landscape_job.base.errors import UserError
from landscape_job.spec.parse import load_spec
from launcher.cli import main as launcher

BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, a in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh"))


def _text(spec: dict) -> str:
    return yaml.safe_dump(spec, sort_keys=False)


def _refused(tmp_path: Path, text: str, capsys, pattern: str) -> None:
    """Both commands: exit 2, one line naming ``pattern``, nothing written, quick."""
    path = tmp_path / "surface.yaml"
    path.write_text(text)
    for argv in (["validate", str(path)], ["submit", str(path), "--local"]):
        started = time.process_time()  # this process's CPU seconds: bounded work, whatever else the machine runs
        code = launcher(argv)
        elapsed = time.process_time() - started
        out, err = capsys.readouterr()
        assert code == 2, (argv, err)
        # One error line; a wrong grid also notes the sections it kept from being checked.
        lines = [line for line in err.strip().splitlines() if not line.startswith("launcher: note: ")]
        assert len(lines) == 1 and pattern in lines[0], (argv, err[:500])
        assert len(lines[0]) < 400, lines[0][:500]
        assert "Traceback" not in err
        assert elapsed < 1.0, (argv, elapsed)
        assert not (tmp_path / "runs").exists()


def test_a_5000_digit_integer_is_one_line(tmp_path, linear_spec, capsys) -> None:
    for key in ("compute.shards", "directions.seed"):
        section, name = key.split(".")
        text = _text(linear_spec).replace(f"  {name}: {linear_spec[section][name]}\n", f"  {name}: {'9' * 5000}\n")
        _refused(tmp_path, text, capsys, "integer of 5000 digits")
    linear_spec["grid"]["x"] = "-1:1:" + "9" * 5000
    _refused(tmp_path, _text(linear_spec), capsys, "grid.x: num is far too large")


@pytest.mark.slow
def test_nesting_120000_deep_is_one_line(tmp_path, linear_spec, capsys) -> None:
    """Refused at the 65th level, one event at a time: libyaml's own composer (CSafeLoader) recurses once
    a level in C and kills the process with a segmentation fault at about 100,000 (a spec may have 256 KiB)."""
    _refused(tmp_path, _text(linear_spec) + "plot: " + "[" * 120000 + "]" * 120000 + "\n", capsys,
             "nested more than 64 levels deep")


def test_alias_bomb_is_refused_fast_with_bounded_memory(tmp_path, linear_spec, capsys) -> None:
    text = BOMB + _text(linear_spec).replace("name: linear", "name: *h")
    _refused(tmp_path, text, capsys, "aliases expand to more than 10,000 nodes")
    # Bounded memory: the refusal allocates a few MB at most (it filled 6 GB before).
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="aliases expand"):
            load_spec(tmp_path / "surface.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak


def test_duplicate_keys_are_refused(tmp_path, linear_spec, capsys) -> None:
    text = _text(linear_spec).replace("  shards: 1\n", "  shards: 1\n  shards: 2\n")
    _refused(tmp_path, text, capsys, "duplicate key 'shards'")
    _refused(tmp_path, _text(linear_spec) + "compute:\n  shards: 2\n", capsys, "duplicate key 'compute'")


def test_merge_keys_are_not_duplicates(tmp_path, linear_spec, capsys) -> None:
    linear_spec.pop("compute")
    text = "base: &base {shards: 1, batch_size: 32}\n" + _text(linear_spec)
    text = text.replace("base: &base", "x_: &base")  # an anchor outside any key the spec reads ...
    text = text.replace("x_: &base {shards: 1, batch_size: 32}\n", "")
    text += "compute: {<<: {shards: 2, batch_size: 16}, shards: 1}\n"  # ... a merge overridden by a key
    path = tmp_path / "surface.yaml"
    path.write_text(text)
    assert launcher(["validate", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("key, value, pattern", [
    ("plot.vmin", ".nan", "plot.vmin: expected a finite number, got nan"),
    ("plot.vmax", ".inf", "plot.vmax: expected a finite number, got inf"),
    ("compute.checkpoint_seconds", ".nan", "compute.checkpoint_seconds: expected a finite number"),
    ("plot.vlevel", "1.0e+999", "plot.vlevel: expected a finite number, got inf"),
    ("hessian.tolerance", ".nan", "hessian.tolerance: expected a finite number"),
    ("directions.seed", "18446744073709551616", "directions.seed: 18446744073709551616 is out of range"),
    ("data.subset_seed", "-9223372036854775809", "data.subset_seed: -9223372036854775809 is out of range"),
])
def test_numbers_must_be_finite_and_fit(tmp_path, linear_spec, capsys, key, value, pattern) -> None:
    section, name = key.split(".")
    if section == "hessian":
        linear_spec["metrics"] = ["loss", "hessian"]
    linear_spec.setdefault(section, {})[name] = "@@"
    _refused(tmp_path, _text(linear_spec).replace("'@@'", value), capsys, pattern)


@pytest.mark.parametrize("storage, pattern", [
    ("/proc/self", "storage: '/proc/self' is under /proc"),
    ("/dev/null", "storage: '/dev/null' is under /dev"),
    ("/etc/passwd", "storage: '/etc/passwd' is a file, not a folder"),
    ("s3://b/../../x", "'..' is not allowed in an S3 prefix"),
])
def test_storage_that_is_no_folder(tmp_path, linear_spec, capsys, storage, pattern) -> None:
    linear_spec["storage"] = storage
    _refused(tmp_path, _text(linear_spec), capsys, pattern)


def test_kubernetes_mistakes_are_refused_by_submit_local_too(tmp_path, linear_spec, capsys) -> None:
    linear_spec["kubernetes"] = {"gpus": "one"}
    _refused(tmp_path, _text(linear_spec), capsys, "kubernetes.gpus: expected an integer")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_the_run_folder(tmp_path, linear_spec, capsys) -> None:
    linear_spec["compute"]["device"] = "cuda"
    _refused(tmp_path, _text(linear_spec), capsys, "compute.device: cuda, but torch finds no CUDA device")
    path = tmp_path / "surface.yaml"
    assert launcher(["validate", str(path), "--quick"]) == 0  # a cluster spec is checked without it


@pytest.mark.slow
def test_huge_values_are_not_echoed(tmp_path, linear_spec, capsys) -> None:
    linear_spec["name"] = "x" * 100_000
    _refused(tmp_path, _text(linear_spec), capsys, "name: expected 1-40 lowercase letters")
    linear_spec["name"] = ["lol"] * 2_000
    _refused(tmp_path, _text(linear_spec), capsys, "name: expected a string, got a list ['lol'")
    linear_spec["name"] = "@@"
    _refused(tmp_path, _text(linear_spec).replace("'@@'", "[" + "1," * 50_000 + "1]"), capsys,
             "more than 5,000 values")
    linear_spec["name"] = "linear"
    linear_spec["compute"]["x" * 100_000] = 1
    _refused(tmp_path, _text(linear_spec), capsys, "compute.xxxx")


def test_a_spec_file_over_256_kib_is_refused_unread(tmp_path, linear_spec, capsys) -> None:
    _refused(tmp_path, _text(linear_spec) + "#" * (2 << 20) + "\n", capsys, "bytes is more than the 262,144")
