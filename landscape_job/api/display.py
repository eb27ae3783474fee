"""How results show themselves in a notebook: inline PNGs, HTML summaries, a progress line that is saved.

Jupyter shows an object by asking it for rich representations (``_repr_png_``,
``_repr_html_``, ``_ipython_display_``). Our figures are ``plots.style.NotebookFigure``s,
which answer ``_repr_png_`` themselves, so a cell ending in one shows the figure in a
fresh kernel with no ``%matplotlib`` line and without touching matplotlib's backend (a
library must never switch the backend of the user's kernel). ``Figures`` is the dict
``.plot()`` returns: it displays as every figure in it, in order.

``progress``: a tqdm bar in a terminal; in a notebook kernel one HTML line updated in
place through a display id, whose last state (100%, the time taken) is what a saved
notebook keeps: tqdm's widget saves the text of its first state, 0%.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterator

__all__ = ["Figures", "figure_png", "figure_img", "in_kernel", "progress", "Progress"]


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (white face, as the files are saved)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def figure_img(fig: Any, dpi: int = 100) -> str:
    """An ``<img>`` holding the figure inline (base64 PNG): for an HTML summary."""
    import base64

    data = base64.b64encode(figure_png(fig, dpi)).decode()
    return f"<img src='data:image/png;base64,{data}' style='max-width:100%'/>"


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (IPython with a front end that shows rich output)."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class Figures(dict):
    """``{stem: Figure}``: a dict (index it, save each), that a notebook shows as all its figures."""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        for figure in self.values():
            display(figure)

    def __repr__(self) -> str:
        return f"Figures({', '.join(self)})"


class Progress:
    """A progress line in a notebook: one display id, updated at most every ``interval`` seconds and at the end."""

    def __init__(self, total: int, desc: str, unit: str, interval: float = 0.25):
        from IPython.display import HTML, display

        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.done, self.started, self.shown = 0, time.monotonic(), 0.0
        self._html = HTML
        self.handle = display(HTML(self._line()), display_id=True)

    def _line(self) -> str:
        import html

        share = self.done / self.total if self.total else 1.0
        elapsed = time.monotonic() - self.started
        bar = f"<progress value='{self.done}' max='{max(self.total, 1)}' style='width:16em'></progress>"
        return (f"<span style='font-family:monospace'>{html.escape(self.desc)} {bar} {share:4.0%} "
                f"{self.done}/{self.total} {html.escape(self.unit)} in {elapsed:.1f} s</span>")

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.shown >= self.interval or self.done >= self.total:
            self.shown = now
            self.handle.update(self._html(self._line()))

    def close(self) -> None:
        self.handle.update(self._html(self._line()))


class _NoBar:
    """``progress=False``: no bar at all (a disabled tqdm still imports tqdm and starts its monitor thread)."""

    def update(self, count: int) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, desc: str, unit: str = "pt", enabled: bool = True) -> Iterator[Any]:
    """A bar with ``update(n)``: ``Progress`` in a notebook kernel, tqdm elsewhere, nothing when disabled."""
    if not enabled:
        yield _NoBar()
        return
    if in_kernel():
        bar = Progress(total, desc, unit)
        try:
            yield bar
        finally:
            bar.close()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit) as bar:
        yield bar
