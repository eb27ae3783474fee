"""S3 on moto for the storage tests and any test that needs a bucket: the ``aws_env`` and ``bucket``
fixtures (dummy credentials; no client may look beyond 127.0.0.1), a new bucket, a spec's S3 options.

A test module imports the fixtures it uses by name (pytest then finds them in its namespace).
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

import boto3
import h5py
import numpy as np
import pytest
from s3server import closed_port

from landscape_job.storage import STORAGE_OPTIONS_ENV


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials in the environment (subprocesses inherit them), nothing else of AWS.

    The instance metadata service is off so that no test ever looks beyond 127.0.0.1.
    """
    for name in list(os.environ):
        if name.startswith("AWS_") or name.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") \
                or name == STORAGE_OPTIONS_ENV:
            monkeypatch.delenv(name)
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # a client that misses its endpoint option must not go looking for AWS: it finds a closed port
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")


@functools.lru_cache(maxsize=None)
def s3_client(endpoint: str):
    """The tests' own client of the store at ``endpoint`` (moto takes any credentials), one a process:
    each new one parses S3's service model again, 0.1-0.2 s of CPU, and the suite made a few hundred."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    name = f"b-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(moto_endpoint: str, aws_env: None) -> str:
    return new_bucket(moto_endpoint)


def s3_options(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "addressing_style": "path"}


def surface_datasets(data: bytes) -> dict[str, np.ndarray]:
    """Every dataset of a surface file's bytes, by name (the bit-for-bit comparisons of runs)."""
    from landscape_job.storage import open_h5

    arrays: dict[str, np.ndarray] = {}
    with open_h5(data) as handle:
        handle.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays
