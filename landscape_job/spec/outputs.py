"""What merge writes beside surface.h5: the names of the figure formats and the exports, and
``plot.formats`` checked once.

Why a key: at 10^6 points the PDFs and the VTK file cost most of a merge (docs/performance.md,
issue 16), and a run that only wants the viewer or the PNGs should not pay for them. Unset,
merge writes what it always did, except PDF for 2-D grids whose figures are drawn thinned
(``PDF_DEFAULT_MAX_LINES``). No matplotlib here: ``spec`` checks the key without loading it.
"""

from __future__ import annotations

from typing import Iterable

from landscape_job.base.errors import UserError, shown

#: Formats matplotlib draws the figures in (all vector or lossless).
FIGURE_FORMATS = ("png", "pdf", "svg", "eps", "ps")
#: The exports beside the figures: ParaView's ``surface.vtp`` and the offline viewer ``surface.html``.
EXPORT_FORMATS = ("vtp", "html")
#: What merge writes when ``plot.formats`` is unset (and what ``launcher plot`` draws by default).
DEFAULT_OUTPUTS = ("png", "pdf", "vtp", "html")
#: Above this many grid lines on an axis the figures are drawn thinned (``plots.figures.MAX_DRAWN``,
#: the same number; a test holds them equal), so a PDF is no longer every point, and at 10^6
#: points it was the largest part of a merge (8.6 s of ~14 s, docs/performance.md): unset
#: ``plot.formats`` leaves PDF out there. Naming ``pdf`` in ``plot.formats`` still draws it.
PDF_DEFAULT_MAX_LINES = 501


def checked_outputs(raw: object, where: str = "plot.formats") -> tuple[str, ...]:
    """``raw`` (one name or a list, e.g. ``[png, html]``) as known names, each once, in order;
    one line naming ``where`` for anything else (the JSON Schema's enum: lower case, no dot)."""
    names = (raw,) if isinstance(raw, str) else raw
    if not isinstance(names, (list, tuple)):
        raise UserError(f"{where}: expected a list of formats, got {shown(raw)}")
    known = FIGURE_FORMATS + EXPORT_FORMATS
    out: list[str] = []
    for name in names:
        if name not in known:
            raise UserError(f"{where}: unknown format {shown(name)}; choose from {', '.join(known)}")
        if name not in out:
            out.append(name)
    if not out:
        raise UserError(f"{where}: name at least one of {', '.join(known)}")
    return tuple(out)


def default_outputs(lines: int) -> tuple[str, ...]:
    """What merge writes with ``plot.formats`` unset, for a grid of at most ``lines`` lines an axis."""
    return tuple(f for f in DEFAULT_OUTPUTS if f != "pdf" or lines <= PDF_DEFAULT_MAX_LINES)


def split_outputs(outputs: Iterable[str] | None, lines: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(figure formats, exports) of ``outputs``; None: the defaults for ``lines`` lines an axis."""
    chosen = tuple(default_outputs(lines) if outputs is None else outputs)
    return (tuple(f for f in chosen if f in FIGURE_FORMATS), tuple(f for f in chosen if f in EXPORT_FORMATS))
