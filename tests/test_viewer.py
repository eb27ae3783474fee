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

from landscape_job.exports import write_exports

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

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1000, "height": 820})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.box = self.page.locator("#plot").bounding_box()

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
