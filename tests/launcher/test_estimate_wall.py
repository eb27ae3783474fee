"""``launcher estimate``'s projection of a local run's wall time (issue 16): the shard's time is
the sum of its points (so the mean, not the median, of the timed points) and a wave's workers
slow each other in start-up and setup as in their points."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import spec_from
from landscape_job.checks import estimate as estimate_module
from landscape_job.checks.estimate import Estimate, describe, estimate


def test_contention_slows_a_waves_start_up_and_setup_as_much_as_its_points() -> None:
    est = Estimate(seconds_per_point=0.1, points=2601, shards=16, parallel=8, device="cpu", setup_seconds=30,
                   startup_seconds=2, merge_seconds=5, contention=1.5)
    # pre-check, prepare and merge run alone; two waves of 8 shards of <=163 points, 8 at once
    assert est.wall_seconds == pytest.approx(3 * 2 + 30 + 5 + 2 * 1.5 * (163 * 0.1 + 30 + 2))
    alone = Estimate(**{**est.__dict__, "contention": 1.0})
    assert est.wall_seconds - alone.wall_seconds == pytest.approx(2 * 0.5 * (163 * 0.1 + 30 + 2))


def test_forked_stages_pay_the_start_up_of_the_stage_server_only() -> None:
    """A local run's pre-check and stages are forked from one interpreter (landscape_job.forkserver,
    launcher.local.precheck): nothing else starts afresh."""
    est = Estimate(seconds_per_point=0.1, points=2601, shards=16, parallel=8, device="cpu", setup_seconds=30,
                   startup_seconds=2, merge_seconds=5, contention=1.5, forked=True)
    assert est.wall_seconds == pytest.approx(1 * 2 + 30 + 5 + 2 * 1.5 * (163 * 0.1 + 30))
    assert "start-up 2.0 s per interpreter (the one the pre-check and the stages are forked from)" in \
        describe(est)[0]


def test_seconds_per_point_is_the_mean_of_the_timed_points(tmp_path: Path, linear_spec: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # One slow point in ten (a burst of other work on a shared core) costs a shard its full time.
    timed = [0.01] * 9 + [0.5]
    monkeypatch.setattr(estimate_module, "_time_points", lambda *args: list(timed))
    est = estimate(spec_from(tmp_path, linear_spec), fixed_costs=False)
    assert est.seconds_per_point == pytest.approx(sum(timed) / len(timed))  # 0.059; the median would be 0.01
    # The range (10th to 90th percentile) is widened to hold the mean it is printed around.
    assert est.seconds_per_point_low == 0.01 and est.seconds_per_point_high == est.seconds_per_point
    assert est.wall_range[0] < est.wall_seconds == est.wall_range[1]
