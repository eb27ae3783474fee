"""plots/levels.py's arithmetic against the numbers written out: the step rule, the levels, the
colour range, the labels on the colour bar and the curves' axis, the clipping arrows.

No figure is drawn, so mutation testing (docs/testing.md) can run every test here against
each mutant of levels.py in well under a second.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from landscape_job.base.errors import UserError
from landscape_job.plots.levels import (
    MAX_LEVELS,
    contour_levels,
    convexity_ratio,
    equal_ranges,
    extend_arrows,
    formatter,
    log_contour_levels,
    log_label_fn,
    loss_label,
    loss_range,
    nice_step,
    spans_decades,
    untr,
)


# --------------------------------------------------------------------------- the step


@pytest.mark.parametrize("raw, step", [
    (0.1333, 0.2), (0.2, 0.2), (0.21, 0.25), (0.3, 0.5), (0.11, 0.2), (0.09, 0.1), (1.0, 1.0), (1.01, 2.0),
    (2.4, 2.5), (4.9, 5.0), (5.1, 10.0), (7.0, 10.0), (0.999999, 1.0), (1000.0, 1000.0), (1.0 + 1e-12, 1.0),
    (3e-7, 5e-7), (2.6e5, 5e5),
])
def test_the_step_is_the_smallest_of_1_2_2_5_5_times_a_power_of_ten_not_below_raw(raw, step) -> None:
    assert nice_step(raw) == pytest.approx(step, rel=1e-12)


@pytest.mark.parametrize("raw", [0.0, -3.0, math.nan, math.inf, -math.inf])
def test_a_step_of_nothing_is_one(raw) -> None:
    assert nice_step(raw) == 1.0


# --------------------------------------------------------------------------- linear levels


def test_line_levels_lie_inside_the_range_fill_levels_cover_it() -> None:
    # (4.1 - 0.1) / 30 = 0.133: the step is 0.2, at its multiples.
    assert contour_levels(0.1, 4.1).tolist() == [round(0.2 * k, 1) for k in range(1, 21)]
    assert contour_levels(0.1, 4.1, fill=True).tolist() == [round(0.2 * k, 1) for k in range(0, 22)]
    # Ends on a level: both included, in line and fill alike (no step beyond).
    assert contour_levels(0.0, 3.0).tolist() == [k / 10 for k in range(31)]
    assert contour_levels(0.0, 3.0, fill=True).tolist() == [k / 10 for k in range(31)]
    # Float noise rounded away: 0.1 * 3 is 0.30000000000000004, the level is 0.3.
    assert contour_levels(0.1, 0.7, 0.1).tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert contour_levels(-1.0, 1.0, 0.5).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    # A tiny step keeps its digits: 1e-8 apart, rounded at 1e-20, not at 1e-4.
    np.testing.assert_allclose(contour_levels(0.0, 3e-7), 1e-8 * np.arange(31), rtol=1e-9, atol=0)


def test_the_users_vmin_anchors_the_levels() -> None:
    assert contour_levels(0.3, 2.0, 0.5, anchor=0.3).tolist() == [0.3, 0.8, 1.3, 1.8]
    assert contour_levels(0.3, 2.0, 0.5, anchor=0.3, fill=True).tolist() == [0.3, 0.8, 1.3, 1.8, 2.3]
    assert contour_levels(0.3, 2.0, 0.5).tolist() == [0.5, 1.0, 1.5, 2.0]  # no anchor: multiples of the step


def test_a_step_wider_than_the_range_still_gives_levels() -> None:
    # One line level (1.0) at most: three, evenly over the range.
    assert contour_levels(0.9, 1.1, 1.0).tolist() == pytest.approx([0.9, 1.0, 1.1], rel=1e-12)
    assert contour_levels(0.1, 0.15, 1.0).tolist() == pytest.approx([0.1, 0.125, 0.15], rel=1e-12)
    # Fill levels: the range's own ends when no step fits.
    assert contour_levels(1e-12, 2e-12, 1.0, fill=True).tolist() == [1e-12, 2e-12]
    assert contour_levels(0.1, 0.15, 1.0, fill=True).tolist() == [0.0, 1.0]


def test_an_empty_range_is_a_programming_error() -> None:
    for lo, hi in ((1.0, 1.0), (2.0, 1.0), (0.0, math.nan)):
        with pytest.raises(ValueError, match=r"^empty level range"):
            contour_levels(lo, hi)
    with pytest.raises(ValueError, match=r"^empty level range \[1.0, 1.0\]$"):
        log_contour_levels(1.0, 1.0)


def test_too_many_levels_name_plot_vlevel_and_exactly_the_maximum_is_allowed() -> None:
    assert MAX_LEVELS == 500
    assert contour_levels(0.0, 500.0, 1.0).tolist() == [float(k) for k in range(501)]
    with pytest.raises(UserError, match=r"^plot.vlevel: 0.0001 would draw 100000 contour levels between 0 and 10 "
                                        r"\(at most 500\); use a larger plot.vlevel$"):
        contour_levels(0.0, 10.0, 0.0001)
    with pytest.raises(UserError, match=r"^plot.vlevel: 1 would draw 501 contour levels"):
        contour_levels(0.0, 501.0, 1.0)


def test_merge_coarsens_a_too_fine_vlevel_to_a_multiple_that_fits(caplog) -> None:
    # 10 / 0.001 = 10000 levels; 10000 / 499 -> every 21st: a step of 0.021, 477 levels from 0.
    with caplog.at_level(logging.WARNING, logger="landscape_job.plots.levels"):
        levels = contour_levels(0.0, 10.0, 0.001, coarsen=True)
    np.testing.assert_allclose(levels, 0.021 * np.arange(477), rtol=0, atol=1e-12)
    assert caplog.messages == ["plot.vlevel: 0.001 would draw 10000 contour levels between 0 and 10; drawn every "
                               "0.021 (at most 500 levels)"]
    # A step so small the count overflows: the range in MAX_LEVELS - 1 equal steps.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="landscape_job.plots.levels"):
        levels = contour_levels(0.0, 10.0, 1e-320, coarsen=True)
    np.testing.assert_allclose(levels, np.linspace(0.0, 10.0, 500), rtol=0, atol=1e-9)
    assert "would draw 1000000000000000000 contour levels" in caplog.messages[0]
    # Within the limit coarsen changes nothing, up to exactly MAX_LEVELS steps.
    assert contour_levels(0.0, 10.0, 0.5, coarsen=True).tolist() == [0.5 * k for k in range(21)]
    assert contour_levels(0.0, 500.0, 1.0, coarsen=True).tolist() == [float(k) for k in range(501)]
    # 998 steps: 998 / 499 = 2, so every 2nd (500 levels), not every 3rd.
    assert contour_levels(0.0, 998.0, 1.0, coarsen=True).tolist() == [2.0 * k for k in range(500)]
    # A range away from 0: 1e6 steps of 1 -> every ceil(1e6 / 499) = 2005th, 499 levels.
    coarse = contour_levels(1e6, 2e6, 1.0, coarsen=True)
    assert coarse.size == 499 and np.all(np.diff(coarse) == 2005.0) and coarse[0] == 2005.0 * 499
    # The overflow case away from 0: still (hi - lo) / 499 apart.
    np.testing.assert_allclose(np.diff(contour_levels(1.0, 11.0, 1e-320, coarsen=True)), 10.0 / 499, rtol=1e-9)


# --------------------------------------------------------------------------- log levels


def test_log_levels_take_the_densest_round_mantissas_that_give_at_most_thirty() -> None:
    # 0.02 .. 10 with all twelve mantissas is 34 levels; with 1, 1.5, 2, 3, 5, 7 it is 17.
    levels = log_contour_levels(math.log10(0.02), math.log10(10.0))
    np.testing.assert_allclose(10.0**levels, [0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7,
                                              1, 1.5, 2, 3, 5, 7, 10], rtol=1e-9)
    # Two decades: the twelve mantissas fit (1 .. 9 twice, then 100: 25 levels).
    levels = log_contour_levels(0.0, 2.0)
    dense = [m * 10.0**k for k in (0, 1) for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)] + [100.0]
    np.testing.assert_allclose(10.0**levels, dense, rtol=1e-9)
    # Exactly thirty with all twelve mantissas (1 .. 90, then 100 .. 300): kept.
    levels = log_contour_levels(0.0, math.log10(300.0))
    np.testing.assert_allclose(10.0**levels, dense[:-1] + [100, 120, 150, 200, 250, 300], rtol=1e-9)
    # Twenty decades: whole decades only (21 levels).
    np.testing.assert_allclose(log_contour_levels(0.0, 20.0), np.arange(21.0), atol=1e-9)


def test_log_fill_levels_reach_one_round_value_beyond_either_end() -> None:
    lo, hi = math.log10(0.025), math.log10(8.0)
    np.testing.assert_allclose(10.0**log_contour_levels(lo, hi), [0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7,
                                                                  1, 1.5, 2, 3, 5, 7], rtol=1e-9)
    np.testing.assert_allclose(10.0**log_contour_levels(lo, hi, fill=True),
                               [0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10],
                               rtol=1e-9)
    # Ends on round values: nothing added.
    np.testing.assert_allclose(10.0**log_contour_levels(math.log10(0.02), 1.0, fill=True),
                               [0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10],
                               rtol=1e-9)


def test_a_huge_log_range_is_drawn_every_few_decades() -> None:
    # 100 decades: even whole decades are 101 levels; every ceil(100 / 30) = 4th decade is 26.
    np.testing.assert_allclose(log_contour_levels(0.0, 100.0), 4.0 * np.arange(26), atol=1e-9)
    np.testing.assert_allclose(log_contour_levels(0.0, 100.0, fill=True), 4.0 * np.arange(26), atol=1e-9)
    np.testing.assert_allclose(log_contour_levels(-1.0, 100.0, fill=True), 4.0 * np.arange(-1, 26), atol=1e-9)
    # Away from 0: the step is from the width, ceil(100 / 30) = 4, at its multiples.
    np.testing.assert_allclose(log_contour_levels(50.0, 150.0), 4.0 * np.arange(13, 38), atol=1e-9)
    # Below 1 (losses 1e-100 .. 0.1): every 4th decade up to the top.
    np.testing.assert_allclose(log_contour_levels(-100.0, -1.0), 4.0 * np.arange(-25, 0), atol=1e-9)


def test_a_log_range_under_a_decade_gets_linear_loss_values() -> None:
    # 2 .. 3 holds three round log values (2, 2.5, 3): linear levels 2.00, 2.05, .. 3.00 instead.
    np.testing.assert_allclose(10.0**log_contour_levels(math.log10(2.0), math.log10(3.0)),
                               [2.0 + 0.05 * k for k in range(21)], rtol=1e-9)
    lines = 10.0**log_contour_levels(math.log10(2.01), math.log10(2.99))
    np.testing.assert_allclose(lines, [2.05 + 0.05 * k for k in range(19)], rtol=1e-9)
    fill = 10.0**log_contour_levels(math.log10(2.01), math.log10(2.99), fill=True)
    np.testing.assert_allclose(fill, [2.0 + 0.05 * k for k in range(21)], rtol=1e-9)
    np.testing.assert_allclose(10.0**log_contour_levels(math.log10(2.0), math.log10(3.0), fill=True),
                               [2.0 + 0.05 * k for k in range(21)], rtol=1e-9)  # 2 is lo itself: not twice
    # A lo a hair under a level (float noise within the 1e-9 of contour_levels): lo itself is the first
    # fill level, so the fill still covers the minimum.
    lo = math.log10(1.99999999999)
    fill = log_contour_levels(lo, math.log10(3.0), fill=True)
    assert fill[0] == lo and fill.size == 22
    np.testing.assert_allclose(10.0**fill[1:], [2.0 + 0.05 * k for k in range(21)], rtol=1e-9)
    # Five round values (1, 1.2, 1.5, 2, 2.5) are still too few: linear, step 0.05.
    np.testing.assert_allclose(10.0**log_contour_levels(0.0, math.log10(2.5)), [1 + 0.05 * k for k in range(31)],
                               rtol=1e-9)
    # Six (1 .. 3) are enough: the round values.
    np.testing.assert_allclose(10.0**log_contour_levels(0.0, math.log10(3.0)), [1, 1.2, 1.5, 2, 2.5, 3], rtol=1e-9)


# --------------------------------------------------------------------------- the colour range


def test_the_colour_range_keeps_the_data_or_clips_at_five_medians() -> None:
    assert loss_range(np.array([1.0, 2.0, 3.0])) == (1.0, 3.0)
    # min 0, median 1: the top is 0 + 5 * (1 - 0) = 5, not the spike at 100.
    assert loss_range(np.array([0.0, 1.0, 1.0, 1.0, 100.0])) == (0.0, 5.0)
    # The median at the minimum: no robust bound, the maximum.
    assert loss_range(np.array([1.0, 1.0, 1.0, 5.0])) == (1.0, 5.0)
    # Non-finite values are not data.
    assert loss_range(np.array([np.nan, 1.0, np.inf, 3.0, -np.inf, 2.0])) == (1.0, 3.0)
    assert loss_range(np.array([np.nan, np.inf])) is None


def test_the_log_colour_range_clips_in_loss_units() -> None:
    # In loss units: min 1, median 2, so 1 + 5 = 6; the spike (1e6, six decades) is clipped there.
    lo, hi = loss_range(np.array([1.0, 2.0, 2.0, 2.0, 1e6]), log=True)
    assert (lo, hi) == (0.0, pytest.approx(math.log10(6.0), rel=1e-12))
    assert loss_range(np.array([1.0, 10.0, 100.0]), vmax=1000.0, log=True) == (0.0, 3.0)
    assert loss_range(np.array([1.0, 10.0, 100.0]), vmin=10.0, vmax=1000.0, log=True) == (1.0, 3.0)
    assert loss_range(np.array([0.0, -1.0, np.nan]), log=True) is None  # nothing positive
    assert loss_range(np.array([0.0, 10.0, 100.0]), log=True) == (1.0, 2.0)  # the zero left out


def test_the_users_bounds_are_kept_or_named_when_they_leave_no_range() -> None:
    data = np.array([1.0, 2.0, 3.0])
    assert loss_range(data, vmax=2.5) == (1.0, 2.5)
    assert loss_range(data, vmin=0.5, vmax=2.5) == (0.5, 2.5)
    assert loss_range(data, vmin=2.0) == (2.0, 3.0)
    assert loss_range(data, vmin=-1.0, vmax=10.0) == (-1.0, 10.0)
    with pytest.raises(UserError, match=r"^plot.vmax: 0.5 is not above the smallest loss in the surface \(1\); "
                                        r"raise plot.vmax or set plot.vmin$"):
        loss_range(data, vmax=0.5)
    with pytest.raises(UserError, match=r"^plot.vmax: 1 is not above the smallest loss"):
        loss_range(data, vmax=1.0)
    with pytest.raises(UserError, match=r"^plot.vmax: 5 is not above the smallest loss in the surface \(10\)"):
        loss_range(np.array([10.0, 100.0]), vmax=5.0, log=True)
    with pytest.raises(UserError, match=r"^plot.vmin: 3.5 is not below the largest loss in the surface \(3\); "
                                        r"lower plot.vmin or set plot.vmax$"):
        loss_range(data, vmin=3.5)
    with pytest.raises(UserError, match=r"^plot.vmin: 1000 is not below the largest loss in the surface \(100\)"):
        loss_range(np.array([10.0, 100.0]), vmin=1000.0, log=True)
    # The robust top at the user's vmin, or under it: the data's maximum instead.
    assert loss_range(np.array([0.0, 1.0, 1.0, 1.0, 100.0]), vmin=5.0) == (5.0, 100.0)
    assert loss_range(np.array([0.0, 1.0, 1.0, 1.0, 100.0]), vmin=6.0) == (6.0, 100.0)
    # vmin at the maximum of a constant surface: widened, not refused.
    assert loss_range(np.full(3, 2.0), vmin=2.0) == pytest.approx((1.9, 2.1), rel=1e-12)
    assert loss_range(np.full(3, 2.0), vmin=1.0) == (1.0, 2.0)


def test_log_is_the_rule_at_two_decades_and_never_for_a_bad_bound() -> None:
    assert spans_decades(np.array([1.0, 100.0]))
    assert not spans_decades(np.array([1.0, 99.0]))
    assert not spans_decades(np.array([1.0, 100.0]), vmin=0.0)
    assert not spans_decades(np.array([1.0, 100.0]), vmin=-1.0)
    assert spans_decades(np.array([1.0, 100.0]), vmin=0.5)
    assert not spans_decades(np.array([1.0, 100.0]), vmax=0.5)  # refused by the linear path, named there
    assert not spans_decades(np.array([1.0, 100.0]), vmax=50.0)
    assert spans_decades(np.array([np.nan, 1.0, 1000.0]))
    assert not spans_decades(np.array([-1.0, 1000.0]))
    # A zero in the data is never log, even with a positive vmin (whose range would span 3 decades).
    assert not spans_decades(np.array([0.0, 500.0, 1000.0]), vmin=1.0)


def test_untr_is_ten_to_the_value_only_in_log_units() -> None:
    assert untr(2.0, True) == 100.0 and untr(2.0, False) == 2.0


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("value, label", [
    (0.05, "0.05"), (1.5, "1.5"), (300.0, "300"), (1.0, "1"), (0.001, "0.001"), (0.00123, "0.00123"),
    (12.345, "12.3"), (123.456, "123"), (1000.0, "1000"), (1500.0, "1500"), (1234.56, "1235"), (9990.0, "9990"),
    (1e-4, "$10^{-4}$"), (1e4, "$10^{4}$"), (1e6, "$10^{6}$"), (3e6, "$3\\times10^{6}$"),
    (2.5e-5, "$2.5\\times10^{-5}$"), (2.3456e7, "$2.3\\times10^{7}$"),
])
def test_a_loss_label_is_a_short_number_or_a_power_of_ten(value, label) -> None:
    assert loss_label(math.log10(value)) == label


def test_a_loss_labels_digits_follow_sig() -> None:
    assert loss_label(math.log10(1.23456), 5) == "1.2346"
    assert loss_label(math.log10(1.23456), 2) == "1.2"
    assert loss_label(math.log10(2.3456e7), 4) == "$2.35\\times10^{7}$"
    assert loss_label(math.log10(2.3456e7), 2) == "$2\\times10^{7}$"
    assert loss_label(math.log10(2.3456e7), 1) == "$2\\times10^{7}$"  # at least one digit
    assert loss_label(math.log10(1.0000001e6)) == "$10^{6}$"  # a mantissa within 1e-6 of 1
    assert loss_label(math.log10(1.00001e6), 7) == "$1.00001\\times10^{6}$"


def test_log_labels_take_just_enough_digits_to_tell_the_levels_apart() -> None:
    fn = log_label_fn(np.log10([1.001, 1.002, 1.003]))  # "1" each with 3 digits, apart with 4
    assert fn(math.log10(1.002)) == "1.002" and fn(math.log10(1.23456)) == "1.235"
    fn = log_label_fn(np.log10([0.1, 0.2, 0.5]))
    assert fn(math.log10(1.23456)) == "1.23"
    # A repeated level is one level: three digits still tell 1 and 10 apart.
    fn = log_label_fn(np.array([0.0, 0.0, 1.0]))
    assert fn(math.log10(1.23456)) == "1.23"
    # Levels within 1e-12 (log10 units) are one level: float noise.
    fn = log_label_fn(np.array([0.0, 3e-13, 1.0]))
    assert fn(math.log10(1.23456)) == "1.23"
    # Never apart (one value twice, within rounding): the most digits tried, 7.
    fn = log_label_fn(np.log10([1.0, 1.0 + 1e-9]))
    assert fn(math.log10(1.23456789)) == "1.234568"


def test_level_decimals_are_absolute_to_the_step() -> None:
    """Decimals tell levels apart at 1/1000 of their step, whatever their size (no relative tolerance)."""
    from landscape_job.plots.levels import level_decimals

    assert level_decimals(np.array([1e5, 1e5 + 0.5, 1e5 + 1.0])) == 1  # 100000.5 is not 100000
    assert level_decimals(np.array([0.0, 1.00001, 2.00002])) == 0  # 1e-5 of a step of 1: noise


def test_the_level_formatter_is_log_labels_or_fixed_decimals() -> None:
    assert formatter(np.array([0.0, 0.5, 1.0]), False)(0.75) == "0.8"
    assert formatter(np.array([0.0, 0.25, 0.5]), False)(1.0) == "1.00"
    assert formatter(np.array([0.0, 1.0, 2.0]), False)(1.4) == "1"
    assert formatter(np.log10([1.001, 1.002]), True)(math.log10(1.002)) == "1.002"


def test_a_clipping_arrow_points_where_values_leave_the_range() -> None:
    assert extend_arrows(np.array([1.0, 2.0]), 1.0, 2.0) == "neither"
    assert extend_arrows(np.array([0.5, 2.0]), 1.0, 2.0) == "min"
    assert extend_arrows(np.array([1.0, 2.5]), 1.0, 2.0) == "max"
    assert extend_arrows(np.array([0.5, 2.5, np.nan]), 1.0, 2.0) == "both"
    assert extend_arrows(np.array([np.nan, np.inf, -np.inf]), 1.0, 2.0) == "neither"
    assert extend_arrows(np.array([]), 1.0, 2.0) == "neither"
    # Float noise is not clipping: 1e-12 of the bound (at least of 1).
    assert extend_arrows(np.array([1.0 - 5e-13, 2.0 + 1e-12]), 1.0, 2.0) == "neither"
    assert extend_arrows(np.array([1.0 - 2e-12, 2.0]), 1.0, 2.0) == "min"
    assert extend_arrows(np.array([1.0, 2.0 + 5e-12]), 1.0, 2.0) == "max"
    assert extend_arrows(np.array([0.0, 1.0 + 1.5e-12]), 0.0, 1.0) == "max"  # 1e-12 of at least 1
    assert extend_arrows(np.array([1e6 - 5e-7, 3e6 + 2e-6]), 1e6, 3e6) == "neither"
    assert extend_arrows(np.array([1e6 - 2e-6, 3e6 + 4e-6]), 1e6, 3e6) == "both"
    assert extend_arrows(np.array([-1e6 - 5e-7, 0.0]), -1e6, 0.0) == "neither"
    assert extend_arrows(np.array([0.0, 3e-13]), 0.0, 1e-13) == "neither"
    assert extend_arrows(np.array([-2e-12, 0.0]), 0.0, 1e-13) == "min"


def test_equal_ranges_are_equal_within_a_millionth_and_not_flat() -> None:
    assert equal_ranges(np.array([-1.0, 1.0]), np.array([0.0, 2.0]))
    assert equal_ranges(np.array([0.0, 0.5]), np.array([1.0, 1.5]))  # ranges under 1
    assert equal_ranges(np.array([-1.0, 1.0]), np.array([0.0, 2.0 + 1e-7]))
    assert not equal_ranges(np.array([-1.0, 1.0]), np.array([0.0, 2.0 + 1e-5]))
    assert not equal_ranges(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert not equal_ranges(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    assert not equal_ranges(np.array([1.0, 1.0]), np.array([0.0, 1.0]))


def test_a_heatmap_of_two_rows_is_as_tall_as_their_distance() -> None:
    from landscape_job.plots.levels import heatmap_image

    _, extent = heatmap_image(np.array([0.0, 1.0, 2.0]), np.array([0.0, 3.0]), np.zeros((2, 3)))
    assert extent == (-0.5, 2.5, -1.5, 4.5)


def test_the_convexity_ratio_is_nan_where_lambda_max_is_zero_or_not_finite() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # x/0 and 0/0 are expected here: no RuntimeWarning in a pod's log
        ratio = convexity_ratio(np.array([2.0, 0.0, -1.0, np.nan, 4.0, 0.0]), np.array([-1.0, -1.0, -3.0, 1.0, np.nan, 0.0]))
    np.testing.assert_array_equal(ratio, [0.5, np.nan, 3.0, np.nan, np.nan, np.nan])
    assert ratio.dtype == np.float64
