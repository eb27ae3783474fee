"""How much the two CLIs say on stderr, and their shared flags: ``--version``, ``-q``, ``-v``.

* ``-q``/``--quiet``: errors only. Progress bars, stage logs and notes are dropped; what a
  command prints on stdout (its result: a spec, an estimate, the run's URLs) stays.
* default: progress and notes, one line per error.
* ``-v``/``--verbose``: also every worker's log as it finishes, and the traceback behind an error.

One process-wide level, set once from the flags in ``main``; code that talks on stderr asks
``info`` / ``stream`` rather than deciding itself.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Iterable, TextIO

from landscape_job import __version__

__all__ = ["QUIET", "NORMAL", "VERBOSE", "add_flags", "set_from", "level", "info", "stream"]

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = NORMAL


def add_flags(parser: argparse.ArgumentParser, commands: Iterable[argparse.ArgumentParser] = ()) -> None:
    """``--version``, ``-q`` and ``-v`` (exclusive), the same on ``launcher`` and ``landscape-job``;
    ``-q``/``-v`` also after any of ``commands`` (``launcher submit s.yaml --local -q``)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for target, default in ((parser, False), *((command, argparse.SUPPRESS) for command in commands)):
        loudness = target.add_mutually_exclusive_group()
        loudness.add_argument("-q", "--quiet", action="store_true", default=default,
                              help="errors only on stderr (no progress, no notes)")
        loudness.add_argument("-v", "--verbose", action="store_true", default=default,
                              help="also every worker's log, and the traceback behind an error")


def set_from(args: argparse.Namespace) -> None:
    global _level
    _level = QUIET if getattr(args, "quiet", False) else VERBOSE if getattr(args, "verbose", False) else NORMAL


def level() -> int:
    return _level


def info(message: str) -> None:
    """A note or progress line on stderr, unless ``-q``."""
    if _level > QUIET:
        print(message, file=sys.stderr, flush=True)


class _Nowhere(io.TextIOBase):
    """A text stream that keeps nothing (a quiet run's progress bars)."""

    def write(self, text: str) -> int:
        return len(text)

    def writable(self) -> bool:
        return True


def stream() -> TextIO:
    """Where progress bars and stage logs go: stderr, or nowhere with ``-q``."""
    return sys.stderr if _level > QUIET else _Nowhere()  # type: ignore[return-value]
