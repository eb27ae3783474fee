"""surface.html in headless Chromium: drawn, hoverable, switchable, offline, error-free.

The browser is Debian's ``chromium`` (``make test`` installs it where it can), driven by
playwright with ``executable_path``: no browser is ever downloaded. Without a browser the
browser tests are skipped with the reason, unless LANDSCAPE_REQUIRE_BROWSER is set (CI),
where they fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape_job.outputs.exports import write_exports

#: One pytest-xdist worker runs this file: its one Chromium (and playwright's driver) is started once,
#: not on each of the four workers (~2 s of CPU each).
pytestmark = pytest.mark.xdist_group("browser")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_browser() -> str | None:
    for candidate in (os.environ.get("LANDSCAPE_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def f_loss(x, y):
    """Asymmetric in x and y: a transposed or mirrored drawing reports wrong values."""
    return 0.4 + (x - 0.25) ** 2 + 2.0 * (y - 0.1) ** 2 + 0.3 * x * y


def f_acc(x, y):
    return 100.0 - 30.0 * f_loss(x, y) / (1.0 + f_loss(x, y))


X = np.linspace(-1.0, 1.0, 17)
Y = np.linspace(-0.5, 1.0, 11)  # non-square on purpose


def write_surface(path: Path, *, two_d: bool = True, hessian: bool = False, trajectory: bool = False,
                  diverged: bool = False) -> Path:
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = X
        if two_d:
            f["ycoordinates"] = Y
            xx, yy = np.meshgrid(X, Y)
        else:
            xx, yy = X, np.zeros_like(X)
        f["train_loss"], f["test_loss"] = f_loss(xx, yy), f_loss(xx, yy) + 0.5
        f["train_acc"], f["test_acc"] = f_acc(xx, yy), f_acc(xx, yy) - 5.0
        if diverged:  # a few divergent train points; a test split where every point diverged
            loss = f_loss(xx, yy)
            loss[0, :3], loss[-1, -1] = np.nan, np.inf
            del f["train_loss"], f["test_loss"]
            f["train_loss"], f["test_loss"] = loss, np.full_like(loss, np.nan)
        if hessian:
            f["max_eig"], f["min_eig"] = 2.0 + xx, -0.2 * (yy + 0.5)
        if trajectory:
            f["trajectory_x"], f["trajectory_y"] = np.array([0.9, 0.6, 0.3]), np.array([0.8, 0.4, 0.1])
            f.attrs["trajectory_names"] = json.dumps(["epoch-1", "epoch-5", "final"])
            f.attrs["explained_variance"] = json.dumps([0.8, 0.15])
        f.attrs["name"] = "viewer-test</script><b>"  # must not break out of the data tag
    return path


def page_html(tmp_path: Path, **kind) -> Path:
    path = write_surface(tmp_path / "surface.h5", **kind)
    write_exports(path, tmp_path / "plots", formats=("html",))
    return tmp_path / "plots" / "surface.html"


def embedded(html: str) -> dict:
    return json.loads(html.split('type="application/json">', 1)[1].split("</script>", 1)[0])


def test_page_is_self_contained_and_embeds_the_data(tmp_path: Path) -> None:
    html = page_html(tmp_path).read_text()
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", html.replace("http-equiv", ""))
    assert html.count("</script>") == 2  # the data and the script; the name's </script> is escaped
    data = embedded(html)
    assert data["title"] == "viewer-test</script><b>"
    np.testing.assert_allclose(data["x"], X, rtol=1e-7)
    xx, yy = np.meshgrid(X, Y)
    np.testing.assert_allclose(np.array(data["fields"]["test_acc"]["values"]), f_acc(xx, yy) - 5.0, rtol=1e-6)
    assert "hessian_ratio" not in data["fields"] and data["trajectory"] is None


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
    if executable is None:
        reason = "no chromium found (make test installs Debian's chromium where apt-get works as root)"
    if reason:
        if os.environ.get("LANDSCAPE_REQUIRE_BROWSER"):
            pytest.fail(f"LANDSCAPE_REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=ARGS)
        yield instance
        instance.close()


class Viewer:
    """One page, with every console error and network request it makes recorded."""

    def __init__(self, browser, path: Path, plot: str = "#plot"):
        self.page = browser.new_page(viewport={"width": 1000, "height": 820})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.box = self.page.locator(plot).first.bounding_box()

    def shot(self) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(self.page.locator("#plot").screenshot())).convert("RGB"))

    def hover(self, fx: float, fy: float) -> tuple[str, dict]:
        """Moves to a fraction of the canvas; returns the hover text and its data attributes."""
        self.page.mouse.move(self.box["x"] + fx * self.box["width"], self.box["y"] + fy * self.box["height"])
        out = self.page.locator("#hover")
        return out.text_content(), {k: out.get_attribute(f"data-{k}") for k in ("x", "y", "value")}

    def text(self, selector: str) -> str:
        return self.page.locator(selector).text_content()

    def close(self) -> None:
        self.page.close()
        assert self.errors == [], self.errors
        assert self.requests and all(u.startswith(("file://", "data:")) for u in self.requests), self.requests


def colours(image: np.ndarray) -> int:
    return len(np.unique(image.reshape(-1, 3), axis=0))


def shown(text: str, name: str) -> float:
    return float(re.search(rf"{re.escape(name)} = (-?[0-9.e+-]+)", text).group(1))


@pytest.mark.slow
def test_surface_contour_hover_and_switches(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path))
    assert v.text("#metric-name") == "train loss"
    surface_3d = v.shot()
    assert colours(surface_3d) > 200  # a shaded, colour-mapped surface, not a blank canvas

    v.page.click("#btn-contour")
    contour = v.shot()
    assert colours(contour) > 100 and not np.array_equal(contour, surface_3d)
    seen = []
    for fx, fy in ((0.3, 0.3), (0.45, 0.5), (0.6, 0.7), (0.5, 0.2)):
        text, at = v.hover(fx, fy)
        x, y, value = float(at["x"]), float(at["y"]), float(at["value"])
        i, j = int(np.argmin(abs(X - x))), int(np.argmin(abs(Y - y)))
        assert abs(X[i] - x) < 1e-6 and abs(Y[j] - y) < 1e-6  # a grid point
        assert value == pytest.approx(f_loss(X[i], Y[j]), rel=1e-6)  # the value at that point
        assert shown(text, "train loss") == pytest.approx(f_loss(X[i], Y[j]), rel=1e-4)  # and it is displayed
        assert shown(text, "x") == pytest.approx(X[i], abs=1e-4) and shown(text, "y") == pytest.approx(Y[j], abs=1e-4)
        seen.append((x, y))
    assert seen[0][0] < seen[1][0] < seen[2][0]  # right is +x
    assert seen[0][1] > seen[1][1] > seen[2][1] and seen[3][1] > seen[1][1]  # up is +y

    v.page.click("#btn-test")
    v.page.click("#btn-acc")
    assert v.text("#metric-name") == "test accuracy (%)"
    test_acc = v.shot()
    assert not np.array_equal(test_acc, contour)
    text, at = v.hover(0.45, 0.5)
    x, y = float(at["x"]), float(at["y"])
    assert float(at["value"]) == pytest.approx(f_acc(x, y) - 5.0, rel=1e-6)
    assert shown(text, "test accuracy") == pytest.approx(f_acc(x, y) - 5.0, rel=1e-4)
    assert v.page.locator("#btn-hessian").is_hidden() and v.page.locator("#traj-label").is_hidden()

    v.page.click("#btn-surface")
    before = v.shot()
    box = v.box
    v.page.mouse.move(box["x"] + 400, box["y"] + 300)
    v.page.mouse.down()
    v.page.mouse.move(box["x"] + 480, box["y"] + 330, steps=4)
    v.page.mouse.up()
    rotated = v.shot()
    assert not np.array_equal(rotated, before)
    v.page.mouse.move(box["x"] + 400, box["y"] + 300)
    v.page.mouse.wheel(0, -400)
    assert not np.array_equal(v.shot(), rotated)  # zoomed
    v.close()


def test_log_scale_switch(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path))
    v.page.click("#btn-contour")
    linear = v.shot()
    v.page.check("#log")
    assert v.text("#metric-name") == "train loss, log scale"
    assert not np.array_equal(v.shot(), linear)
    v.page.click("#btn-acc")
    assert v.page.locator("#log").is_disabled()  # accuracy has no log scale
    v.close()


def test_hessian_ratio_and_trajectory_when_present(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path, hessian=True, trajectory=True))
    v.page.click("#btn-contour")
    with_path = v.shot()
    v.page.uncheck("#traj")
    without = v.shot()
    assert not np.array_equal(with_path, without)
    v.page.click("#btn-hessian")
    assert v.text("#metric-name") == "|λmin/λmax|"
    assert v.page.locator("#btn-train").is_disabled()  # the Hessian is not per split
    text, at = v.hover(0.4, 0.4)
    x, y = float(at["x"]), float(at["y"])
    assert float(at["value"]) == pytest.approx(abs(-0.2 * (y + 0.5) / (2.0 + x)), rel=1e-6)
    assert "PCA directions explain 80.0% and 15.0%" in v.text("#note")
    v.close()


@pytest.mark.slow
def test_one_dimensional_curve(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path, two_d=False))
    assert v.page.locator("#views").is_hidden()
    train = v.shot()
    assert colours(train) > 5
    text, at = v.hover(0.5, 0.5)
    x = float(at["x"])
    assert float(at["value"]) == pytest.approx(f_loss(x, 0.0), rel=1e-6)
    assert shown(text, "train loss") == pytest.approx(f_loss(x, 0.0), rel=1e-4)
    v.page.click("#btn-test")
    assert v.text("#metric-name") == "test loss"
    assert not np.array_equal(v.shot(), train)
    v.close()


def test_divergent_points_are_masked_not_fatal(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path, diverged=True))
    v.shot()
    v.page.click("#btn-contour")
    pixels = v.shot().reshape(-1, 3)
    assert (pixels == [224, 224, 224]).all(axis=1).sum() > 50  # the masked cells, in grey
    v.page.click("#btn-test")
    assert v.text("#metric-name") == "test loss"
    v.page.click("#btn-surface")
    v.hover(0.4, 0.5)
    assert v.text("#hover") == ""
    v.close()  # no console error on the way


def test_fields_beyond_loss_and_accuracy_get_their_own_switch(browser, tmp_path: Path) -> None:
    """A registered metric or another tool's dataset is a quantity of its own; a per-point one
    disables the split switch, as the Hessian ratio does."""
    path = write_surface(tmp_path / "surface.h5")
    xx, yy = np.meshgrid(X, Y)
    with h5py.File(path, "a") as f:
        f["train_margin"], f["test_margin"] = xx + yy, xx - yy
        f["sharpness_proxy"] = 2.0 * xx
    write_exports(path, tmp_path / "plots", formats=("html",))
    v = Viewer(browser, tmp_path / "plots" / "surface.html")
    assert v.text("#metric-name") == "train loss"
    v.page.click('[data-quantity="margin"]')
    assert v.text("#metric-name") == "train margin"
    v.page.click("#btn-test")
    assert v.text("#metric-name") == "test margin"
    v.page.click("#btn-contour")
    text, at = v.hover(0.45, 0.5)
    assert float(at["value"]) == pytest.approx(float(at["x"]) - float(at["y"]), rel=1e-6)
    v.page.click('[data-quantity="sharpness_proxy"]')
    assert v.text("#metric-name") == "sharpness_proxy"
    assert v.page.locator("#btn-train").is_disabled() and v.page.locator("#btn-test").is_disabled()
    v.page.click("#btn-loss")
    assert v.text("#metric-name") == "test loss" and not v.page.locator("#btn-train").is_disabled()
    v.close()


# ----------------------------------------------------------------------------- issue 15: the page as the PNGs


def drawn(v: Viewer) -> dict:
    return v.page.evaluate("window.landscapeViewer.drawn")


def pixel(v: Viewer, image: np.ndarray, x: float, y: float) -> np.ndarray:
    """The screenshot's colour at a point given in the canvas's CSS pixels."""
    scale = image.shape[1] / v.box["width"]
    return image[int(round(y * scale)), int(round(x * scale))].astype(int)


@pytest.mark.parametrize("width", [640, 1400])
def test_the_canvas_takes_the_page_width_and_hover_still_hits_the_grid(browser, tmp_path: Path, width: int) -> None:
    path = page_html(tmp_path)
    v = Viewer(browser, path)
    v.page.set_viewport_size({"width": width, "height": 820})
    v.page.wait_for_timeout(100)
    v.box = v.page.locator("#plot").bounding_box()
    margin = width - v.box["width"]
    assert 40 <= margin <= 60  # the body's margins, nothing fixed at ~900 px
    backing, css, ratio = v.page.evaluate("(p => [p.width, p.clientWidth, devicePixelRatio])"
                                          "(document.getElementById('plot'))")
    assert backing == round(css * ratio) and css >= v.box["width"] - 2  # a sharp backing store
    v.page.click("#btn-contour")
    text, at = v.hover(0.45, 0.5)
    i, j = int(np.argmin(abs(X - float(at["x"])))), int(np.argmin(abs(Y - float(at["y"]))))
    assert float(at["value"]) == pytest.approx(f_loss(X[i], Y[j]), rel=1e-6)
    v.close()


def test_z_ticks_are_round_values(browser, tmp_path: Path) -> None:
    v = Viewer(browser, page_html(tmp_path))
    ticks = np.array([float(t) for t in drawn(v)["zTicks"]])
    assert len(ticks) >= 3
    step = np.diff(ticks)
    assert np.allclose(step, step[0])
    mantissa = step[0] / 10 ** np.floor(np.log10(step[0]))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)
    assert np.allclose(ticks / step[0], np.round(ticks / step[0]))
    xx, yy = np.meshgrid(X, Y)
    loss = f_loss(xx, yy)
    assert loss.min() <= ticks[0] and ticks[-1] <= loss.max()  # inside the drawn range
    v.close()


def test_theta_star_and_the_trajectory_have_the_pngs_markers(browser, tmp_path: Path) -> None:
    from landscape_job.plots.style import MARK_COLOURS, SPLIT_COLOURS

    html = page_html(tmp_path, trajectory=True)
    assert embedded(html.read_text())["colours"] == {**MARK_COLOURS, **SPLIT_COLOURS}  # one source
    v = Viewer(browser, html)
    v.page.click("#btn-contour")
    marks = drawn(v)["marks"]
    kinds = [m["kind"] for m in marks]
    assert kinds.count("centre") == 1 and kinds.count("start") == 1 and kinds.count("end") == 1
    assert kinds.count("point") == 1  # the three checkpoints: start, one between, end
    image = v.shot()
    rgb = lambda hex_: np.array([int(hex_[k:k + 2], 16) for k in (1, 3, 5)])  # noqa: E731
    for mark in marks:
        colour = pixel(v, image, mark["x"], mark["y"])
        expected = {"centre": rgb(MARK_COLOURS["centre"]), "start": rgb(MARK_COLOURS["start"]),
                    "end": rgb(MARK_COLOURS["end"]), "point": np.array([255, 255, 255])}[mark["kind"]]
        assert np.abs(colour - expected).max() <= 40, (mark, colour)
    centre = next(m for m in marks if m["kind"] == "centre")
    _, at = v.hover(centre["x"] / v.box["width"], centre["y"] / v.box["height"])
    assert float(at["x"]) == 0.0 and abs(float(at["y"])) <= (Y[1] - Y[0]) / 2  # θ* is drawn at (0, 0)
    end = next(m for m in marks if m["kind"] == "end")
    _, at = v.hover(end["x"] / v.box["width"], end["y"] / v.box["height"])
    assert (float(at["x"]), float(at["y"])) == pytest.approx((X[np.argmin(abs(X - 0.3))], Y[np.argmin(abs(Y - 0.1))]))
    v.page.click("#btn-surface")
    assert {m["kind"] for m in drawn(v)["marks"]} == {"centre", "start", "point", "end"}  # the 3-D view too
    v.close()


def test_a_one_dimensional_page_draws_both_splits_and_marks_the_barriers(browser, tmp_path: Path) -> None:
    alpha = np.linspace(-0.5, 1.5, 41)
    bump = np.exp(-((alpha - 0.55) / 0.12) ** 2)
    train, test = 0.05 + 1.3 * bump + 0.2 * alpha**2, 0.2 + 0.9 * bump + 0.2 * alpha**2
    path = tmp_path / "surface.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["train_loss"], f["test_loss"] = alpha, train, test
        f.attrs["direction_type"], f.attrs["xlabel"] = "interpolate", "α"
    write_exports(path, tmp_path / "plots", formats=("html",))
    html = tmp_path / "plots" / "surface.html"
    barriers = embedded(html.read_text())["barriers"]
    inside = (alpha >= 0) & (alpha <= 1)
    for split, curve in (("train", train), ("test", test)):
        top = int(np.argmax(np.where(inside, curve, -np.inf)))
        assert barriers[split]["alpha"] == pytest.approx(alpha[top])
        assert barriers[split]["height"] == pytest.approx(curve[top] - max(curve[alpha == 0][0], curve[alpha == 1][0]))
    v = Viewer(browser, html)
    image = v.shot().reshape(-1, 3).astype(int)
    for colour in ("#0072B2", "#D55E00"):  # both curves, in the PNG's split colours
        target = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(image - target).max(axis=1) <= 30).sum() > 100, colour
    marks = drawn(v)["marks"]
    assert sorted(m["kind"] for m in marks) == ["barrier", "barrier", "centre"]
    for mark in (m for m in marks if m["kind"] == "barrier"):
        _, at = v.hover(mark["x"] / v.box["width"], 0.5)
        assert float(at["x"]) == pytest.approx(barriers["train"]["alpha"])
    text, _ = v.hover(0.5, 0.5)
    assert "train loss = " in text and "test loss = " in text  # both values under the cursor
    v.close()


@pytest.mark.slow
def test_the_series_page_runs_its_script_from_the_template(browser, tmp_path: Path) -> None:
    """series.html (templates/series.html + series.js, data inlined): the script runs without an
    error, offers each field and the spectrum, and draws the sharpness with its threshold."""
    from landscape_job.series.file import load_series, series_bytes
    from landscape_job.series.page import write_series_html

    flat = {"train_loss": np.array([1.0, 0.5, np.nan]), "top_eigenvalues[0]": np.array([3.0, 5.0, 4.0]),
            "top_eigenvalues[1]": np.array([1.0, 2.0, 2.5])}
    source = tmp_path / "series.h5"
    source.write_bytes(series_bytes(np.array([0, 5, 10]), ["a", "b", "c</script>"], flat,
                                    {"name": "t<b>", "threshold": 4.0, "momentum": 0.0}))
    path = write_series_html(load_series(source), tmp_path / "series.html")
    v = Viewer(browser, path)
    options = v.page.eval_on_selector_all("#field option", "os => os.map(o => o.value)")
    assert options == ["top_eigenvalues", "train_loss", "__spectrum__"]
    assert v.page.eval_on_selector_all("#step option", "os => os.map(o => o.textContent)") == ["0", "5", "10"]
    assert v.text("#note") == "over the training steps" and v.text("h2") == "t<b>: series over 3 checkpoints"
    assert colours(v.shot()) > 3  # the λ curves (orange, grey), the threshold, the frame
    v.page.select_option("#field", "__spectrum__")
    assert v.text("#note") == "top eigenvalues at step 0"
    v.close()


@pytest.mark.slow
def test_the_comparison_page_draws_every_run_on_one_colour_scale(browser, tmp_path: Path) -> None:
    """compare.html (templates/compare.html + compare.js): a panel per run and one colour bar; the same
    loss is the same colour in every panel (one scale), the hover reads the run's own grid, and the
    script runs offline without an error."""
    from PIL import Image

    from landscape_job.outputs.viewer import compare_html, compare_payload
    from landscape_job.plots import PlotOptions
    from landscape_job.surface.file import load_surface

    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    planes = []
    for name, scale in (("sgd", 1.0), ("sam", 4.0)):
        loss = scale * (x[None, :] ** 2 + y[:, None] ** 2) + 0.5  # 0.5 at the centre of both
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f["xcoordinates"], f["ycoordinates"] = x, y
            f["train_loss"], f["test_loss"] = loss, loss + 0.1
            f.attrs["name"] = name
        planes.append(load_surface(path))
    page = tmp_path / "compare.html"
    page.write_text(compare_html(compare_payload(planes, options=PlotOptions(log=False))), encoding="utf-8")

    v = Viewer(browser, page, plot=".panel canvas")
    assert v.page.eval_on_selector_all(".panel h2", "hs => hs.map(h => h.textContent)")[:2] == ["sgd", "sam"]
    canvases = v.page.locator(".panel canvas")
    assert canvases.count() == 3  # two runs and the colour bar
    box = canvases.nth(1).bounding_box()
    v.page.mouse.move(box["x"] + 150, box["y"] + 150)
    hover = v.text("#hover")
    assert hover.startswith("sam: x = 0.000, y = 0.000, ") and hover.endswith(" = 0.5000"), hover
    v.page.mouse.move(box["x"] + 5, box["y"] + 5)  # the top left: the run's first x, its last y
    assert v.text("#hover") == "sam: x = -1.000, y = 1.000, train_loss = 8.500"
    assert v.text("#note").startswith("one colour scale for every panel: ")
    shots = [np.asarray(Image.open(io.BytesIO(canvases.nth(i).screenshot())).convert("RGB")) for i in (0, 1)]
    assert (pixel(v, shots[0], 150, 150) == pixel(v, shots[1], 150, 150)).all()  # loss 0.5 in both: one colour
    assert (pixel(v, shots[0], 2, 2) != pixel(v, shots[1], 2, 2)).any()  # a corner: 2.5 in one, 8.5 in the other
    v.close()
