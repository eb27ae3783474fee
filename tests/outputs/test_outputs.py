"""``plot.formats``: merge writes the outputs the spec names, and only those (issue 16: at 10^6
points the PDFs and the VTK file cost most of a merge, so a run can leave them out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import spec_from, write_spec
from landscape_job import stages
from landscape_job.base.errors import UserError
from landscape_job.spec.parse import spec_from_yaml
from launcher.cli import main as launcher
from launcher.local.runner import open_run
from test_vtk import skip_figures


def merged_outputs(tmp_path: Path, raw: dict, run_id: str) -> list[str]:
    run = open_run(spec_from(tmp_path, raw), run_id)
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    return stages.merge(run, log=quiet)["outputs"]


@pytest.mark.slow
def test_merge_writes_only_the_formats_named(tmp_path: Path, linear_spec: dict, monkeypatch) -> None:
    asked = skip_figures(monkeypatch)
    linear_spec["grid"] = {"x": "-1:1:3", "y": "-1:1:3"}
    linear_spec["plot"] = {"formats": ["png", "html"]}
    outputs = merged_outputs(tmp_path, linear_spec, "png-html")
    assert asked == [("png",)]  # no PDF drawn
    assert "plots/surface.html" in outputs and "plots/surface.vtp" not in outputs
    assert (tmp_path / "runs/png-html/plots/surface.html").is_file()
    assert not (tmp_path / "runs/png-html/plots/surface.vtp").exists()

    linear_spec["plot"] = {"formats": "vtp"}  # one name, no figures at all
    outputs = merged_outputs(tmp_path, linear_spec, "vtp-only")
    assert asked == [("png",)]  # plot_surface not called again
    assert outputs == ["surface.h5", "plots/surface.vtp"]

    del linear_spec["plot"]  # unset: every output, as before the key existed
    outputs = merged_outputs(tmp_path, linear_spec, "default")
    assert asked[-1] == ("png", "pdf") and {"plots/surface.vtp", "plots/surface.html"} <= set(outputs)


def test_plot_formats_checked_and_kept_through_the_stored_spec(tmp_path: Path, linear_spec: dict, capsys) -> None:
    linear_spec["plot"] = {"formats": ["html", "png", "html"]}
    spec = spec_from(tmp_path, linear_spec)
    assert spec.plot.formats == ("html", "png")  # each once, in the order given
    assert spec_from_yaml(spec.to_yaml(), "stored").plot.formats == ("html", "png")
    assert spec.hash == spec_from(tmp_path, {**linear_spec, "plot": {}}).hash  # outputs do not change the numbers
    assert "formats" not in spec_from(tmp_path, {**linear_spec, "plot": {}}).to_dict()["plot"]  # unset: not written

    for bad, shown in ((["png", "jpg"], "'jpg'"), ([], "name at least one"), ({"a": 1}, "expected")):
        linear_spec["plot"] = {"formats": bad}
        with pytest.raises(UserError, match=r"^plot\.formats: .*" + shown):
            spec_from(tmp_path, linear_spec)
    linear_spec["plot"] = {"formats": ["PDF"]}
    assert launcher(["validate", str(write_spec(tmp_path, linear_spec))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plot.formats: unknown format 'PDF'" in err


def write_grid(path: Path, nx: int, ny: int | None) -> Path:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, nx)
        shape = (nx,) if ny is None else (ny, nx)
        if ny is not None:
            f["ycoordinates"] = np.linspace(-1, 1, ny)
        f["train_loss"] = np.linspace(0.5, 2.0, nx * (ny or 1)).reshape(shape)
    return path


def test_pdf_left_out_by_default_where_the_figures_are_thinned(tmp_path: Path, linear_spec: dict,
                                                                monkeypatch) -> None:
    from landscape_job.outputs.exports import write_outputs
    from landscape_job.spec.outputs import PDF_DEFAULT_MAX_LINES, split_outputs
    from landscape_job.plots.figures import MAX_DRAWN
    from landscape_job.spec.sections import PlotSpec
    from launcher.cli import describe_work

    assert PDF_DEFAULT_MAX_LINES == MAX_DRAWN  # one threshold: a PDF stops being every point there
    assert split_outputs(None, 501) == (("png", "pdf"), ("vtp", "html"))
    assert split_outputs(None, 502) == (("png",), ("vtp", "html"))
    assert split_outputs(("pdf", "vtp"), 1001) == (("pdf",), ("vtp",))  # named: drawn at any size

    asked = skip_figures(monkeypatch)
    wide = write_grid(tmp_path / "wide.h5", 502, 3)
    names = [p.name for p in write_outputs(wide, tmp_path / "wide", PlotSpec())]
    assert asked == [("png",)] and names == ["surface.vtp", "surface.html"]
    write_outputs(wide, tmp_path / "wide-pdf", PlotSpec(formats=("png", "pdf")))
    write_outputs(write_grid(tmp_path / "line.h5", 600, None), tmp_path / "line", PlotSpec())
    assert asked[1:] == [("png", "pdf"), ("png", "pdf")]  # asked for; a 1-D curve is never thinned

    linear_spec["grid"] = {"x": "-1:1:502", "y": "-1:1:3"}
    del linear_spec["plot"]  # the default outputs
    notes = [line for line in describe_work(spec_from(tmp_path, linear_spec)) if line.startswith("plot:")]
    assert len(notes) == 1 and "no PDF by default above 501 lines" in notes[0]
    linear_spec["plot"] = {"formats": ["png", "pdf"]}
    assert not [line for line in describe_work(spec_from(tmp_path, linear_spec)) if line.startswith("plot:")]


def test_large_surface_files_are_compressed_and_read_back_the_same(tmp_path: Path, linear_spec: dict) -> None:
    import h5py
    import numpy as np

    from landscape_job.storage.base import open_h5
    from landscape_job.surface.file import COMPRESS_ABOVE_POINTS, surface_bytes

    for side, packed in ((316, False), (317, True)):  # 99,856 and 100,489 points
        linear_spec["grid"] = {"x": f"-1:1:{side}", "y": f"-1:1:{side}"}
        grid = spec_from(tmp_path, linear_spec).grid
        assert (grid.size > COMPRESS_ABOVE_POINTS) is packed
        rng = np.random.default_rng(side)
        loss = 1 + np.add.outer(np.linspace(-1, 1, side) ** 2, np.linspace(-1, 1, side) ** 2).ravel()
        noisy = loss * (1 + 1e-3 * rng.standard_normal(grid.size))  # evaluation noise in every digit
        flat = {"train_loss": noisy, "train_acc": np.round(1797 * np.clip(1 - noisy / 3, 0, 1)) * 100 / 1797}
        raw = surface_bytes(grid, flat, {"name": "t"})
        with open_h5(raw) as f:
            for name, values in flat.items():  # the paper's layout: same names, shape (ny, nx), float64
                assert f[name].shape == (side, side) and f[name].dtype == np.float64
                np.testing.assert_array_equal(f[name][()], values.reshape(side, side))
                assert (f[name].compression == "gzip") is packed and (f[name].chunks is not None) is packed
        if packed:  # it pays: noisy losses and k/N accuracies (smooth, as a real surface's) shrink
            plain = h5py.File(tmp_path / "plain.h5", "w")
            for name, values in flat.items():
                plain[name] = values.reshape(side, side)
            plain.close()
            assert len(raw) < 0.8 * (tmp_path / "plain.h5").stat().st_size
