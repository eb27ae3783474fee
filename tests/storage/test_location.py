"""StorageLocation: every form a storage location is written in, read by one parser.

The strings are those the four earlier parsers (the spec's, ``open_storage``'s, the S3
backend's and ``launcher status/pull``'s) accepted or refused, with the same messages.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from landscape_job.base.errors import UserError
from landscape_job.storage.location import (RUN_ENV, STORAGE_OPTIONS_ENV, StorageLocation, StorageOptions, local_path,
                                    register_backend, split_s3_url)

S3_OPTIONS = {"endpoint_url": "http://minio:9000", "addressing_style": "path"}


# -- accepted -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, url", [
    ("runs", "file:///base/runs"),
    ("", "file:///base"),
    ("./a/../runs/", "file:///base/runs"),
    ("/abs/x/", "file:///abs/x"),
    ("file:///abs/x/", "file:///abs/x"),
    ("file://rel/y", "file:///base/rel/y"),
    ("s3://bucket/runs/", "s3://bucket/runs"),
    ("s3://bucket", "s3://bucket"),
])
def test_a_url_or_folder_is_normalised(raw: str, url: str) -> None:
    location = StorageLocation.from_spec(raw, Path("/base"))
    assert location == StorageLocation(url)
    assert location.to_spec() == url


def test_a_home_folder_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert StorageLocation.parse("~/runs").url == f"file://{tmp_path.resolve()}/runs"


def test_no_storage_means_runs_in_the_current_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert StorageLocation.from_spec(None, Path("/base")).url == f"file://{Path.cwd()}/runs"


def test_the_mapping_form_keeps_its_options_in_the_specs_order() -> None:
    raw = {"url": "s3://bucket/runs", "addressing_style": "path", "region": "eu-west-1",
           "endpoint_url": "http://minio:9000", "request_checksum": "when_required"}
    location = StorageLocation.from_spec(raw, Path("/base"))
    assert location.options == StorageOptions(endpoint_url="http://minio:9000", region="eu-west-1",
                                              addressing_style="path", request_checksum="when_required")
    spec_value = location.to_spec()
    assert list(spec_value) == ["url", "endpoint_url", "region", "addressing_style", "request_checksum"]
    assert StorageLocation.from_spec(spec_value, Path("/")) == location  # spec.yaml reads back the same


def test_empty_options_are_unset() -> None:
    assert StorageLocation.from_spec({"url": "runs", "region": ""}, Path("/base")).to_spec() == "file:///base/runs"
    assert not StorageLocation.parse("s3://b/p", {"region": None}).options


def test_an_override_replaces_the_url_keeps_the_options_and_is_taken_against_the_current_folder(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    spec_value = {"url": "s3://bucket/runs", **S3_OPTIONS}
    assert StorageLocation.from_spec(spec_value, Path("/base"), "s3://other/x/") == StorageLocation(
        "s3://other/x", StorageOptions(**S3_OPTIONS))
    assert StorageLocation.from_spec("runs", Path("/base"), "out").url == f"file://{Path.cwd()}/out"
    with pytest.raises(UserError, match=r"^storage.endpoint_url: only for s3:// storage$"):
        StorageLocation.from_spec(spec_value, Path("/base"), "out")


def test_join_and_the_stages_environment_round_trip() -> None:
    base = StorageLocation.parse("s3://bucket/runs/", S3_OPTIONS)
    run = base.join("r1")
    assert run == StorageLocation("s3://bucket/runs/r1", base.options)
    env = run.env()
    assert env == {RUN_ENV: "s3://bucket/runs/r1",
                   STORAGE_OPTIONS_ENV: '{"addressing_style": "path", "endpoint_url": "http://minio:9000"}'}
    assert StorageLocation.from_env(environ=env) == run
    assert StorageLocation.from_env("file:///x/r", {STORAGE_OPTIONS_ENV: "{}"}) == StorageLocation("file:///x/r")
    assert StorageLocation.parse("file:///x/").join("r").url == "file:///x/r"


def test_moved_to_keeps_s3_options_for_s3_only() -> None:
    base = StorageLocation.parse("s3://bucket/runs", S3_OPTIONS)
    assert base.moved_to("s3://other/runs").options == base.options
    assert base.moved_to("/elsewhere") == StorageLocation("file:///elsewhere")


def test_local_path_takes_off_file_scheme_only() -> None:
    assert local_path("file:///a/b") == "/a/b"
    assert local_path("a/b") == "a/b"
    assert local_path("s3://b/k") == "s3://b/k"
    assert split_s3_url("s3://bucket//deep/prefix/") == ("bucket", "deep/prefix")
    assert split_s3_url("s3://bucket/Xdata/runsX/") == ("bucket", "Xdata/runsX")  # only slashes are trimmed


# -- refused, one line each -----------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    ("gs://bucket/x", "storage: expected a folder, file:///path or s3://bucket/prefix; got 'gs://bucket/x'"),
    ("S3://bucket/x", "storage: expected a folder, file:///path or s3://bucket/prefix; got 'S3://bucket/x'"),
    ("s3://", "storage: expected s3://bucket/prefix, got 's3://'"),
    ("s3:///x", "storage: expected s3://bucket/prefix, got 's3:///x'"),
    ("s3:/x", "storage: expected s3://bucket/prefix, got 's3:/x'"),
    ("s3://bad bucket/x", "storage: 's3://bad bucket/x' does not start with a valid bucket name; "
                          "expected s3://bucket/prefix"),
    ("s3://b/../x", "storage: 's3://b/../x': '..' is not allowed in an S3 prefix"),
    (5, "storage: expected a string, got an integer 5"),
    (True, "storage: expected a string, got a boolean"),
    ({"endpoint_url": "http://h"}, "storage.url: required key is missing"),
    ({"url": 5}, "storage.url: expected a string, got an integer 5"),
    ({"url": "s3://b/p", "region": True}, "storage.region: expected a string, got a boolean"),
    ({"url": "s3://b/p", "endpoint": "http://h"}, "storage.endpoint: unknown key; did you mean 'endpoint_url'?"),
    ({"url": "s3://b/p", "qqqq": "1"}, "storage.qqqq: unknown key; expected one of addressing_style, endpoint_url, "
                                       "region, request_checksum, url"),
    ({"url": "s3://b/p", "aws_session_token": "x"}, "storage.aws_session_token: credentials never go in the spec; "
                                                    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment "
                                                    "or name a Kubernetes Secret"),
    ({"url": "runs", "region": "x"}, "storage.region: only for s3:// storage"),
    ({"url": "s3://b/p", "addressing_style": "sideways"},
     "storage.addressing_style: expected one of auto, path, virtual; got 'sideways'"),
    ({"url": "s3://b/p", "endpoint_url": "minio:9000"},
     "storage.endpoint_url: expected http(s)://host[:port], got 'minio:9000'"),
    ({"url": "s3://b/p", "request_checksum": "always"},
     "storage.request_checksum: expected when_supported or when_required; got 'always'"),
])
def test_a_mistake_in_the_specs_storage_is_one_line(raw: object, message: str) -> None:
    with pytest.raises(UserError) as caught:
        StorageLocation.from_spec(raw, Path("/base"))
    assert str(caught.value) == message


def test_options_from_elsewhere_are_checked_by_name() -> None:
    with pytest.raises(UserError, match=r"^storage.endpoint: unknown S3 option for s3://b/p; expected one of "
                                        r"endpoint_url, region, addressing_style, request_checksum$"):
        StorageLocation.parse("s3://b/p", {"endpoint": "http://h"})
    with pytest.raises(UserError, match=r"^storage.foo: only for s3:// storage$"):
        StorageLocation.parse("/x", {"foo": "1"})
    with pytest.raises(TypeError):
        StorageLocation.of(StorageLocation("file:///x"), {"region": "r"})


def test_a_stage_without_a_run_or_with_broken_options_is_told_so() -> None:
    with pytest.raises(UserError, match=r"^--run: give the run's storage prefix or set LANDSCAPE_RUN$"):
        StorageLocation.from_env(None, {})
    with pytest.raises(UserError, match=STORAGE_OPTIONS_ENV):
        StorageLocation.from_env("s3://b/r", {STORAGE_OPTIONS_ENV: '{"endpoint_url": '})


def test_only_a_url_scheme_can_be_registered() -> None:
    with pytest.raises(ValueError):
        register_backend("Not A Scheme", "x:Y")


def test_a_file_run_never_imports_boto3(tmp_path: Path) -> None:
    """The registry imports a backend's module only when a location of its scheme is opened."""
    code = ("import sys\nfrom landscape_job import cli, spec, inputs\nfrom landscape_job.storage import run_storage\n"
            f"run_storage({str(tmp_path)!r}, 'r').put('k', b'v')\n"
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_unset_option_is_no_option_for_a_folder(tmp_path: Path) -> None:
    """An option left empty (None, or "" as from an empty environment variable) is no option:
    a folder refuses only the options that are set."""
    for unset in (None, ""):
        assert StorageLocation.parse(str(tmp_path), {"region": unset}) == StorageLocation(f"file://{tmp_path}")


def test_a_file_named_as_storage_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(UserError) as caught:
        StorageLocation.parse("plain")
    assert str(caught.value) == "storage: 'plain' is a file, not a folder; name a folder for the runs"


def test_the_scheme_is_what_comes_before_the_first_separator(tmp_path: Path) -> None:
    """``file:///data/odd://name`` is a folder (POSIX allows ``odd:``), not a scheme ``file:///data/odd``."""
    assert StorageLocation.parse(f"file://{tmp_path}/odd://name").url == f"file://{tmp_path}/odd:/name"
