"""surface.vtp: VTK XML PolyData of a 2-D surface, read back with xml.etree only; and its wire-up."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import spec_from
from landscape_job import stages
from landscape_job.outputs.exports import write_exports
from landscape_job.outputs.vtk import vtp_document
from launcher.cli import main as launcher
from launcher.local.runner import open_run


def f_loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Asymmetric in x and y, so a transposed layout cannot pass."""
    return 1.0 + (x - 0.3) ** 2 + 3.0 * (y + 0.1) ** 2 + 0.5 * x * y


def grid(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.linspace(-1.0, 1.0, nx)
    y = np.linspace(-0.5, 1.5, ny)
    xx, yy = np.meshgrid(x, y)  # (ny, nx): Z[j, i] = f(x[i], y[j])
    return x, y, f_loss(xx, yy)


DTYPES = {"Float64": "<f8", "UInt8": "u1", "Int32": "<i4", "Int64": "<i8"}


def parse(text: str) -> dict:
    root = ET.fromstring(text)
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    assert root.get("header_type") == "UInt64" and root.get("byte_order") == "LittleEndian"
    piece = root.find("PolyData/Piece")
    assert piece is not None

    def array(path: str, name: str | None = None) -> np.ndarray:
        for node in piece.findall(path):
            if name is None or node.get("Name") == name:
                assert node.get("format") == "binary"  # base64 of a UInt64 byte count, then the values
                raw = base64.b64decode(node.text.strip())
                size = int(np.frombuffer(raw[:8], dtype="<u8")[0])
                assert size == len(raw) - 8
                return np.frombuffer(raw[8:], dtype=DTYPES[node.get("type")]).astype(np.float64)
        raise AssertionError(f"no array {name} under {path}")

    points = array("Points/DataArray").reshape(-1, 3)
    point_data = {n.get("Name"): array("PointData/DataArray", n.get("Name")) for n in piece.findall("PointData/DataArray")}
    return {
        "npoints": int(piece.get("NumberOfPoints")), "npolys": int(piece.get("NumberOfPolys")),
        "points": points, "data": point_data, "scalars": piece.find("PointData").get("Scalars"),
        "connectivity": array("Polys/DataArray", "connectivity").astype(np.int64),
        "offsets": array("Polys/DataArray", "offsets").astype(np.int64),
    }


@pytest.mark.parametrize("nx, ny", [(5, 5), (7, 4), (3, 6)])
def test_points_cells_and_layout(nx: int, ny: int) -> None:
    x, y, z = grid(nx, ny)
    acc = 100.0 - 10.0 * z
    doc = parse(vtp_document(x, y, {"train_loss": z, "train_acc": acc}, "train_loss"))
    assert doc["npoints"] == nx * ny and doc["npolys"] == (nx - 1) * (ny - 1)
    assert doc["points"].shape == (nx * ny, 3)
    for j in range(ny):
        for i in range(nx):
            px, py, pz = doc["points"][j * nx + i]
            assert (px, py) == (x[i], y[j])
            assert pz == f_loss(x[i], y[j]) == z[j, i]  # exact: written as the shortest repr that round-trips
    np.testing.assert_array_equal(doc["data"]["train_acc"], acc.ravel())
    assert doc["scalars"] == "height" and set(doc["data"]) == {"train_loss", "train_acc", "height", "finite"}

    quads = doc["connectivity"].reshape(-1, 4)
    np.testing.assert_array_equal(doc["offsets"], 4 * np.arange(1, len(quads) + 1))
    cells = set()
    for quad in quads:
        corners = doc["points"][quad, :2]
        # one grid cell: two distinct x, two distinct y, and counter-clockwise seen from +z
        assert len(set(corners[:, 0])) == 2 and len(set(corners[:, 1])) == 2
        xs, ys = corners[:, 0], corners[:, 1]
        assert 0.5 * np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) > 0
        cells.add((min(quad) % nx, min(quad) // nx))
    assert cells == {(i, j) for i in range(nx - 1) for j in range(ny - 1)}


def test_zmax_clips_the_height_not_the_data() -> None:
    x, y, z = grid(6, 5)
    doc = parse(vtp_document(x, y, {"train_loss": z}, "train_loss", zmax=2.0))
    np.testing.assert_array_equal(doc["points"][:, 2], np.minimum(z, 2.0).ravel())
    assert (z > 2.0).any() and doc["points"][:, 2].max() == 2.0
    np.testing.assert_array_equal(doc["data"]["train_loss"], z.ravel())


def test_log_height_is_log10_and_zmax_is_in_loss_units() -> None:
    x, y, z = grid(4, 3)
    doc = parse(vtp_document(x, y, {"train_loss": z}, "train_loss", log=True))
    np.testing.assert_allclose(doc["points"][:, 2], np.log10(z).ravel(), rtol=1e-15)
    clipped = parse(vtp_document(x, y, {"train_loss": z}, "train_loss", zmax=2.0, log=True))
    np.testing.assert_allclose(clipped["points"][:, 2], np.minimum(np.log10(z), np.log10(2.0)).ravel(), rtol=1e-15)


def test_non_finite_points_are_lifted_and_marked_never_written_as_nan() -> None:
    x, y, z = grid(4, 4)
    z[1, 2], z[3, 0] = np.nan, np.inf
    acc = np.full_like(z, 50.0)
    acc[0, 0] = np.nan
    text = vtp_document(x, y, {"train_loss": z, "train_acc": acc}, "train_loss")
    doc = parse(text)
    for values in [doc["points"], *doc["data"].values()]:
        assert np.isfinite(values).all()  # non-finite values never reach the file
    finite = np.isfinite(z).ravel()
    top = np.nanmax(np.where(np.isinf(z), np.nan, z))
    np.testing.assert_array_equal(doc["data"]["finite"], finite.astype(float))
    np.testing.assert_array_equal(doc["points"][~finite, 2], [top, top])
    np.testing.assert_array_equal(doc["points"][finite, 2], z.ravel()[finite])
    assert doc["data"]["train_acc"][0] == 50.0
    # with log, a non-positive loss is not finite either; with zmax the ceiling is zmax
    z2 = grid(4, 4)[2]
    z2[0, 1] = 0.0
    doc = parse(vtp_document(x, y, {"train_loss": z2}, "train_loss", zmax=3.0, log=True))
    assert doc["data"]["finite"][1] == 0 and doc["points"][1, 2] == np.log10(3.0)


def write_surface(path: Path, x: np.ndarray, y: np.ndarray | None, metrics: dict[str, np.ndarray],
                  attrs: dict | None = None) -> Path:
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = x
        if y is not None:
            f["ycoordinates"] = y
        for name, values in metrics.items():
            f[name] = values
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def test_exports_carry_hessian_fields_and_refuse_a_bad_one(tmp_path: Path) -> None:
    from landscape_job.base.errors import UserError

    x, y, z = grid(5, 4)
    path = write_surface(tmp_path / "s.h5", x, y, {"train_loss": z, "max_eig": z + 1.0, "min_eig": -z / 10})
    written = write_exports(path, tmp_path / "out")
    assert [p.name for p in written] == ["surface.vtp", "surface.html"]
    doc = parse((tmp_path / "out/surface.vtp").read_text())
    np.testing.assert_array_equal(doc["data"]["min_eig"], (-z / 10).ravel())
    bad = write_surface(tmp_path / "bad.h5", x, y, {"train_loss": z, "max_eig": z.T, "min_eig": z.T})
    with pytest.raises(UserError, match="'max_eig' has shape"):
        write_exports(bad, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # refused before anything is written
    lonely = write_surface(tmp_path / "lonely.h5", x, y, {"train_loss": z, "max_eig": z})
    with pytest.raises(UserError, match="without its partner"):
        write_exports(lonely, tmp_path / "out3")


def skip_figures(monkeypatch) -> list[tuple[str, ...]]:
    """Replaces the matplotlib figures (tested in test_plots.py, seconds each) by a recorder."""
    asked: list[tuple[str, ...]] = []

    def record(surface_path, out_dir, options):
        asked.append(options.formats)
        return []

    monkeypatch.setattr("landscape_job.plots.plot_surface", record)
    return asked


def test_launcher_plot_formats(tmp_path: Path, capsys, monkeypatch) -> None:
    asked = skip_figures(monkeypatch)
    x, y, z = grid(4, 3)
    path = write_surface(tmp_path / "surface.h5", x, y, {"train_loss": z, "train_acc": 90 - z})
    assert launcher(["plot", str(path), "-o", str(tmp_path / "vtp"), "--format", "vtp"]) == 0
    assert [p.name for p in (tmp_path / "vtp").iterdir()] == ["surface.vtp"] and asked == []
    assert launcher(["plot", str(path), "-o", str(tmp_path / "all")]) == 0
    assert {p.name for p in (tmp_path / "all").iterdir()} == {"surface.vtp", "surface.html"}
    assert asked == [("png", "pdf")]  # the default is every format
    one_d = write_surface(tmp_path / "line.h5", x, None, {"train_loss": z[0]})
    assert launcher(["plot", str(one_d), "-o", str(tmp_path / "line"), "--format", "html", "--format", "vtp"]) == 0
    assert [p.name for p in (tmp_path / "line").iterdir()] == ["surface.html"]  # no surface to lift in 1-D
    capsys.readouterr()


def test_merge_writes_vtp_and_html_next_to_the_figures(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    skip_figures(monkeypatch)
    linear_spec["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    del linear_spec["plot"]  # the default outputs
    run = open_run(spec_from(tmp_path, linear_spec), "viewer")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    report = stages.merge(run, log=quiet)
    assert "plots/surface.vtp" in report["outputs"] and "plots/surface.html" in report["outputs"]
    run_dir = tmp_path / "runs" / "viewer"
    with h5py.File(run_dir / "surface.h5") as f:
        loss = f["train_loss"][()]
    doc = parse((run_dir / "plots/surface.vtp").read_text())
    np.testing.assert_array_equal(doc["points"][:, 2], loss.ravel())
    html = (run_dir / "plots/surface.html").read_text()
    payload = json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    np.testing.assert_allclose(np.array(payload["fields"]["train_loss"]["values"]), loss, rtol=1e-6)
