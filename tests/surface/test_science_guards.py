"""The behaviours a hostile re-test found untested (issue 26, point 6), each against an independent
computation, each shown to fail on a one-line bug of the kind a developer makes (docs/testing.md
lists the bug each one catches).
"""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import save_linear_checkpoint, spec_from, write_spec
from landscape_job.base.errors import StageError, UserError


# --- gradient noise: centred on the full gradient; exact zeros ------------------------------------


def _regression(n: int = 96, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(3, dtype=torch.float64, requires_grad=True)  # a tensor the loss never touches

    def batch_loss(indices: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x[indices] @ w - y[indices]) ** 2).sum() + 0.0 * unused.sum()

    return x.numpy(), y.numpy(), w, unused, batch_loss


def test_gradient_noise_is_centred_on_a_non_zero_full_gradient_and_ignores_exact_zeros() -> None:
    """Least squares far from its optimum (∇L ≠ 0): every noise vector is the minibatch gradient minus the full
    gradient, computed here in numpy from the closed form ∇ = Xᵀ(Xw − y)/n; the untouched tensor's noise is
    exactly 0 and leaves α as it is (it carries no tail information)."""
    from landscape_job.series.probe import full_gradient, minibatches, noise_columns
    from landscape_job.series.tail_index import tail_index

    x, y, w, unused, batch_loss = _regression()
    n = len(y)
    params = [w, unused]
    gradient = full_gradient(params, batch_loss, n, batch_size=32)
    wn = w.detach().numpy()
    full = x.T @ (x @ wn - y) / n
    assert np.linalg.norm(full) > 0.1
    np.testing.assert_allclose(gradient.numpy()[:5], full, rtol=1e-12)
    assert not gradient.numpy()[5:].any()

    series = SimpleNamespace(noise_batch_size=8, noise_batches=30, noise_seed=4, noise_per_layer=True,
                             noise_estimator="default")
    out = noise_columns(params, batch_loss, gradient, n, series)
    noise = []
    for indices in minibatches(n, 8, 30, 4):
        i = indices.numpy()
        noise.append(x[i].T @ (x[i] @ wn - y[i]) / len(i) - full)
    noise = np.array(noise)
    assert out["noise_norm"] == pytest.approx(np.linalg.norm(noise, axis=1).mean(), rel=1e-10)
    assert out["tail_index"] == pytest.approx(tail_index(noise), rel=1e-10)  # the zeros changed nothing
    assert math.isfinite(out["tail_index"]) and math.isnan(out["tail_index_layers[1]"])


def test_tail_index_leaves_exact_zeros_out() -> None:
    rng = np.random.default_rng(0)
    samples = rng.standard_normal(400)
    with_zeros = np.insert(samples, rng.integers(0, 400, 50), 0.0)
    from landscape_job.series.tail_index import tail_index

    assert tail_index(with_zeros) == tail_index(samples)
    assert 1.6 < tail_index(rng.standard_normal(40_000)) < 2.4  # a Gaussian is α = 2


# --- Lanczos: the top-k all converge, not only the top one -----------------------------------------


def test_lanczos_top_k_does_not_stop_when_only_the_top_pair_has_converged() -> None:
    """A spectrum whose λmax and λmin are far apart from the rest (they converge in a few steps) and whose
    2nd and 3rd eigenvalues sit in a cluster (they take many): each of the top 3 within the tolerance's bound
    of numpy's dense eigenvalues."""
    from landscape_job.surface.hessian import lanczos

    dim = 120
    rng = np.random.default_rng(3)
    values = np.concatenate([[30.0, 5.0, 4.97], rng.uniform(0.0, 4.9, dim - 4), [-30.0]])
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    matrix = torch.from_numpy((q * values) @ q.T)
    result = lanczos(lambda v: matrix @ v, dim, iterations=dim, tolerance=1e-9, top_k=3)
    truth = np.sort(np.linalg.eigvalsh(matrix.numpy()))[::-1][:3]
    assert result.converged
    np.testing.assert_allclose(result.top_values, truth, rtol=0, atol=1e-6)
    for value, vector in zip(truth, result.top_vectors):
        assert float(torch.linalg.norm(matrix @ vector - value * vector)) < 1e-4


# --- S3 reads verified with botocore's checksums off ----------------------------------------------


@pytest.mark.slow
def test_s3_reads_are_verified_when_botocore_checksums_are_off(moto_endpoint: str, monkeypatch) -> None:
    """``request_checksum: when_required`` (MinIO, Ceph): botocore checks nothing on a download, so the
    storage's own sha256 must: an object whose bytes changed under the same length is refused."""

    from landscape_job.storage import open_storage
    from storage_testing import new_bucket, s3_client, s3_options

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("LANDSCAPE_S3_BACKOFF", "0.01")
    bucket = new_bucket(moto_endpoint)
    storage = open_storage(f"s3://{bucket}/runs/r", {**s3_options(moto_endpoint), "request_checksum": "when_required"})
    data = bytes(range(256)) * 40
    storage.put("shards/shard-0-of-1.h5", data)
    assert storage.get("shards/shard-0-of-1.h5") == data
    tampered = bytes([data[0] ^ 1]) + data[1:]
    raw = s3_client(moto_endpoint)
    raw.put_object(Bucket=bucket, Key="runs/r/shards/shard-0-of-1.h5", Body=tampered,
                   Metadata={"sha256": hashlib.sha256(data).hexdigest()})
    with pytest.raises(StageError, match="sha256 mismatch"):
        storage.get("shards/shard-0-of-1.h5")


# --- prepare's release answered 429 or 5xx ---------------------------------------------------------


@pytest.mark.parametrize("code", [429, 500, 503])
def test_release_retries_a_429_or_5xx_and_refuses_a_4xx_at_once(monkeypatch, code: int) -> None:
    import json

    from landscape_job.runtime import release
    from landscape_job.runtime.kube import ApiError

    answers = [ApiError(code, "busy"), ApiError(code, "busy"), None, None]
    calls: list[str] = []

    class FakeApi:
        def request(self, method, path, body, content_type):
            calls.append(path)
            answer = answers.pop(0)
            if answer is not None:
                raise answer

    monkeypatch.setattr(release, "in_cluster", lambda environ: FakeApi())
    env = {"LANDSCAPE_RELEASE": json.dumps({"jobs": ["r-evaluate", "r-merge"], "patch": {}}),
           "LANDSCAPE_NAMESPACE": "ns"}
    sleeps: list[float] = []
    lines: list[str] = []
    release.release_next_stages(lines.append, sleep=sleeps.append, environ=env)
    assert lines == ["prepare: released job r-evaluate", "prepare: released job r-merge"]
    assert sleeps == [1.0, 2.0] and len(calls) == 4

    answers[:] = [ApiError(400, "bad patch")]
    sleeps.clear()
    with pytest.raises(StageError, match="releasing job r-evaluate failed: HTTP 400"):
        release.release_next_stages(lines.append, sleep=sleeps.append, environ=env)
    assert sleeps == []
    answers[:] = [ApiError(code, "busy")] * release.TRIES
    with pytest.raises(StageError, match=f"HTTP {code}"):
        release.release_next_stages(lines.append, sleep=sleeps.append, environ=env)
    assert len(sleeps) == release.TRIES - 1


# --- stage deadlines when the shards do not divide into waves --------------------------------------


@pytest.mark.parametrize("shards,parallelism", [(5, 2), (7, 3), (6, 3), (1, 4), (10, 1)])
def test_evaluate_deadline_counts_the_last_partial_wave(tmp_path: Path, linear_spec: dict, shards: int,
                                                         parallelism: int) -> None:
    from launcher.kubernetes.deadlines import ATTEMPTS, SETUP_SECONDS, stage_deadlines
    from launcher.kubernetes.section import parse_kubernetes

    linear_spec["compute"]["shards"] = shards
    linear_spec["grid"] = {"x": "-1:1:41"}
    spec = spec_from(tmp_path, linear_spec)
    k8s = parse_kubernetes({"image": "x/y:1", "parallelism": parallelism, "point_seconds": 2})
    running, waves = 0, 0  # the schedule, simulated: a wave starts `parallelism` pods until none is left
    while running < shards:
        running += parallelism
        waves += 1
    per_shard = -(-41 // shards)
    want = waves * ATTEMPTS * (SETUP_SECONDS + per_shard * 2)
    got = stage_deadlines(spec, k8s)
    assert got.evaluate == want and got.merge == want + 2 * SETUP_SECONDS


def test_prepare_s_hessian_allowance_and_merge_s_deadline_under_kueue(tmp_path: Path, linear_spec: dict) -> None:
    """Written out: prepare gets two set-ups plus 300 points' worth of time for Lanczos at θ* when the run uses
    the Hessian (none otherwise); under Kueue merge is released by the last shard, so its deadline is its own
    two set-ups, not evaluate's bound plus them."""
    from launcher.kubernetes.deadlines import stage_deadlines
    from launcher.kubernetes.section import parse_kubernetes

    linear_spec["grid"] = {"x": "-1:1:41"}
    plain = spec_from(tmp_path, linear_spec)
    linear_spec["metrics"] = ["loss", "hessian"]
    with_hessian = spec_from(tmp_path, linear_spec)
    k8s = parse_kubernetes({"image": "x/y:1", "point_seconds": 7})
    assert stage_deadlines(plain, k8s).prepare == 2 * 1800
    assert stage_deadlines(with_hessian, k8s).prepare == 2 * 1800 + 300 * 7

    queued = parse_kubernetes({"image": "x/y:1", "point_seconds": 7, "kueue_queue": "team-a"})
    unqueued = stage_deadlines(plain, k8s)
    assert stage_deadlines(plain, queued).merge == 2 * 1800
    assert unqueued.merge == unqueued.evaluate + 2 * 1800 and unqueued.evaluate > 0


# --- the API equals the CLI with a seeded Hessian subset -------------------------------------------


def test_api_hessian_equals_the_cli_prepare_on_a_seeded_subset(tmp_path: Path, linear_spec: dict) -> None:
    """The same model, data and ``hessian: {subset: 37, subset_seed: 5}``: λmax, λmin and the top
    eigenvalues of ``landscape_job.api.hessian`` equal the prepare stage's (manifest), bit for bit; a
    different seed gives different numbers (so the seed is really used by both)."""
    import landscape_job.api as ls
    from landscape_job import stages
    from landscape_job.datasets.builtin import load_split
    from landscape_job.stages import read_manifest
    from landscape_job.surface.centre import build_centre_model
    from launcher.local.runner import open_run

    options = dict(subset=37, subset_seed=5, iterations=60, tolerance=1e-10, ignore="none", trace_samples=0)
    linear_spec["metrics"] = ["loss", "hessian"]
    linear_spec["hessian"] = options
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "h")
    stages.prepare(run, log=lambda _: None)
    manifest_hessian = read_manifest(run).hessian
    assert manifest_hessian

    model = build_centre_model(spec)  # θ*, as prepare builds it
    data = {name: (s.inputs, s.labels) for name, s in ((n, load_split(spec.data, n)) for n in spec.data.splits)}
    found = ls.hessian(model, data, precision="fp64", **options)
    assert found.max_eig == manifest_hessian["max_eig"]  # bit for bit: the same samples, in the same order
    assert found.min_eig == pytest.approx(manifest_hessian["min_eig"], abs=1e-12)  # 0 (a null space), by rounding
    other = ls.hessian(model, data, precision="fp64", **{**options, "subset_seed": 6})
    assert other.max_eig != found.max_eig


# --- a pinned input that is an s3:// URL ----------------------------------------------------------


def test_a_pinned_s3_checkpoint_that_changed_is_refused_on_resume(tmp_path: Path, linear_spec: dict,
                                                                   moto_endpoint: str, monkeypatch) -> None:

    from landscape_job import stages
    from launcher.local.runner import open_run
    from storage_testing import new_bucket, s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("LANDSCAPE_CACHE_DIR", str(tmp_path / "cache"))
    bucket = new_bucket(moto_endpoint)
    raw = s3_client(moto_endpoint)
    raw.put_object(Bucket=bucket, Key="ck/a.pt", Body=(tmp_path / "a.pt").read_bytes())
    linear_spec["model"]["checkpoint"] = f"s3://{bucket}/ck/a.pt"
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # a local storage: the inputs' endpoint from the env
    spec = spec_from(tmp_path, linear_spec)
    run = open_run(spec, "pinned")
    stages.prepare(run, log=lambda _: None)
    from landscape_job.stages import read_manifest

    assert read_manifest(run).checkpoints[f"s3://{bucket}/ck/a.pt"] == \
        hashlib.sha256((tmp_path / "a.pt").read_bytes()).hexdigest()
    open_run(spec, "pinned")  # unchanged: resumes
    raw.put_object(Bucket=bucket, Key="ck/a.pt", Body=(tmp_path / "b.pt").read_bytes())
    with pytest.raises(UserError, match=rf"model.checkpoint: s3://{bucket}/ck/a.pt changed since this run"):
        open_run(spec, "pinned")


# --- the lowest filled contour level and the minimum ------------------------------------------------


def test_fill_levels_cover_the_minimum_and_the_maximum() -> None:
    """Filled contours start at or below the data's minimum (else the lowest basin is left blank) and end at or
    above its maximum, one step at most beyond; line levels lie inside; both on the anchor's lattice."""
    from landscape_job.plots.levels import contour_levels

    rng = random.Random(26)
    for _ in range(300):
        lo = rng.uniform(-5, 5)
        hi = lo + rng.uniform(0.01, 10)
        step = (hi - lo) / rng.uniform(1.5, 60)
        anchor = rng.choice([None, lo - rng.uniform(0, 3) * step, lo + rng.uniform(0, 1) * step])
        fill = contour_levels(lo, hi, step, anchor=anchor, fill=True)
        line = contour_levels(lo, hi, step, anchor=anchor)
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        assert fill[0] <= lo + tol and fill[0] > lo - step - tol, (lo, hi, step, anchor, fill[:3])
        assert fill[-1] >= hi - tol and fill[-1] < hi + step + tol
        if len(line) > 3:
            assert line[0] >= lo - tol and line[-1] <= hi + tol
            base = 0.0 if anchor is None else anchor
            k = (fill - base) / step
            np.testing.assert_allclose(k, np.round(k), atol=1e-6)
