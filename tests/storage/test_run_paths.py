"""Issue 13, point 3: run ids and storage keys checked in one place; ``pull`` whole or nothing, inside its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_all, spec_from, write_spec
from landscape_job.base.errors import UserError
from landscape_job.storage.location import InvalidKey, check_key, check_run_id
from landscape_job.storage import open_storage, run_storage
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from s3server import FaultPlan, FlakyProxy, put_directly
from storage_testing import aws_env, bucket, s3_options  # noqa: F401 - fixtures
from test_storage_faults import HARD_FAULTS, short_clock  # noqa: F401 - fixtures


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("run_id", ["../X", "..", "a/b", "/abs", ".hidden", "x\n", "", "a" * 129, "r\\..\\x"])
def test_submit_local_refuses_a_run_id_outside_the_storage(run_id: str, tmp_path: Path, linear_spec: dict,
                                                           capsys: pytest.CaptureFixture) -> None:
    """``submit --local --run-id ../X`` wrote the whole run beside the storage folder."""
    work = tmp_path / "work"
    work.mkdir()
    linear_spec["storage"] = str(work / "runs")
    spec = write_spec(tmp_path, linear_spec)
    before = _files(tmp_path)
    assert launcher(["submit", str(spec), "--local", "--run-id", run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--run-id" in err and "Traceback" not in err
    assert _files(tmp_path) == before  # nothing written, inside or outside the storage


def test_run_ids_and_keys_are_checked_in_one_place(tmp_path: Path) -> None:
    for good in ("r1", "digits-cnn-20261130-000000", "A.b_c-1"):
        assert check_run_id(good) == good
    for bad in ("../x", "x/y", ".", "..", "-x", "x y", ""):
        with pytest.raises(InvalidKey):
            check_run_id(bad)
        with pytest.raises(UserError):  # every way a run id reaches storage
            run_storage(str(tmp_path / "runs"), bad)
    for good in ("spec.yaml", "shards/shard-0-of-2.h5", "plots/a..b.png"):
        assert check_key(good) == good
    for bad in ("../x", "a/../../b", "/abs", "a//b", "./a", "a/.", "a\\b", "a\x00b", "", "k" * 1025):
        with pytest.raises(InvalidKey) as info:
            check_key(bad)
        assert "\n" not in str(info.value) and len(str(info.value)) < 300
        with pytest.raises(ValueError):  # still a ValueError for those who caught that
            open_storage(str(tmp_path / "store")).put(bad, b"x")
    assert not (tmp_path / "store").exists() or _files(tmp_path / "store") == []


def _merged_run(tmp_path: Path, linear_spec: dict, endpoint: str, bucket: str) -> str:
    """A run merged straight to S3 (no proxy); its base URL."""
    linear_spec["grid"] = {"x": "-1:1:3"}
    linear_spec["storage"] = {"url": f"s3://{bucket}/runs", **s3_options(endpoint)}
    run_all(open_run(spec_from(tmp_path, linear_spec), "r1"), 1)
    return f"s3://{bucket}/runs"


def test_pull_refuses_a_key_that_leaves_the_run(tmp_path: Path, linear_spec: dict, moto_endpoint: str, bucket: str,
                                                capsys: pytest.CaptureFixture) -> None:
    """A stored key with ``../`` stopped ``pull`` with a traceback, after a partial download."""
    base = _merged_run(tmp_path, linear_spec, moto_endpoint, bucket)
    put_directly(bucket, ["runs/r1/plots/../../../escaped.txt"], b"gotcha")
    out = tmp_path / "out"
    code = launcher(["pull", "r1", str(out / "r1"), "--storage", base, "--spec", str(tmp_path / "surface.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "plots/../../../escaped.txt" in err and "Traceback" not in err
    assert _files(tmp_path / "out") == [] and not list(tmp_path.rglob("escaped.txt"))


def test_pull_is_whole_or_nothing(tmp_path: Path, linear_spec: dict, moto_endpoint: str, bucket: str,
                                  short_clock: None, capsys: pytest.CaptureFixture) -> None:
    base = _merged_run(tmp_path, linear_spec, moto_endpoint, bucket)
    expected = sorted(run_storage(base, "r1", s3_options(moto_endpoint)).list())
    out = tmp_path / "out"
    plan = FaultPlan(seed=3, rate=0.0, kinds=HARD_FAULTS)
    with FlakyProxy(moto_endpoint, plan, timeout=1.0) as proxy:
        spec = write_spec(tmp_path, {**linear_spec, "storage": {"url": base, **s3_options(proxy.url)}}, "proxied.yaml")
        gets = 0

        def failing_after_two_gets(method, path, headers):  # the list and two objects arrive, then nothing
            nonlocal gets
            if method == "GET" and "list-type" not in path:
                gets += 1
                if gets > 2:
                    return plan.kinds[gets % len(plan.kinds)]
            return "ok"

        proxy.decide = failing_after_two_gets
        code = launcher(["pull", "r1", str(out / "r1"), "--spec", str(spec), "--storage", base])
        err = capsys.readouterr().err.strip()
        assert code == 1, err
        assert err.count("\n") == 0 and "still failing" in err and "Traceback" not in err
        assert _files(out) == []  # no partial file, no staging folder

        proxy.decide = plan  # healthy again: the same command pulls everything
        (out / "r1" / "plots").mkdir(parents=True)
        (out / "r1" / "keep.txt").write_text("mine")
        assert launcher(["pull", "r1", str(out / "r1"), "--spec", str(spec), "--storage", base]) == 0
    pulled = _files(out / "r1")
    assert "keep.txt" in pulled and "surface.h5" in pulled and "spec.yaml" in pulled
    assert {k for k in expected if k.startswith("plots/")} <= set(pulled)
    assert [p for p in os.listdir(out) if p.startswith(".")] == []
