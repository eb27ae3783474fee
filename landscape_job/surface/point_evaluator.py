"""The interface of a shard's worker: what the evaluate stage asks of whatever evaluates its points.

A surface's points are models θ* + aδ + bη (``surface.evaluator.Evaluator``); a series'
points are the checkpoints of a training run (``series.evaluator.SeriesEvaluator``). The
evaluate stage (resume, loop, checkpoint segments, progress, finish) is the same for
both, and reads only this: the metric names, a warm-up, values for a list of points, how
the points were evaluated (for the shard's record and log), and the running counts it
reports; ``launcher estimate`` times and measures a worker through the same interface.
Neither implementation carries attributes for the other's sake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class HowEvaluated:
    """The settings a worker ended up with (after ``warm_up``), as a shard records them."""

    precision: str
    precision_reason: str
    points_per_forward: int = 1
    compile_seconds: float = 0.0
    data_on_device: bool = True
    channels_last: bool = False

    def describe(self) -> str:
        """One log phrase with the speed settings in effect, so a slow run can be explained."""
        compiled = f", compiled in {self.compile_seconds:.1f}s" if self.compile_seconds else ""
        return (f"{self.points_per_forward} point(s) per forward, data "
                f"{'on the device' if self.data_on_device else 'streamed from host memory'}"
                f"{', channels_last' if self.channels_last else ''}{compiled}")


class PointEvaluator(Protocol):
    """What ``stages.evaluate_stage`` needs of a worker."""

    #: Where the points are evaluated.
    device: torch.device
    #: The data held for the whole shard, split by split (each with its ``size`` in samples).
    splits: Sequence[Any]
    #: The batch size in use (halved on running out of device memory).
    batch_size: int
    #: How often the batch size was halved so far.
    oom_halvings: int
    #: ``(a, b, samples)`` of each point whose logits were not finite (fp16 overflow), in order.
    nonfinite: list[tuple[float, float, int]]

    def metric_names(self) -> list[str]:
        """The values each point gives (a shard file's datasets)."""
        ...

    def warm_up(self) -> None:
        """Chooses and compiles what it needs before the first point is timed."""
        ...

    def evaluate_many(self, points: Sequence[tuple[float, float]]) -> list[dict[str, float]]:
        """The values of each point, in order."""
        ...

    def how(self) -> HowEvaluated:
        """The settings in effect (call after ``warm_up``)."""
        ...

    def resident_bytes(self) -> int:
        """Bytes held for the whole shard (weights, data, directions): ``launcher estimate``'s resident part."""
        ...

    def unconverged_points(self) -> int | None:
        """Points whose Lanczos eigensolve did not converge; None where no eigensolve runs."""
        ...
