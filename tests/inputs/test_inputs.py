"""Inputs from anywhere: checkpoints and data sets from S3 (moto's server on 127.0.0.1) and
loopback HTTP, custom data sets and losses from the user's code.

Every "same surface" test computes the reference through the built-in path on local
files and compares the merged surfaces number by number.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import io
import json
import os
import pickle
import tarfile
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from conftest import SYNTHETIC, run_all, save_cnn_checkpoint, save_linear_checkpoint, spec_from, write_spec
from landscape_job import stages
from landscape_job.base import pyref
from landscape_job.base.cache import CACHE_ENV
from landscape_job.datasets.builtin import load_split
from landscape_job.base.errors import UserError
from landscape_job.inputs.fetch import Fetcher
from landscape_job.spec.localize import localize
from landscape_job.checks.preflight import check_inputs
from landscape_job.spec.sections import DataSpec
from landscape_job.spec.parse import parse_spec
from landscape_job.storage import open_h5
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from storage_testing import s3_client

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path) -> dict[str, Any]:
    """A fresh bucket, dummy credentials, and boto3 pointed at moto only (path-style, no metadata service)."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name == "LANDSCAPE_STORAGE_OPTIONS":
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client = s3_client(moto_endpoint)
    bucket = f"in-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return {"client": client, "bucket": bucket, "endpoint": moto_endpoint}


def _put(s3: dict[str, Any], key: str, data: bytes) -> str:
    s3["client"].put_object(Bucket=s3["bucket"], Key=key, Body=data)
    return f"s3://{s3['bucket']}/{key}"


def _fake_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> None:
    """The layout of the official cifar-10-python archive, tiny: pickled dicts of uint8 rows."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol=2))


def _tar_gz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    return buffer.getvalue()


def _surface(run) -> dict[str, np.ndarray]:
    with open_h5(run.get("surface.h5")) as handle:
        return {k: np.asarray(handle[k]) for k in (*METRICS, "xcoordinates", "ycoordinates") if k in handle}


def _run(folder: Path, raw: dict[str, Any], shards: int = 1) -> dict[str, np.ndarray]:
    spec = spec_from(folder, raw)
    run = open_run(spec, f"r-{uuid.uuid4().hex[:8]}")
    run_all(run, shards)
    return _surface(run)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rtol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=0, err_msg=key)


def _cifar_spec(checkpoint: Any, root: Any, storage: Any) -> dict[str, Any]:
    return {"name": "cifar", "model": {"arch": "cnn", "checkpoint": checkpoint, "kwargs": {"channels": [4, 6]}},
            "data": {"dataset": "cifar10", "root": root},
            "directions": {"type": "random", "seed": 1},
            "grid": {"x": "-1:1:3", "y": "-1:1:3"},
            "compute": {"shards": 2, "precision": "fp64", "batch_size": 8}, "storage": storage}


# -- S3 inputs ------------------------------------------------------------------------------

@pytest.mark.slow
def test_checkpoint_and_cifar_archive_in_s3_give_the_local_surface(tmp_path: Path, s3: dict[str, Any],
                                                                    cache: Path) -> None:
    local = tmp_path / "local"
    _fake_cifar10(local / "cifar")
    checkpoint = save_cnn_checkpoint(local / "model.pt", seed=5, input_shape=(3, 32, 32), classes=10)
    expected = _run(local, _cifar_spec("model.pt", "cifar", "runs"), shards=2)

    ckpt_url = _put(s3, "inputs/model.pt", checkpoint.read_bytes())
    data_url = _put(s3, "datasets/cifar-10-python.tar.gz", _tar_gz(local / "cifar"))
    remote = tmp_path / "remote"
    remote.mkdir()
    storage = {"url": f"s3://{s3['bucket']}/runs", "endpoint_url": s3["endpoint"], "addressing_style": "path"}
    spec = spec_from(remote, _cifar_spec(ckpt_url, data_url, storage))
    assert spec.model.checkpoint == ckpt_url and spec.data.root == data_url  # the spec keeps the URLs
    run = open_run(spec, "from-s3")
    run_all(run, 2)
    _same(_surface(run), expected)
    manifest = json.loads(run.get("manifest.json"))
    assert manifest["checkpoints"] == {ckpt_url: hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    # fetched once into the cache: the archive extracted there, the checkpoint beside its meta
    assert len(list((cache / "extracted").glob("*/cifar-10-batches-py/test_batch"))) == 1
    assert len(list((cache / "files").glob("*/model.pt"))) == 1


def test_an_s3_prefix_is_a_data_root_too(tmp_path: Path, s3: dict[str, Any]) -> None:
    _fake_cifar10(tmp_path / "cifar", per_batch=3, seed=4)
    for path in sorted((tmp_path / "cifar").rglob("*")):
        if path.is_file():
            _put(s3, f"ds/c10/{path.relative_to(tmp_path / 'cifar').as_posix()}", path.read_bytes())
    mirrored = Fetcher().folder(f"s3://{s3['bucket']}/ds/c10", "data.root")
    for split in ("train", "test"):
        a = load_split(DataSpec(dataset="cifar10", root=str(tmp_path / "cifar")), split)
        b = load_split(DataSpec(dataset="cifar10", root=mirrored), split)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)


def test_unpinned_s3_objects_are_refetched_when_replaced_and_pinned_ones_come_from_the_cache(
        s3: dict[str, Any], cache: Path) -> None:
    url = _put(s3, "blob.bin", b"first")
    fetcher = Fetcher()
    assert Path(fetcher.file(url, "model.checkpoint")).read_bytes() == b"first"
    _put(s3, "blob.bin", b"second version")
    assert Path(fetcher.file(url, "model.checkpoint")).read_bytes() == b"second version"

    pin = hashlib.sha256(b"second version").hexdigest()
    assert Path(fetcher.file(url, "model.checkpoint", pin)).read_bytes() == b"second version"
    s3["client"].delete_object(Bucket=s3["bucket"], Key="blob.bin")
    # Gone from the bucket, but the pinned copy is content-addressed: no request needed.
    assert Path(Fetcher().file(url, "model.checkpoint", pin)).read_bytes() == b"second version"
    with pytest.raises(UserError, match=rf"model.checkpoint: {url} does not exist"):
        Fetcher(cache=cache / "other").file(url, "model.checkpoint")


# -- one-line errors before evaluation -------------------------------------------------------

USER_CODE = '''
import torch
from torch import nn
from torch.utils.data import Dataset
from landscape_job.datasets.builtin import load_split
from landscape_job.spec.sections import DataSpec

SYNTHETIC = {synthetic!r}


class Pairs(Dataset):
    """A plain map-style Dataset (not a TensorDataset): exercises the item-by-item path."""

    def __init__(self, split):
        s = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), split)
        self.inputs, self.labels = s.inputs, s.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.inputs[i], int(self.labels[i])


def synthetic(split):
    return Pairs(split)


def synthetic_pair():
    return Pairs("train"), Pairs("test")


def broken(path="/nowhere"):
    raise FileNotFoundError(f"no data at {{path}}")


def linear3():
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))


def ce_per_sample(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def ce_mean(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels)
'''


def _user_code(folder: Path) -> Path:
    code = folder / "code"
    code.mkdir(exist_ok=True)
    module = f"usercode_{uuid.uuid4().hex[:8]}"  # a fresh module name per test: no import cache between tests
    (code / f"{module}.py").write_text(USER_CODE.format(synthetic=SYNTHETIC))
    return code / module


def _launch_one_line(capsys: pytest.CaptureFixture, spec_path: Path) -> str:
    code = launcher(["submit", str(spec_path), "--local"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, out, err)
    return lines[0]


def _save_linear3(path: Path) -> None:
    torch.manual_seed(0)
    from torch import nn

    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).state_dict(), path)


@pytest.mark.slow
def test_bad_inputs_are_one_line_naming_the_input_and_nothing_is_written(
        tmp_path: Path, s3: dict[str, Any], linear_spec: dict, capsys: pytest.CaptureFixture) -> None:
    ckpt_url = _put(s3, "in/a.pt", (tmp_path / "a.pt").read_bytes())
    module = _user_code(tmp_path)

    wrong_hash = copy.deepcopy(linear_spec)
    wrong_hash["model"]["checkpoint"] = {"url": ckpt_url, "sha256": "0" * 64}
    missing = copy.deepcopy(linear_spec)
    missing["model"]["checkpoint"] = f"s3://{s3['bucket']}/in/nothing-here.pt"
    # labels 0..4 (5 classes) for a model with 3 outputs
    labels = copy.deepcopy(linear_spec)
    (tmp_path / "t5").mkdir()
    torch.save({"inputs": torch.randn(10, 6), "labels": torch.arange(10) % 5}, tmp_path / "t5" / "train.pt")
    _save_linear3(tmp_path / "linear3.pt")
    labels.update(model={"arch": f"python:{module.name}:linear3", "checkpoint": "linear3.pt"},
                  data={"dataset": "tensors", "root": "t5", "splits": ["train"]}, python={"path": [str(module.parent)]})
    raising = copy.deepcopy(linear_spec)
    raising.update(data={"dataset": f"python:{module.name}:broken", "options": {"path": "/data/x"}},
                   python={"path": [str(module.parent)]})

    cases = [(wrong_hash, rf"model.checkpoint: {ckpt_url} does not match its sha256 pin"),
             (missing, rf"model.checkpoint: s3://{s3['bucket']}/in/nothing-here.pt does not exist"),
             (labels, r"data.dataset: tensors has 5 classes but model.arch python:\S+:linear3 outputs shape \(3,\)"),
             (raising, rf"data.dataset: python:{module.name}:broken raised FileNotFoundError: no data at /data/x")]
    for i, (raw, message) in enumerate(cases):
        line = _launch_one_line(capsys, write_spec(tmp_path, raw, f"case{i}.yaml"))
        assert line.startswith("launcher: error: ")
        assert __import__("re").search(message, line), line
        assert not (tmp_path / "runs").exists()  # no run was created


def test_a_pod_refuses_a_changed_input_before_evaluating(tmp_path: Path, s3: dict[str, Any], linear_spec: dict) -> None:
    """The stages check the pins too: an object replaced after submit fails prepare, writes nothing."""
    blob = (tmp_path / "a.pt").read_bytes()
    url = _put(s3, "in/a.pt", blob)
    raw = copy.deepcopy(linear_spec)
    raw["model"]["checkpoint"] = {"url": url, "sha256": hashlib.sha256(blob).hexdigest()}
    run = open_run(spec_from(tmp_path, raw), "pinned")
    _put(s3, "in/a.pt", (tmp_path / "b.pt").read_bytes())
    with pytest.raises(UserError, match=r"^model.checkpoint: s3://\S+ does not match its sha256 pin"):
        stages.prepare(run, log=lambda _m: None)
    assert run.list() == ["spec.yaml"]


# -- custom data sets and losses --------------------------------------------------------------

@pytest.mark.slow
def test_tensors_python_datasets_and_python_losses_give_the_builtin_surface(
        tmp_path: Path, linear_spec: dict, cache: Path) -> None:
    expected = _run(tmp_path, linear_spec)

    folder = tmp_path / "tensors"
    folder.mkdir()
    train = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), "train")
    test = load_split(DataSpec(dataset="synthetic", options=SYNTHETIC), "test")
    torch.save({"inputs": train.inputs, "labels": train.labels}, folder / "train.pt")
    np.savez(folder / "test.npz", inputs=test.inputs.numpy(), labels=test.labels.numpy())
    tensors = copy.deepcopy(linear_spec)
    tensors["data"] = {"dataset": "tensors", "root": "tensors"}
    _same(_run(tmp_path, tensors), expected)

    module = _user_code(tmp_path)
    for factory in ("synthetic", "synthetic_pair"):
        custom = copy.deepcopy(linear_spec)
        custom["data"] = {"dataset": f"python:{module.name}:{factory}"}
        custom["python"] = {"path": ["code"]}
        _same(_run(tmp_path, custom), expected)

    for loss in ("ce_per_sample", "ce_mean"):
        custom = copy.deepcopy(linear_spec)
        custom["loss"] = f"python:{module.name}:{loss}"
        custom["python"] = {"path": ["code"]}
        _same(_run(tmp_path, custom), expected, rtol=1e-12)
        custom["compute"]["points_per_forward"] = 4  # K stacked points go through the user's loss too
        _same(_run(tmp_path, custom), expected, rtol=1e-12)


def test_user_code_is_found_only_through_the_spec(tmp_path: Path, linear_spec: dict) -> None:
    module = _user_code(tmp_path)
    raw = copy.deepcopy(linear_spec)
    raw["data"] = {"dataset": f"python:{module.name}:synthetic"}
    with pytest.raises(UserError, match=rf"^data.dataset: cannot import '{module.name}'.*python.path"):
        check_inputs(spec_from(tmp_path, raw))


# -- the web, pinned ------------------------------------------------------------------------

@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server over a folder; records the paths it was asked for."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, requests
    server.shutdown()
    server.server_close()


def test_web_inputs_need_a_pin_and_are_fetched_once(tmp_path: Path, linear_spec: dict, cache: Path,
                                                     web: tuple[str, Path, list[str]]) -> None:
    base, root, requests = web
    blob = (tmp_path / "a.pt").read_bytes()
    (root / "a.pt").write_bytes(blob)
    raw = copy.deepcopy(linear_spec)
    raw["model"]["checkpoint"] = f"{base}/a.pt"
    with pytest.raises(UserError, match=r"^model.checkpoint: an https:// input needs a pin"):
        spec_from(tmp_path, raw)
    raw["model"]["checkpoint"] = {"url": "http://example.com/a.pt", "sha256": "0" * 64}
    with pytest.raises(UserError, match=r"^model.checkpoint: plain http:// is only accepted on loopback"):
        spec_from(tmp_path, raw)

    pin = hashlib.sha256(blob).hexdigest()
    raw["model"]["checkpoint"] = {"url": f"{base}/a.pt", "sha256": pin}
    spec = spec_from(tmp_path, raw)
    local = localize(spec)
    assert Path(local.model.checkpoint).read_bytes() == blob and str(cache) in local.model.checkpoint
    localize(spec)
    assert requests == ["/a.pt"]  # the second stage found it in the cache

    raw["model"]["checkpoint"] = {"url": f"{base}/a.pt", "sha256": hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(UserError, match=r"does not match its sha256 pin"):
        localize(spec_from(tmp_path, raw))
    assert not list((cache / "files").glob("*/a.pt.*"))  # no partial file left behind


def test_an_archive_that_escapes_its_folder_is_refused(tmp_path: Path, cache: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "evil.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match=r"^data.root: cannot extract evil.tar.gz"):
        Fetcher().folder(str(tmp_path / "evil.tar.gz"), "data.root")
    assert not (cache.parent / "escape.txt").exists() and not (cache / "escape.txt").exists()


# -- the spec -------------------------------------------------------------------------------

def test_pinned_inputs_and_user_code_round_trip_and_old_specs_are_unchanged(tmp_path: Path, linear_spec: dict) -> None:
    old = spec_from(tmp_path, linear_spec).to_dict()
    for key in ("classes", "download"):
        assert key not in old["data"]
    assert "python" not in old

    (tmp_path / "code").mkdir()
    raw = copy.deepcopy(linear_spec)
    raw["model"]["checkpoint"] = {"url": "s3://bucket/models/a.pt", "sha256": "AB" * 32}
    raw["data"] = {"dataset": "tensors", "root": {"url": "https://example.com/d.tar.gz", "sha256": "cd" * 32},
                   "classes": 3}
    raw["python"] = {"path": ["code"], "requirements": ["mypkg==1.0"]}
    raw["loss"] = "python:mypkg.losses:focal"
    spec = spec_from(tmp_path, raw)
    assert spec.pins == {"s3://bucket/models/a.pt": "ab" * 32, "https://example.com/d.tar.gz": "cd" * 32}
    again = parse_spec(spec.to_dict(), base_dir=Path("/"))
    assert again.to_dict() == spec.to_dict() and again.hash == spec.hash
    assert spec.to_dict()["python"] == {"path": [str(tmp_path / "code")], "requirements": ["mypkg==1.0"]}


def test_cache_dir_is_rendered_as_an_emptydir(tmp_path: Path, linear_spec: dict) -> None:
    import kubernetes_validate

    from launcher.kubernetes.section import parse_kubernetes
    from launcher.kubernetes.render import render_run

    raw = copy.deepcopy(linear_spec)
    raw["storage"] = "s3://bucket/runs"
    raw["kubernetes"] = {"cache_size": "20Gi"}
    spec = spec_from(tmp_path, raw)
    for job in (o for o in render_run(spec, "r1", parse_kubernetes(spec.kubernetes)) if o["kind"] == "Job"):
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "inputs-cache", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
        assert {"name": "inputs-cache", "mountPath": "/var/cache/landscape"} in container["volumeMounts"]
        assert {"name": CACHE_ENV, "value": "/var/cache/landscape"} in container["env"]
        kubernetes_validate.validate(job, "1.30", strict=True)
    with pytest.raises(UserError, match=r"kubernetes.volumes\[0\].mount_path"):
        parse_kubernetes({"volumes": [{"claim": "d", "mount_path": "/var/cache/landscape"}]})


def test_a_cache_claim_is_shared_by_every_pod(tmp_path: Path, linear_spec: dict) -> None:
    """kubernetes.cache_claim replaces every pod's emptyDir cache with one ReadWriteMany claim."""
    import kubernetes_validate

    from launcher.kubernetes.section import parse_kubernetes
    from launcher.kubernetes.render import render_run

    raw = copy.deepcopy(linear_spec)
    raw["storage"] = "s3://bucket/runs"
    raw["kubernetes"] = {"cache_claim": "landscape-cache"}
    spec = spec_from(tmp_path, raw)
    jobs = [o for o in render_run(spec, "r1", parse_kubernetes(spec.kubernetes)) if o["kind"] == "Job"]
    assert len(jobs) == 3
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["inputs-cache"] == {"name": "inputs-cache",
                                           "persistentVolumeClaim": {"claimName": "landscape-cache"}}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "inputs-cache")
        assert mount == {"name": "inputs-cache", "mountPath": "/var/cache/landscape"}  # writable
        kubernetes_validate.validate(job, "1.30", strict=True)
    with pytest.raises(UserError, match=r"^kubernetes.cache_size: .*remove one of the two$"):
        parse_kubernetes({"cache_claim": "landscape-cache", "cache_size": "20Gi"})
    with pytest.raises(UserError, match=r"^kubernetes.cache_claim: expected a DNS subdomain name"):
        parse_kubernetes({"cache_claim": "Not_A_Name"})


def test_imagefolder_reads_class_folders_normalised_by_the_options(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, name in enumerate(("cat", "dog", "emu")):
            (tmp_path / split / name).mkdir(parents=True)
            for k in range(2):
                image = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
                Image.fromarray(image).save(tmp_path / split / name / f"{k}.png")
                pixels[split].append((image, label))
    options = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    for split in ("train", "test"):
        got = load_split(DataSpec(dataset="imagefolder", root=str(tmp_path), options=options), split)
        want = torch.stack([(torch.from_numpy(p).permute(2, 0, 1).double() / 255 - torch.tensor(options["mean"]).view(3, 1, 1))
                            / torch.tensor(options["std"]).view(3, 1, 1) for p, _ in pixels[split]])
        assert got.num_classes == 3 and got.labels.tolist() == [label for _, label in pixels[split]]
        torch.testing.assert_close(got.inputs.double(), want, rtol=0, atol=1e-6)


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel, built by hand so the test needs no build backend and no index."""
    import base64
    import zipfile

    files = {f"{name}/__init__.py": "def scale(logits, labels):\n    import torch.nn.functional as F\n"
                                    "    return F.cross_entropy(logits, labels, reduction='none')\n",
             f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-1.0.dist-info/RECORD,,")
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as handle:
        for path, text in files.items():
            handle.writestr(path, text)
        handle.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.mark.slow
def test_python_requirements_are_installed_into_the_cache(tmp_path: Path, linear_spec: dict, cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"userloss_{uuid.uuid4().hex[:8]}"
    wheel = _wheel(tmp_path, name)
    # python.requirements takes requirement specifiers only (no paths, URLs or options: docs/security.md);
    # pip finds the local wheel through its own environment, as a mirror or wheelhouse would be configured.
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    raw = copy.deepcopy(linear_spec)
    raw["loss"] = f"python:{name}:scale"
    raw["python"] = {"requirements": [name]}
    spec = spec_from(tmp_path, raw)
    check_inputs(spec)  # imports the loss from the installed wheel and calls it once
    installed = list((cache / "pip").glob(f"*/{name}/__init__.py"))
    assert len(installed) == 1
    raw["python"] = {"requirements": [f"{name}-missing==1.0"]}
    with pytest.raises(UserError, match=r"^python.requirements: pip could not install"):
        localize(spec_from(tmp_path, raw))


def test_download_without_a_root_goes_into_the_cache(tmp_path: Path, linear_spec: dict, cache: Path) -> None:
    raw = copy.deepcopy(linear_spec)
    raw["data"] = {"dataset": "cifar10", "download": True}
    spec = spec_from(tmp_path, raw)
    assert spec.to_dict()["data"]["download"] is True
    assert localize(spec).data.root == str(cache / "downloads")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_examples_parse_render_and_the_custom_data_set_is_the_builtin_one() -> None:
    from landscape_job.spec.parse import load_spec
    from landscape_job.surface.centre import load_splits
    from launcher.kubernetes.section import parse_kubernetes
    from launcher.kubernetes.render import render_run

    s3_spec = load_spec(EXAMPLES / "cifar10-s3.yaml", check_files=False)
    assert s3_spec.model.checkpoint in s3_spec.pins and s3_spec.data.root.endswith("cifar-10-python.tar.gz")
    render_run(s3_spec, "r1", parse_kubernetes(s3_spec.kubernetes))

    custom = load_spec(EXAMPLES / "custom-data.yaml", check_files=False)
    pyref.activate(custom.python.path, ())  # what localize does first; the checkpoint is trained separately
    for split in load_splits(custom):
        builtin = load_split(DataSpec(dataset="digits"), split.name)
        assert torch.equal(split.labels, builtin.labels)
        torch.testing.assert_close(split.inputs, builtin.inputs, rtol=0, atol=1e-6)


def test_a_cluster_submit_heads_remote_inputs_before_anything_else(tmp_path: Path, s3: dict[str, Any],
                                                                   linear_spec: dict) -> None:
    from launcher.commands.submit import check_inputs_here

    raw = copy.deepcopy(linear_spec)
    raw["data"] = {"dataset": "tensors", "root": f"s3://{s3['bucket']}/empty-prefix"}
    with pytest.raises(UserError, match=rf"^data.root: no objects under s3://{s3['bucket']}/empty-prefix"):
        check_inputs_here(spec_from(tmp_path, raw))
    raw = copy.deepcopy(linear_spec)
    raw["directions"] = {"type": "interpolate", "targets": [f"s3://{s3['bucket']}/gone.pt"]}
    raw["grid"] = {"x": "0:1:3"}
    with pytest.raises(UserError, match=rf"^directions.targets\[0\]: s3://{s3['bucket']}/gone.pt does not exist"):
        check_inputs_here(spec_from(tmp_path, raw))


def test_a_shard_refuses_labels_that_do_not_fit_the_model_before_its_first_point(
        tmp_path: Path, linear_spec: dict, cache: Path) -> None:
    """The launcher's check may be skipped (cluster paths); the pod checks again, writes no point."""
    module = _user_code(tmp_path)
    (tmp_path / "t5").mkdir()
    torch.save({"inputs": torch.randn(10, 6), "labels": torch.arange(10) % 5}, tmp_path / "t5" / "train.pt")
    _save_linear3(tmp_path / "linear3.pt")
    raw = copy.deepcopy(linear_spec)
    raw.update(model={"arch": f"python:{module.name}:linear3", "checkpoint": "linear3.pt"},
               data={"dataset": "tensors", "root": "t5", "splits": ["train"]}, python={"path": ["code"]})
    run = open_run(spec_from(tmp_path, raw), "mismatch")
    stages.prepare(run, log=lambda _m: None)
    with pytest.raises(UserError, match=r"^data.dataset: tensors has 5 classes but model.arch"):
        stages.evaluate(run, 0, log=lambda _m: None)
    assert not [k for k in run.list() if k.startswith("shards/")]


@pytest.mark.parametrize("data,message", [
    ({"dataset": "digits", "download": True}, r"^data.download: only for cifar10, cifar100, mnist, fashion_mnist"),
    ({"dataset": "cifar10", "root": ".", "classes": 10}, r"^data.classes: cifar10 has a fixed number of classes"),
    ({"dataset": "tensors", "root": {"url": "s3://b/x.tar.gz", "sha256": 123}}, r"^data.root.sha256: YAML read"),
    ({"dataset": "tensors", "root": {"url": "s3://b/x.tar.gz", "sha256": "abc"}}, r"^data.root.sha256: expected 64"),
    ({"dataset": "tensors", "root": "ftp://host/x.tar.gz"}, r"^data.root: expected a path, file://, s3://"),
    ({"dataset": "python:not a ref"}, r"^data.dataset: 'python:not a ref' must look like python:package.module:f"),
])
def test_malformed_input_keys_are_one_line(tmp_path: Path, linear_spec: dict, data: dict, message: str) -> None:
    raw = copy.deepcopy(linear_spec)
    raw["data"] = data
    with pytest.raises(UserError, match=message):
        spec_from(tmp_path, raw)


def test_a_factory_may_return_tensors_or_a_mapping(tmp_path: Path) -> None:
    from landscape_job.datasets.custom import load_custom

    code = tmp_path / "factories"
    code.mkdir()
    name = f"fac_{uuid.uuid4().hex[:8]}"
    (code / f"{name}.py").write_text(
        "import torch\n"
        "def pair(n=4):\n    return torch.ones(n, 2), torch.tensor([0, 1, 2, 1][:n])\n"
        "def mapping():\n    return {'test': torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.tensor([1, 0, 1]))}\n")
    pyref.activate([str(code)], ())
    both = load_custom(f"python:{name}:pair", None, {"n": 4}, None)
    assert both.num_classes == 3 and set(both.splits) == {"train", "test"}
    assert torch.equal(both.splits["train"][1], torch.tensor([0, 1, 2, 1]))
    only_test = load_custom(f"python:{name}:mapping", None, {}, 4)
    assert list(only_test.splits) == ["test"] and only_test.num_classes == 4
    with pytest.raises(UserError, match=r"^data.splits: the python:\S+ data set has no train split"):
        load_split(DataSpec(dataset=f"python:{name}:mapping"), "train")


@pytest.mark.slow
def test_a_pca_trajectory_in_s3_gives_the_local_surface_and_path(tmp_path: Path, s3: dict[str, Any],
                                                                 linear_spec: dict) -> None:
    """Trajectory checkpoints are inputs like any other: fetched, pinned, and in the provenance."""
    paths = []
    for e, seed in ((1, 11), (2, 12), (10, 13)):
        paths.append(save_linear_checkpoint(tmp_path / f"epoch_{e}.pt", seed))
    linear_spec["directions"] = {"type": "pca", "trajectory": [str(p) for p in paths]}
    linear_spec["grid"] = {"x": "-2:2:5", "y": "-2:2:4"}
    linear_spec["compute"]["shards"] = 2
    expected = _run(tmp_path, linear_spec, shards=2)

    urls = [_put(s3, f"traj/{p.name}", p.read_bytes()) for p in paths]
    pinned = {"url": urls[0], "sha256": hashlib.sha256(paths[0].read_bytes()).hexdigest()}
    linear_spec["directions"]["trajectory"] = [pinned, *urls[1:]]
    spec = spec_from(tmp_path, linear_spec)
    assert spec.directions.trajectory == tuple(urls) and spec.pins[urls[0]] == pinned["sha256"]
    assert spec_from(tmp_path, spec.to_dict()).hash == spec.hash
    run = open_run(spec, "pca-from-s3")
    run_all(run, 2)
    got = _surface(run)
    _same(got, expected)
    manifest = json.loads(run.get("manifest.json"))
    for url, path in zip(urls, paths):
        assert manifest["checkpoints"][url] == hashlib.sha256(path.read_bytes()).hexdigest()
    with open_h5(run.get("surface.h5")) as handle:
        local = tmp_path / "runs"
        with open_h5((next(local.glob("r-*")) / "surface.h5").read_bytes()) as reference:
            for key in ("trajectory_x", "trajectory_y"):
                np.testing.assert_array_equal(handle[key][()], reference[key][()])


def test_a_factory_may_return_a_data_loader_and_anything_else_is_one_line(tmp_path: Path) -> None:
    """A shuffling DataLoader gives its data set's samples in the data set's order (every worker,
    and data.subset, see the same samples); a factory returning something else is named."""
    from landscape_job.datasets.custom import load_custom

    code = tmp_path / "factories"
    code.mkdir()
    name = f"fac_{uuid.uuid4().hex[:8]}"
    (code / f"{name}.py").write_text(
        "import torch\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "X, Y = torch.arange(40.).reshape(20, 2), torch.arange(20) % 3\n"
        "def loader():\n    return DataLoader(TensorDataset(X, Y), batch_size=6, shuffle=True)\n"
        "def number():\n    return 7\n")
    pyref.activate([str(code)], ())
    data = load_custom(f"python:{name}:loader", None, {}, None)
    inputs, labels = data.splits["train"]
    assert torch.equal(inputs, torch.arange(40.).reshape(20, 2)) and torch.equal(labels, torch.arange(20) % 3)
    assert data.num_classes == 3
    with pytest.raises(UserError, match=rf"^data.dataset: python:{name}:number: returned int; expected a torch "
                                        r"Dataset .*, a DataLoader"):
        load_custom(f"python:{name}:number", None, {}, None)
