"""The grid of (a, b) coordinates and how its points are split into shards.

Points are numbered in row-major order over (y, x): flat index ``p = j * nx + i`` for
the point (x[i], y[j]). That is the order of the (ny, nx) surface arrays, so a shard's
flat indices drop straight into ``Z.flat``.

Which points a shard owns, and in which order it computes them, is the run's shard order
(the manifest names it): ``coarse-to-fine`` (new surface runs) deals the grid's points out
in refinement order (``refinement_order``: the corners, then the axes' midpoints, then the
quarter points, ... each level a finer lattice over the whole grid), shard k taking every
N-th point of it from the k-th on. Every shard then covers the whole grid and works coarse
to fine, so a run stopped at 25% holds a complete low-resolution surface
(``launcher status RUN --preview``). ``contiguous`` (runs prepared before it, and series,
whose checkpoints are listed in training order) gives shard k the block
``range(start_k, stop_k)`` of the numbering. Both give every shard the same number of
points, and a point's value depends only on its coordinates, so the merged surface is the
same either way; only the order of points inside a shard file differs, and merge places
values by their flat index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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


def _exact(value: float) -> str:
    """The shortest text that reads back as ``value`` (``repr``), without a trailing ``.0``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


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
    def parse(cls, value: object, key: str) -> "Axis":
        """An axis as the paper writes it, ``"min:max:num"``, or as ``[min, max, num]`` (a YAML
        list, a Python list or tuple), or as the coordinates themselves (a numpy array, evenly
        spaced); names ``key`` on failure."""
        if isinstance(value, str):
            match = _AXIS_RE.match(value)
            if match is None:
                raise UserError(f'{key}: expected "min:max:num" (e.g. "-1:1:51"), got {_quoted(value)}')
            if len(match.group(3).lstrip("0")) > 12:
                raise UserError(f'{key}: num is far too large, got {_quoted(value)}')
            return cls._checked(float(match.group(1)), float(match.group(2)), int(match.group(3)), key,
                                _quoted(value))
        if isinstance(value, (list, tuple)):
            return cls._from_triple(value, key)
        if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
            return cls._from_coordinates(value, key)
        raise UserError(f'{key}: expected "min:max:num" or [min, max, num], got {shown(value)}')

    @classmethod
    def _from_triple(cls, value: list | tuple, key: str) -> "Axis":
        """``[min, max, num]``: two numbers and a whole count."""
        text = shown(value)
        numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                      for v in value)
        if len(value) != 3 or not numbers:
            raise UserError(f"{key}: expected [min, max, num] (e.g. [-1, 1, 51]), got {text}")
        lo, hi, num = (float(v) for v in value)
        if not np.isfinite(num) or num != int(num):
            raise UserError(f"{key}: num must be a whole number, got {text}")
        if abs(num) >= 1e12:
            raise UserError(f"{key}: num is far too large, got {text}")
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise UserError(f"{key}: min and max must be finite numbers, got {text}")
        return cls._checked(lo, hi, int(num), key, text)

    @classmethod
    def _from_coordinates(cls, value: object, key: str) -> "Axis":
        """A 1-D array of evenly spaced coordinates (``np.linspace(-1, 1, 51)``) as the axis it spans."""
        try:
            coords = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected evenly spaced numbers, got {shown(value)}") from None
        if coords.ndim != 1 or coords.size == 0 or not np.isfinite(coords).all():
            raise UserError(f"{key}: expected a 1-D array of finite coordinates, got shape {coords.shape}")
        if coords.size > 1 and not np.allclose(coords, np.linspace(coords[0], coords[-1], coords.size),
                                               rtol=0, atol=1e-9 * max(abs(coords[-1] - coords[0]), 1e-300)):
            raise UserError(f"{key}: the coordinates must be evenly spaced (the grid is min:max:num); "
                            f"got {shown(coords.tolist())}")
        return cls._checked(float(coords[0]), float(coords[-1]), int(coords.size), key,
                            f"{coords.size} coordinates from {coords[0]:g} to {coords[-1]:g}")

    @classmethod
    def _checked(cls, lo: float, hi: float, num: int, key: str, text: str) -> "Axis":
        if not (abs(lo) <= MAX_COORDINATE and abs(hi) <= MAX_COORDINATE):
            raise UserError(f'{key}: coordinates must lie within ±{MAX_COORDINATE:g}, got {text}')
        if num < 1:
            raise UserError(f'{key}: num must be at least 1, got {text}')
        if num > 1 and not lo < hi:
            raise UserError(f'{key}: min must be below max, got {text}')
        if num == 1 and lo != hi:
            raise UserError(f'{key}: a single point needs min == max, got {text}')
        return cls(lo, hi, num)

    def values(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.num, dtype=np.float64)

    def __str__(self) -> str:
        """``"min:max:num"`` with each number in its shortest exact form, so a stored spec reads back the
        same coordinates (``-1``, ``0.5``, ``0.123456789``; ``:g`` would round the last to 6 digits)."""
        return f"{_exact(self.lo)}:{_exact(self.hi)}:{self.num}"


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
        """The contiguous block of flat indices that shard ``shard`` of ``num_shards`` owns
        under the ``contiguous`` order; its length is the shard's size under either order."""
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} out of range for {num_shards} shards")
        base, extra = divmod(self.size, num_shards)
        start = shard * base + min(shard, extra)
        stop = start + base + (1 if shard < extra else 0)
        return range(start, stop)

    def shard_points(self, shard: int, num_shards: int, order: str | None) -> np.ndarray:
        """The flat indices shard ``shard`` of ``num_shards`` owns, in the order it computes them.

        ``order`` is the manifest's ``shard_order`` (None: a run from before it, contiguous).
        """
        block = self.shard_range(shard, num_shards)
        if _order(order) == CONTIGUOUS:
            return np.arange(block.start, block.stop, dtype=np.int64)
        return refinement_order(self)[shard::num_shards]

    def shard_of(self, flat: np.ndarray, num_shards: int, order: str | None) -> np.ndarray:
        """The shard that owns each of the flat indices ``flat`` (each within the grid)."""
        flat = np.asarray(flat, dtype=np.int64)
        if _order(order) == CONTIGUOUS:
            base, extra = divmod(self.size, num_shards)
            # The first ``extra`` shards hold base + 1 points, the rest base.
            big = extra * (base + 1)
            return np.where(flat < big, flat // (base + 1), extra + (flat - big) // max(base, 1))
        return _refinement_rank(self)[flat] % num_shards


#: Shard k owns the block ``range(start_k, stop_k)`` of the flat numbering (runs prepared before
#: shard orders, and series).
CONTIGUOUS = "contiguous"
#: Shard k owns every N-th point of ``refinement_order`` from the k-th, computed in that order.
COARSE_TO_FINE = "coarse-to-fine"
SHARD_ORDERS = (CONTIGUOUS, COARSE_TO_FINE)


def _order(order: str | None) -> str:
    if order is None:
        return CONTIGUOUS
    if order not in SHARD_ORDERS:
        raise ValueError(f"unknown shard order {order!r}; expected one of {', '.join(SHARD_ORDERS)}")
    return order


def axis_levels(num: int) -> np.ndarray:
    """Each index's refinement level along an axis of ``num`` points, by bisection.

    Level 0 is the two ends; level 1 the midpoint of [0, num-1]; level L the midpoints of
    the intervals level L-1 left. The indices of level <= L are ~2^L + 1 nearly even points
    spanning the whole axis, whatever ``num`` is (not only powers of two plus one).
    """
    levels = np.zeros(num, dtype=np.int64)
    intervals, depth = [(0, num - 1)], 0
    while intervals:
        depth += 1
        finer = []
        for lo, hi in intervals:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                levels[mid] = depth
                finer += [(lo, mid), (mid, hi)]
        intervals = finer
    return levels


def refinement_levels(grid: Grid) -> np.ndarray:
    """The level of each flat point: the finer of its x and y levels (``axis_levels``).

    The points of level <= L form the tensor grid of both axes' level-<= L indices: a
    complete coarse surface.
    """
    lx = axis_levels(grid.nx)
    ly = axis_levels(grid.ny)
    return np.maximum(ly[:, None], lx[None, :]).ravel()


@lru_cache(maxsize=4)
def refinement_order(grid: Grid) -> np.ndarray:
    """Every flat index once, coarse to fine: level by level, and inside a level in
    bit-reversed order of its row-major listing, so a level half done is spread over the
    whole grid rather than its top half."""
    levels = refinement_levels(grid)
    by_level = np.argsort(levels, kind="stable")  # row-major inside each level
    counts = np.bincount(levels)
    pieces, start = [], 0
    for count in counts:
        pieces.append(by_level[start:start + count][_bit_reversed(int(count))])
        start += count
    order = np.concatenate(pieces).astype(np.int64)
    order.setflags(write=False)
    return order


@lru_cache(maxsize=4)
def _refinement_rank(grid: Grid) -> np.ndarray:
    """The inverse of ``refinement_order``: each flat index's place in it."""
    rank = np.empty(grid.size, dtype=np.int64)
    rank[refinement_order(grid)] = np.arange(grid.size, dtype=np.int64)
    rank.setflags(write=False)
    return rank


def _bit_reversed(count: int) -> np.ndarray:
    """0..count-1 in van der Corput order (bit-reversed binary, those >= count dropped)."""
    if count <= 2:
        return np.arange(count, dtype=np.int64)
    bits = (count - 1).bit_length()
    values = np.arange(1 << bits, dtype=np.int64)
    reversed_ = np.zeros_like(values)
    for b in range(bits):
        reversed_ |= ((values >> b) & 1) << (bits - 1 - b)
    return reversed_[reversed_ < count]
