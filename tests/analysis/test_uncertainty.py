"""Intervals and the verdict rule, on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.uncertainty import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    UNTESTABLE,
    Interval,
    bootstrap,
    combine,
    judge,
    judge_band,
)


def test_judge_reads_the_whole_interval():
    assert judge(Interval(0.3, 0.1, 0.5), 0.0) == HOLDS
    assert judge(Interval(-0.3, -0.5, -0.1), 0.0) == FAILS
    assert judge(Interval(0.1, -0.1, 0.3), 0.0) == INCONCLUSIVE
    assert judge(Interval(-0.3, -0.5, -0.1), 0.0, "below") == HOLDS
    assert judge(Interval(0.3, 0.1, 0.5), 0.0, "below") == FAILS
    assert judge(Interval.undefined(), 0.0) == UNTESTABLE
    with pytest.raises(ValueError, match="side"):
        judge(Interval(1, 0, 2), 0.0, "sideways")


def test_judge_band_and_combine():
    assert judge_band(Interval(0.9, 0.85, 0.95), 0.8, 1.0) == HOLDS
    assert judge_band(Interval(0.5, 0.4, 0.6), 0.8, 1.0) == FAILS
    assert judge_band(Interval(0.8, 0.7, 0.9), 0.8, 1.0) == INCONCLUSIVE
    assert combine(HOLDS, HOLDS) == HOLDS
    assert combine(HOLDS, INCONCLUSIVE) == INCONCLUSIVE
    assert combine(INCONCLUSIVE, FAILS) == FAILS
    assert combine(HOLDS, UNTESTABLE) == UNTESTABLE


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(60):
        data = rng.normal(1.0, 1.0, 40)
        iv = bootstrap([len(data)], lambda _u, idx, d=data: float(d[idx].mean()), n_boot=300, seed=trial)
        hits += iv.low <= 1.0 <= iv.high
        assert iv.low < iv.value < iv.high and iv.value == pytest.approx(data.mean())
    assert 50 <= hits <= 60  # nominal 57 of 60


def test_two_level_bootstrap_widens_with_between_unit_spread():
    rng = np.random.default_rng(1)
    same = [rng.normal(0, 1, 30) for _ in range(4)]
    spread = [d + shift for d, shift in zip(same, (-2.0, -1.0, 1.0, 2.0))]

    def width(units):
        iv = bootstrap([len(u) for u in units], lambda u, idx: float(units[u][idx].mean()), n_boot=300)
        return iv.high - iv.low

    assert width(spread) > 2 * width(same)


def test_paired_contrast_is_narrower_than_the_parts():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 50)
    treated = base + 0.3 + rng.normal(0, 0.05, 50)
    iv = bootstrap([50], lambda _u, i: float((treated[i] - base[i]).mean()), n_boot=300)
    assert judge(iv, 0.0) == HOLDS and iv.high - iv.low < 0.1


def test_units_only_resampling_and_bad_input():
    values = np.array([0.1, 0.2, 0.3, 0.4])
    iv = bootstrap([1] * 4, lambda u, _i: float(values[u]), n_boot=200, resample_clips=False)
    assert iv.value == pytest.approx(0.25) and 0.1 <= iv.low < iv.high <= 0.4
    with pytest.raises(ValueError, match="at least one unit"):
        bootstrap([], lambda u, i: 0.0)
    assert not bootstrap([5], lambda u, i: float("nan")).defined
