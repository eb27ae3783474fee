"""The grid of (a, b) coordinates and how its points are split into shards.

Points are numbered in row-major order over (y, x): flat index ``p = j * nx + i`` for
the point (x[i], y[j]). That is the order of the (ny, nx) surface arrays, so a shard's
flat indices drop straight into ``Z.flat``. Shards are contiguous, near-equal blocks
of that numbering: shard k of N owns ``range(start_k, stop_k)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from landscape_job.base.errors import UserError, shown

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_AXIS_RE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*(\d+)\s*$")
#: The form of an axis, for the spec's JSON Schema.
AXIS_PATTERN = _AXIS_RE.pattern

#: Upper bound on the points of one surface: 4096 x 4096. Past this the surface file
#: alone runs to hundreds of MB and a typo (an extra digit) is far likelier than intent.
MAX_POINTS = 4096 * 4096
#: Coordinates must stay representable as float32 scale factors on the device.
MAX_COORDINATE = 1e30


def _quoted(text: str) -> str:
    """An axis string as messages quote it, cut short: a message never echoes an unbounded value."""
    return f'"{text}"' if len(text) <= 60 else f'"{text[:57]}..."'


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: ``num`` evenly spaced values from ``lo`` to ``hi`` inclusive."""

    lo: float
    hi: float
    num: int

    @classmethod
    def parse(cls, text: object, key: str) -> "Axis":
        """Parses the paper's ``"min:max:num"`` form, naming ``key`` on failure."""
        if not isinstance(text, str):
            raise UserError(f'{key}: expected a string "min:max:num", got {shown(text)}')
        match = _AXIS_RE.match(text)
        if match is None:
            raise UserError(f'{key}: expected "min:max:num" (e.g. "-1:1:51"), got {_quoted(text)}')
        if len(match.group(3).lstrip("0")) > 12:
            raise UserError(f'{key}: num is far too large, got {_quoted(text)}')
        lo, hi, num = float(match.group(1)), float(match.group(2)), int(match.group(3))
        if not (abs(lo) <= MAX_COORDINATE and abs(hi) <= MAX_COORDINATE):
            raise UserError(f'{key}: coordinates must lie within ±{MAX_COORDINATE:g}, got {_quoted(text)}')
        if num < 1:
            raise UserError(f'{key}: num must be at least 1, got {_quoted(text)}')
        if num > 1 and not lo < hi:
            raise UserError(f'{key}: min must be below max, got {_quoted(text)}')
        if num == 1 and lo != hi:
            raise UserError(f'{key}: a single point needs min == max, got {_quoted(text)}')
        return cls(lo, hi, num)

    def values(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.num, dtype=np.float64)

    def __str__(self) -> str:
        return f"{self.lo:g}:{self.hi:g}:{self.num}"


@dataclass(frozen=True)
class Grid:
    """The evaluation grid: an x axis and, for a 2-D surface, a y axis."""

    x: Axis
    y: Axis | None = None

    @property
    def nx(self) -> int:
        return self.x.num

    @property
    def ny(self) -> int:
        return 1 if self.y is None else self.y.num

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def size(self) -> int:
        return self.nx * self.ny

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a metric array in the surface file: (nx,) or (ny, nx)."""
        return (self.nx,) if self.y is None else (self.ny, self.nx)

    def coordinates(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) for flat point indices; b is 0 on a 1-D grid."""
        flat = np.asarray(flat, dtype=np.int64)
        xs = self.x.values()[flat % self.nx]
        ys = np.zeros_like(xs) if self.y is None else self.y.values()[flat // self.nx]
        return xs, ys

    def shard_range(self, shard: int, num_shards: int) -> range:
        """The contiguous block of flat indices that shard ``shard`` of ``num_shards`` owns."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} out of range for {num_shards} shards")
        base, extra = divmod(self.size, num_shards)
        start = shard * base + min(shard, extra)
        stop = start + base + (1 if shard < extra else 0)
        return range(start, stop)
