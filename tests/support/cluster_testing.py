"""The fake cluster and S3 bucket of the cluster tests: fixtures (``aws_env``, ``bucket``, ``fake``) and
helpers (a spec for the cluster, the bucket's keys, a command's one error line, a surface's arrays).

A test module imports the fixtures it uses by name (pytest then finds them in its namespace).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
from fake_k8s import FakeCluster
from storage_testing import s3_client

from landscape_job.storage import STORAGE_OPTIONS_ENV

SECRET_VALUE = "fake-secret-value-0xC0FFEE"
ARRAYS = ("xcoordinates", "ycoordinates", "train_loss", "train_acc", "test_loss", "test_acc")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials in the environment only (never in a spec); nothing beyond 127.0.0.1."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") \
                or name in (STORAGE_OPTIONS_ENV, "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    for name, value in {"AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                        "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost",
                        "AWS_ACCESS_KEY_ID": "fake-access-key", "AWS_SECRET_ACCESS_KEY": SECRET_VALUE,
                        "AWS_DEFAULT_REGION": "us-east-1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto_endpoint: str, aws_env: None) -> str:
    name = f"b-{uuid.uuid4().hex[:16]}"
    s3_client(moto_endpoint).create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])]


def cluster_spec(linear_spec: dict, bucket: str, endpoint: str, shards: int = 2, **k8s) -> dict:
    spec = dict(linear_spec)
    spec["compute"] = {**spec["compute"], "shards": shards}
    spec["storage"] = {"url": f"s3://{bucket}/runs", "endpoint_url": endpoint, "addressing_style": "path"}
    spec["kubernetes"] = {"gpus": 0, "s3_secret": "landscape-s3", **k8s}
    return spec


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None, request: pytest.FixtureRequest):
    """A fake cluster (options by indirect parametrisation), and $KUBECONFIG pointing at it."""
    with FakeCluster(tmp_path / "cluster", **getattr(request, "param", {})) as cluster:
        cluster.secret_from_environ("landscape-s3")
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        yield cluster


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("inputs ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def surface_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {name: handle[name][()] for name in ARRAYS}
