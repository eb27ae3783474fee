"""Hessian extremes, eigenvectors and trace against independent truth (numpy, autograd's dense Hessian)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import SYNTHETIC, save_linear_checkpoint, spec_from, write_spec
from landscape_job import stages
from landscape_job.surface.curvature import CurvatureProbe
from landscape_job.datasets.builtin import load_split
from landscape_job.surface.directions import parse_direction_file
from landscape_job.base.errors import UserError
from landscape_job.surface.hessian import HessianOperator, hutchinson_trace, lanczos
from landscape_job.models import build_model
from landscape_job.spec.sections import DataSpec, HessianSpec
from landscape_job.spec.parse import load_spec
from launcher.local.runner import open_run

QUIET = lambda _msg: None  # noqa: E731


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _symmetric(eigenvalues: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A = Q diag(λ) Qᵀ with a random orthogonal Q: a matrix whose spectrum the test chose."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T, q


def _quadratic_operator(a: np.ndarray) -> HessianOperator:
    """0.5·θᵀAθ over TWO parameter tensors (a matrix and a vector), so flattening is exercised."""
    n = a.shape[0]
    at = torch.tensor(a)
    generator = torch.Generator().manual_seed(5)
    w = torch.randn(4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n - 20, generator=generator, dtype=torch.float64, requires_grad=True)

    def terms():
        theta = torch.cat([w.reshape(-1), b])
        yield 0.5 * theta @ at @ theta

    return HessianOperator([w, b], terms)


# --------------------------------------------------------------------------- core maths


@pytest.mark.parametrize("spectrum", [np.linspace(-3.0, 5.0, 30), np.r_[-7.5, np.linspace(-1, 2, 28), 0.25]],
                         ids=["indefinite", "negative-dominated"])
def test_lanczos_extremes_and_eigenvector_of_a_quadratic(spectrum: np.ndarray) -> None:
    a, _ = _symmetric(spectrum, seed=1)
    truth, vectors = np.linalg.eigh(a)
    op = _quadratic_operator(a)
    found = lanczos(op, op.dim, iterations=200, tolerance=1e-10, top_k=2)
    assert found.converged
    assert found.max_eig == pytest.approx(truth[-1], abs=1e-5)
    assert found.min_eig == pytest.approx(truth[0], abs=1e-5)
    assert found.top_values[1] == pytest.approx(truth[-2], abs=1e-5)
    for k, column in ((0, -1), (1, -2)):
        v = found.top_vectors[k].numpy()
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-12)
        assert abs(v @ vectors[:, column]) == pytest.approx(1.0, abs=1e-6)  # equal up to sign


def test_lanczos_stops_early_on_its_residual_bound_and_the_bound_holds() -> None:
    """A loose tolerance stops before the full dimension, and the eigenvalue error is within it."""
    spectrum = np.r_[-4.0, np.linspace(-0.5, 0.5, 58), 6.0]  # well-separated extremes
    a, _ = _symmetric(spectrum, seed=2)
    op = _quadratic_operator(a)
    found = lanczos(op, op.dim, iterations=60, tolerance=1e-4)
    assert found.converged and found.iterations < 60
    scale = max(abs(found.max_eig), abs(found.min_eig))
    assert found.residual_max <= 1e-4 * scale and found.residual_min <= 1e-4 * scale
    assert abs(found.max_eig - 6.0) <= found.residual_max + 1e-12
    assert abs(found.min_eig + 4.0) <= found.residual_min + 1e-12
    capped = lanczos(op, op.dim, iterations=3, tolerance=1e-12)
    assert not capped.converged and capped.iterations == 3


def test_lanczos_stops_at_the_first_step_where_the_bound_holds_relative_to_the_largest_magnitude() -> None:
    """The bound is relative to max(|λmin|, |λmax|): a spectrum dominated by its negative end (-60 against
    +1) stops as soon as both residuals are within 1e-4 of 60, not of 1; one step fewer is not converged
    (False, not None: the manifest's ``converged``)."""
    spectrum = np.r_[-60.0, np.linspace(-0.5, 0.5, 58), 1.0]
    a, _ = _symmetric(spectrum, seed=4)
    op = _quadratic_operator(a)
    found = lanczos(op, op.dim, iterations=60, tolerance=1e-4)
    assert found.converged is True and 2 < found.iterations < 60
    assert max(found.residual_max, found.residual_min) <= 1e-4 * 60.0 * (1 + 1e-9)
    before = lanczos(op, op.dim, iterations=found.iterations - 1, tolerance=1e-4)
    assert before.converged is False and before.iterations == found.iterations - 1
    assert max(before.residual_max, before.residual_min) > 1e-4 * max(abs(before.max_eig), abs(before.min_eig))


def test_lanczos_stops_on_an_invariant_subspace_with_exact_eigenvalues_and_zero_residuals() -> None:
    """Three distinct eigenvalues of size 1e4 in 30 dimensions: the Krylov space is invariant after 3 steps
    (β is float noise, ~1e-12, far under 1e-12 of the scale), so Lanczos stops there, even with a tolerance
    no residual could meet, its Ritz values are numpy's eigenvalues and its residuals are exactly 0."""
    a, _ = _symmetric(np.repeat([-3e4, 1e4, 2e4], 10), seed=8)
    op = _quadratic_operator(a)
    found = lanczos(op, op.dim, iterations=30, tolerance=1e-300, top_k=1)
    assert found.iterations == 3 and found.converged is True
    assert (found.residual_max, found.residual_min) == (0.0, 0.0)
    assert found.max_eig == pytest.approx(2e4, rel=1e-9) and found.min_eig == pytest.approx(-3e4, rel=1e-9)
    assert found.top_vectors[0].dtype == torch.float64
    np.testing.assert_allclose(a @ found.top_vectors[0].numpy(), 2e4 * found.top_vectors[0].numpy(), atol=1e-6)


def test_the_operator_is_zero_on_unused_parameters_and_constant_or_linear_terms() -> None:
    """Hv of 0.5·wᵀAw + (a term linear in b) + (a term of no parameter), over (w, b, an unused tensor):
    A v_w, then zeros; a float64 v reaches a float32 operator in float32."""
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        a, _ = _symmetric(np.array([2.0, -1.0, 0.5]), seed=9)
        at = torch.tensor(a, dtype=dtype)
        w = torch.tensor([0.3, -0.2, 0.1], dtype=dtype, requires_grad=True)
        b = torch.ones(2, dtype=dtype, requires_grad=True)
        unused = torch.zeros(4, dtype=dtype, requires_grad=True)
        outside = torch.tensor(3.0, dtype=dtype, requires_grad=True)

        def terms():  # the quadratic term last: a linear or constant term before it is skipped, not the end
            yield (2.0 * b).sum()
            yield outside * 1.0
            yield 0.5 * w @ at @ w

        op = HessianOperator([w, b, unused], terms, normaliser=2.0)
        v = torch.arange(1.0, 10.0, dtype=torch.float64)
        hv = op(v)
        assert hv.dtype == dtype and op.products == 1
        expected = np.r_[a @ np.arange(1.0, 4.0), np.zeros(6)] / 2.0
        np.testing.assert_allclose(hv.double().numpy(), expected, rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match=r"^the Hessian needs at least one parameter tensor$"):
        HessianOperator([], lambda: iter(()))


def test_lanczos_defaults_and_refusals() -> None:
    a, _ = _symmetric(np.linspace(-1.0, 2.0, 300), seed=6)
    at = torch.tensor(a)
    plain = lanczos(lambda v: at @ v, 300, tolerance=1e-300)  # never within the bound: the cap stops it
    assert plain.iterations == 100 and plain.converged is False
    assert plain.top_values == () and plain.top_vectors == ()  # top_k 0
    seeded = lanczos(lambda v: at @ v, 300, tolerance=1e-300, seed=0)
    assert (plain.max_eig, plain.residual_max) == (seeded.max_eig, seeded.residual_max)  # seed 0
    assert lanczos(lambda v: 2.0 * v, 1, iterations=1).max_eig == pytest.approx(2.0)  # the smallest allowed
    for iterations, dim in ((0, 5), (1, 0)):
        with pytest.raises(ValueError, match=r"^lanczos needs iterations >= 1 and dim >= 1$"):
            lanczos(lambda v: v, dim, iterations=iterations)


def test_lanczos_keeps_a_divergent_point_as_nan() -> None:
    nan_op = lambda v: v * float("nan")  # noqa: E731
    found = lanczos(nan_op, 10, iterations=5)
    assert np.isnan(found.max_eig) and np.isnan(found.min_eig) and not found.converged


def test_hutchinson_trace_converges_to_the_trace() -> None:
    """Error within 4 theoretical standard deviations (Var zᵀAz = 2 Σ_{i≠j} A_ij²), shrinking with probes."""
    a, _ = _symmetric(np.linspace(-1.0, 4.0, 40), seed=3)
    at = torch.tensor(a)
    sigma = np.sqrt(2 * (np.sum(a**2) - np.sum(np.diag(a) ** 2)))
    errors = {}
    for probes in (20, 4000):
        est = hutchinson_trace(lambda v: at @ v, 40, samples=probes, seed=11)
        errors[probes] = abs(est.trace - np.trace(a))
        assert errors[probes] <= 4 * sigma / np.sqrt(probes)
        assert est.stderr == pytest.approx(sigma / np.sqrt(probes), rel=0.5)
    assert errors[4000] < 0.2 * sigma / np.sqrt(20)


def test_one_hutchinson_probe_is_its_quadratic_form_from_seed_0_and_none_is_refused() -> None:
    """One probe: the estimate is zᵀAz itself (no standard error); the default seed is 0's Rademacher z."""
    a, _ = _symmetric(np.linspace(-1.0, 4.0, 12), seed=2)
    at = torch.tensor(a)
    z = (torch.randint(0, 2, (12,), generator=torch.Generator().manual_seed(0), dtype=torch.int8) * 2 - 1).double()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "degrees of freedom <= 0" from a standard deviation of one value
        est = hutchinson_trace(lambda v: at @ v, 12, samples=1)
    assert est.samples == 1 and est.trace == pytest.approx(float(z @ at @ z), rel=1e-12) and np.isnan(est.stderr)
    # Two probes: the standard error of their mean is half their difference.
    generator = torch.Generator().manual_seed(0)
    q = [float(w @ at @ w) for w in ((torch.randint(0, 2, (12,), generator=generator, dtype=torch.int8) * 2 - 1).double()
                                     for _ in range(2))]
    two = hutchinson_trace(lambda v: at @ v, 12, samples=2)
    assert two.trace == pytest.approx(sum(q) / 2, rel=1e-12) and two.stderr == pytest.approx(abs(q[0] - q[1]) / 2, rel=1e-12)
    with pytest.raises(ValueError, match=r"^hutchinson_trace needs at least one probe$"):
        hutchinson_trace(lambda v: at @ v, 12, samples=0)


# --------------------------------------------------------------------------- a network


def _tiny_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", 3, (6,), {"hidden": [5]}).double().eval()


def _dense_hessian(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                   keep: list[str] | None = None) -> np.ndarray:
    """autograd's dense Hessian of the mean cross-entropy over the parameters named in ``keep``."""
    named = dict(model.named_parameters())
    keep = keep or list(named)
    shapes = [named[k].shape for k in keep]

    def mean_loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = dict(named), 0
        for name, shape in zip(keep, shapes):
            params[name] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (inputs,)), labels)

    flat = torch.cat([named[k].detach().reshape(-1) for k in keep])
    return torch.autograd.functional.hessian(mean_loss, flat).numpy()


@pytest.mark.parametrize("ignore", ["none", "biasbn"])
@pytest.mark.parametrize("batch_size", [7, 48])
def test_network_extremes_match_autograds_dense_hessian(ignore: str, batch_size: int) -> None:
    """48 samples in batches of 7 (7 batches, the last partial): the operator is the MEAN-loss Hessian."""
    data = load_split(DataSpec(dataset="synthetic", subset=48, options=SYNTHETIC), "train")
    model = _tiny_mlp()
    inputs = data.inputs.double()
    keep = None if ignore == "none" else [n for n, p in model.named_parameters() if p.dim() > 1]
    truth = np.linalg.eigvalsh(_dense_hessian(model, inputs, data.labels, keep))
    probe = CurvatureProbe(model=model, inputs=inputs, labels=data.labels,
                           options=HessianSpec(ignore=ignore, iterations=200, tolerance=1e-10),
                           loss="cross_entropy", batch_size=batch_size)
    assert probe.operator.dim == len(truth)
    found = probe.extremes()
    scale = np.abs(truth).max()
    assert abs(found.max_eig - truth[-1]) <= 1e-4 * scale
    assert abs(found.min_eig - truth[0]) <= 1e-4 * scale
    assert truth[0] < 0 < truth[-1]  # a real saddle: both extremes are tested


@pytest.mark.slow
def test_network_trace_estimate_agrees_with_the_dense_trace() -> None:
    data = load_split(DataSpec(dataset="synthetic", subset=24, options=SYNTHETIC), "train")
    model = _tiny_mlp(1)
    hessian = _dense_hessian(model, data.inputs.double(), data.labels)
    probe = CurvatureProbe(model=model, inputs=data.inputs.double(), labels=data.labels,
                           options=HessianSpec(ignore="none", trace_samples=300, seed=4), loss="cross_entropy",
                           batch_size=10)
    est = probe.trace()
    assert est is not None and est.samples == 300
    assert abs(est.trace - np.trace(hessian)) <= 4 * est.stderr
    assert est.stderr < 0.2 * abs(np.trace(hessian))


# --------------------------------------------------------------------------- end to end


def _hessian_spec(tmp_path: Path, **changes) -> dict:
    save_linear_checkpoint(tmp_path / "a.pt", 0, hidden=[4])
    raw = {
        "name": "hess",
        "model": {"arch": "mlp", "checkpoint": "a.pt", "kwargs": {"hidden": [4]}},
        "data": {"dataset": "synthetic", "options": dict(SYNTHETIC), "subset": 40},
        "metrics": ["loss", "accuracy", "hessian"],
        "hessian": {"tolerance": 1e-7, "iterations": 80, "trace_samples": 5},
        "directions": {"type": "random", "seed": 3},
        "grid": {"x": "-1:1:3", "y": "-0.5:0.5:2"},
        "compute": {"shards": 1, "precision": "fp64", "batch_size": 16},
        "storage": "runs",
    }
    raw.update(changes)
    return raw


def _run(tmp_path: Path, raw: dict, run_id: str) -> Path:
    spec = spec_from(tmp_path, raw)
    run = open_run(spec, run_id)
    stages.prepare(run, log=QUIET)
    for shard in range(spec.compute.shards):
        stages.evaluate(run, shard, log=QUIET)
    stages.merge(run, log=QUIET, plots=False)
    return tmp_path / "runs" / run_id


def _model_at(tmp_path: Path, dx: list[torch.Tensor], dy: list[torch.Tensor] | None, a: float, b: float):
    model = build_model("mlp", 3, (6,), {"hidden": [4]})
    model.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"])
    model = model.double().eval()
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            p += a * dx[k].double() + (b * dy[k].double() if dy is not None else 0.0)
    return model


@pytest.mark.slow
def test_surface_holds_max_and_min_eig_equal_to_a_direct_computation_sharded_or_not(tmp_path: Path) -> None:
    raw = _hessian_spec(tmp_path)
    whole = _run(tmp_path, raw, "one")
    raw["compute"]["shards"] = 3
    sharded = _run(tmp_path, raw, "three")
    with h5py.File(whole / "surface.h5") as f, h5py.File(sharded / "surface.h5") as g:
        for name in ("max_eig", "min_eig", "train_loss", "test_acc"):
            assert f[name].shape == (2, 3)
            np.testing.assert_array_equal(f[name][()], g[name][()], err_msg=name)
        xs, ys = f["xcoordinates"][()], f["ycoordinates"][()]
        max_eig, min_eig = f["max_eig"][()], f["min_eig"][()]
        sharpness = float(f.attrs["sharpness"])

    dx, dy, _ = parse_direction_file((whole / "directions.h5").read_bytes(), "directions")
    data = load_split(DataSpec(dataset="synthetic", subset=40, options=SYNTHETIC), "train")
    for j, i in ((0, 0), (1, 2)):
        model = _model_at(tmp_path, dx, dy, xs[i], ys[j])
        keep = [n for n, p in model.named_parameters() if p.dim() > 1]  # hessian.ignore defaults to biasbn
        truth = np.linalg.eigvalsh(_dense_hessian(model, data.inputs.double(), data.labels, keep))
        scale = np.abs(truth).max()
        assert abs(max_eig[j, i] - truth[-1]) <= 1e-4 * scale
        assert abs(min_eig[j, i] - truth[0]) <= 1e-4 * scale

    centre = _model_at(tmp_path, dx, dy, 0.0, 0.0)
    keep = [n for n, p in centre.named_parameters() if p.dim() > 1]
    truth = np.linalg.eigvalsh(_dense_hessian(centre, data.inputs.double(), data.labels, keep))
    report = json.loads((whole / "report.json").read_text())
    manifest = json.loads((whole / "manifest.json").read_text())
    assert report["hessian"]["sharpness"] == pytest.approx(truth[-1], rel=1e-4) == sharpness
    assert manifest["hessian"]["min_eig"] == pytest.approx(truth[0], rel=1e-4)
    assert report["hessian"]["trace_samples"] == 5 and np.isfinite(report["hessian"]["trace"])
    assert report["hessian"]["unconverged_points"] == 0
    assert set(report["summary"]["max_eig"]) == {"non_finite_points", "min", "max"}


def test_hessian_directions_are_unit_eigenvectors(tmp_path: Path) -> None:
    raw = _hessian_spec(tmp_path, metrics=["loss"], directions={"type": "hessian"},
                        hessian={"ignore": "none", "tolerance": 1e-8, "iterations": 80, "trace_samples": 0})
    out = _run(tmp_path, raw, "eig")
    dx, dy, attrs = parse_direction_file((out / "directions.h5").read_bytes(), "directions")
    assert attrs["type"] == "hessian" and attrs["norm"] == "none"
    data = load_split(DataSpec(dataset="synthetic", subset=40, options=SYNTHETIC), "train")
    centre = _model_at(tmp_path, dx, dy, 0.0, 0.0)
    hessian = _dense_hessian(centre, data.inputs.double(), data.labels)
    truth = np.linalg.eigvalsh(hessian)
    x = torch.cat([t.reshape(-1) for t in dx]).double().numpy()
    y = torch.cat([t.reshape(-1) for t in dy]).double().numpy()
    scale = np.abs(truth).max()
    for v, value in ((x, truth[-1]), (y, truth[-2])):
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)
        assert np.linalg.norm(hessian @ v - value * v) <= 1e-4 * scale
    assert abs(x @ y) < 1e-5
    with h5py.File(out / "surface.h5") as f:
        assert set(f) == {"xcoordinates", "ycoordinates", "train_loss", "test_loss"}
    report = json.loads((out / "report.json").read_text())
    assert report["hessian"]["top_eigenvalues"] == pytest.approx([truth[-1], truth[-2], truth[-3]], rel=1e-4)


def test_convexity_plots_are_drawn_from_the_eigenvalues(tmp_path: Path) -> None:
    from landscape_job.plots import PlotOptions, convexity_ratio, load_surface, plot_surface

    raw = _hessian_spec(tmp_path, metrics=["hessian"], grid={"x": "-1:1:3"},
                        hessian={"iterations": 40, "trace_samples": 0})
    out = _run(tmp_path, raw, "curve")
    surface = load_surface(out / "surface.h5")
    assert set(surface.metrics) == {"max_eig", "min_eig"}
    written = plot_surface(out / "surface.h5", tmp_path / "plots", PlotOptions(formats=("png",)))
    assert [p.name for p in written] == ["1d_hessian.png"]
    ratio = convexity_ratio(np.array([2.0, 0.0, -1.0, np.nan]), np.array([-1.0, -1.0, -3.0, 1.0]))
    np.testing.assert_array_equal(ratio, [0.5, np.nan, 3.0, np.nan])


# --------------------------------------------------------------------------- spec


def test_spec_defaults_round_trip_and_hash(tmp_path: Path, linear_spec: dict) -> None:
    plain = spec_from(tmp_path, linear_spec)
    assert plain.metrics == ("loss", "accuracy") and not plain.uses_hessian
    explicit = spec_from(tmp_path, {**linear_spec, "metrics": ["accuracy", "loss"]})
    assert explicit.hash == plain.hash  # existing specs keep their hash
    with_h = spec_from(tmp_path, {**linear_spec, "metrics": ["loss", "hessian"]})
    assert with_h.hessian == HessianSpec() and with_h.hash != plain.hash
    again = load_spec(write_spec(tmp_path, with_h.to_dict(), "normalised.yaml"))
    assert again.hash == with_h.hash and again.to_dict() == with_h.to_dict()
    tighter = spec_from(tmp_path, {**linear_spec, "metrics": ["loss", "hessian"], "hessian": {"tolerance": 1e-6}})
    assert tighter.hash != with_h.hash
    eig = spec_from(tmp_path, {**linear_spec, "directions": {"type": "hessian"}, "hessian": {"ignore": "none"}})
    assert (eig.directions.dir_type, eig.directions.norm, eig.directions.ignore) == ("weights", "none", "none")
    again = load_spec(write_spec(tmp_path, eig.to_dict(), "normalised.yaml"))
    assert again.hash == eig.hash


def _set(path: str, value):
    def change(raw: dict) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return change


BAD = [
    (_set("metrics", ["loss", "curvature"]), r"^metrics\[1\]: expected one of loss, accuracy, hessian"),
    (_set("metrics", []), r"^metrics: name at least one"),
    (_set("metrics", ["loss", "loss"]), r"^metrics: a metric is listed twice"),
    (_set("hessian.tolerance", 0), r"^hessian.tolerance: expected a number between 0 and 1"),
    (_set("hessian.tolerance", 2.0), r"^hessian.tolerance: expected a number between 0 and 1"),
    (_set("hessian.tolerance", "tight"), r"^hessian.tolerance: expected a number"),
    (_set("hessian.iterations", 1), r"^hessian.iterations: must be at least 2"),
    (_set("hessian.ignore", "all"), r"^hessian.ignore: expected one of biasbn, none"),
    (_set("hessian.split", "val"), r"^hessian.split: expected one of train, test"),
    (_set("hessian.subset", 0), r"^hessian.subset: must be at least 1"),
    (_set("hessian.trace_samples", -1), r"^hessian.trace_samples: must be at least 0"),
    (_set("hessian.iteration", 5), r"^hessian.iteration: unknown key; did you mean 'iterations'"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m[1:40] for _, m in BAD])
def test_bad_hessian_options_are_one_line_user_errors(tmp_path: Path, linear_spec: dict, change, message) -> None:
    linear_spec["metrics"] = ["loss", "accuracy", "hessian"]
    change(linear_spec)
    with pytest.raises(UserError, match=message) as err:
        spec_from(tmp_path, linear_spec)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("directions, message", [
    ({"type": "hessian", "norm": "filter"}, r"^directions.norm: type hessian takes norm none"),
    ({"type": "hessian", "dir_type": "states"}, r"^directions.dir_type: type hessian takes dir_type weights"),
    ({"type": "hessian", "ignore": "none"}, r"^directions.ignore: .*set hessian.ignore instead"),
    ({"type": "hessian", "targets": ["b.pt"]}, r"^directions.targets: type hessian takes no targets"),
    ({"type": "hessian", "orthogonalize": True}, r"^directions.orthogonalize: Hessian eigenvectors"),
])
def test_bad_hessian_directions_name_the_key(tmp_path: Path, linear_spec: dict, directions: dict, message) -> None:
    linear_spec["directions"] = directions
    with pytest.raises(UserError, match=message):
        spec_from(tmp_path, linear_spec)


def test_an_unused_hessian_section_is_refused(tmp_path: Path, linear_spec: dict) -> None:
    linear_spec["hessian"] = {"iterations": 20}
    with pytest.raises(UserError, match=r"^hessian: only used with metrics"):
        spec_from(tmp_path, linear_spec)


def test_a_subset_larger_than_the_split_fails_before_anything_is_written(tmp_path: Path) -> None:
    raw = _hessian_spec(tmp_path)
    raw["hessian"]["subset"] = 10_000
    spec = spec_from(tmp_path, raw)
    run = open_run(spec, "big")
    with pytest.raises(UserError, match=r"^hessian.subset: 10000 is larger than the train split \(96 samples\)"):
        stages.prepare(run, log=QUIET)
    assert not run.exists(stages.DIRECTIONS_KEY) and not run.exists(stages.MANIFEST_KEY)


def test_a_subset_larger_than_the_split_is_refused_by_submit_before_a_run_exists(tmp_path: Path, capsys) -> None:
    from launcher.cli import main as launcher

    raw = _hessian_spec(tmp_path)
    raw["hessian"]["subset"] = 10_000
    code = launcher(["submit", str(write_spec(tmp_path, raw)), "--local"])
    err = capsys.readouterr().err
    assert code == 2 and "hessian.subset: 10000 is larger than the train split" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_non_finite_hessian_is_a_nan_result_not_an_error() -> None:
    """A divergent grid point: the operator's first product is NaN at step 1, inf at step 2."""
    import math

    for bad_at, bad in ((0, math.nan), (1, math.inf)):
        calls: list[int] = []

        def matvec(v: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            if len(calls) > bad_at:
                return v * bad
            return v * 2.0 + torch.arange(v.numel(), dtype=v.dtype) * 0.1  # not an eigenvector: Lanczos goes on

        result = lanczos(matvec, 6, iterations=6, top_k=2)
        assert (result.top_values, result.top_vectors, result.iterations, result.converged) == ((), (), bad_at + 1, False)
        assert all(math.isnan(x) for x in (result.max_eig, result.min_eig, result.residual_max, result.residual_min))


def test_a_float32_lanczos_returns_float32_eigenvectors_of_the_operator() -> None:
    """The Ritz coefficients (numpy's float64) are cast to the run's dtype: a float32 Lanczos's top
    eigenvectors are float32, unit, and H v = λ v against numpy's dense eigenpairs of the same matrix."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    eigenvalues = np.array([9.0, 6.0, *np.linspace(-1.0, 2.0, 10)])
    dense = (q * eigenvalues) @ q.T
    matrix = torch.from_numpy(dense).float()
    found = lanczos(lambda v: matrix @ v, 12, iterations=12, tolerance=1e-6, top_k=2, dtype=torch.float32)
    assert found.top_values == pytest.approx((9.0, 6.0), abs=1e-4)
    for value, vector, column in zip(found.top_values, found.top_vectors, (0, 1)):
        assert vector.dtype == torch.float32
        assert float(vector.norm()) == pytest.approx(1.0, abs=1e-5)
        assert abs(float(vector.double() @ torch.from_numpy(q[:, column]))) == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose((matrix @ vector).numpy(), value * vector.numpy(), atol=1e-4)


def test_lanczos_reports_convergence_only_when_every_top_k_pair_meets_the_tolerance() -> None:
    """With ``top_k = 3`` (as the centre analysis asks) every one of the three top Ritz pairs is watched:
    converged means ‖H v − λ v‖ ≤ tolerance · max(|λmin|, |λmax|) for each, checked here on the operator
    itself. A spectrum (numpy's generator, seed 1037: three top eigenvalues in [2, 10], 27 in [-1, 1])
    where the second pair converges last: watching only the first and third stops two steps early with a
    residual ten times the tolerance."""
    rng = np.random.default_rng(1037)
    top = np.sort(rng.uniform(2, 10, 3))[::-1]
    eigenvalues = np.concatenate([top, rng.uniform(-1, 1, 27)])
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    matrix = torch.from_numpy((q * eigenvalues) @ q.T)
    found = lanczos(lambda v: matrix @ v, 30, iterations=100, tolerance=1e-3, top_k=3)
    assert found.converged and len(found.top_vectors) == 3
    scale = max(abs(found.max_eig), abs(found.min_eig))
    for value, vector in zip(found.top_values, found.top_vectors):
        assert float((matrix @ vector - value * vector).norm()) <= 1e-3 * scale
    assert found.top_values == pytest.approx(tuple(top), abs=1e-5)
