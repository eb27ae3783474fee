"""The progress of a run's points on stderr, drawn by tqdm.

A well-kept library rather than our own bar: tqdm knows terminal widths, rates smoothed over
the last updates, ETAs, nested and notebook displays (``tqdm.auto``), and keeps up with them.

On a terminal the bar is redrawn in place: points done/total, rate, elapsed, ETA. In a log
(stderr not a terminal: CI, tests, a launcher run by a scheduler) carriage returns would
pile up on one endless line, so the same text comes as whole lines, one per ``LOG_INTERVAL``
seconds at most and a last one when the bar closes: sparse, greppable, line-based.
"""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm

#: Seconds between lines when stderr is not a terminal.
LOG_INTERVAL = 10.0
#: Seconds between redraws on a terminal.
TTY_INTERVAL = 0.1
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:30}| {n_fmt}/{total_fmt} points  {rate_fmt}  " \
             "elapsed {elapsed}  ETA {remaining}"


class _Lines:
    """A file for tqdm that turns each in-place redraw (``\\r`` + text + padding) into one line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:  # tqdm's bare "\n" on close and its clearing writes carry no text
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def points_bar(total: int, stream: TextIO, desc: str = "evaluate") -> tqdm:
    """A bar over ``total`` points; use it as a context manager so that it always ends its line.

    Redraws are paced by time alone (``miniters=0``): the callers poll, and a poll that found
    no new points still moves elapsed and ETA on. ``position=0``: two bars in one process (a
    test runs a local and a cluster run side by side) each keep to their own lines in a log.
    """
    tty = stream.isatty()
    return tqdm(total=total, desc=desc, unit=" points", file=stream if tty else _Lines(stream),
                mininterval=TTY_INTERVAL if tty else LOG_INTERVAL, miniters=0, bar_format=BAR_FORMAT,
                ascii=None if tty else ".#", dynamic_ncols=tty, position=None if tty else 0, leave=True)


def advance_to(bar: tqdm, done: int) -> None:
    """Sets the bar to ``done`` points: the shards report totals so far, tqdm counts increments."""
    bar.update(done - bar.n)
