"""Prosody measurements against signals whose pitch, level and timing are known."""

import numpy as np
import pytest

from helpers.analysis.probes import probe_uar_per_fold
from helpers.data.acoustics import clip_prosody, f0_track, frame_signal

SR = 16_000


def harmonic(f0, seconds=1.0, amplitude=0.5):
    """A voice-like periodic signal: a fundamental `f0` (Hz, scalar or per-sample array) with 5 harmonics."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (np.cumsum(np.broadcast_to(f0, t.shape)) / SR)
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    return amplitude * wave / np.abs(wave).max()


def test_frame_signal_shapes_and_content():
    x = np.arange(10.0)
    frames = frame_signal(x, 4, 3)
    assert frames.shape == (3, 4)
    np.testing.assert_array_equal(frames[1], [3, 4, 5, 6])
    assert frame_signal(x[:3], 4, 3).shape == (0, 4)


@pytest.mark.parametrize("f0", [90.0, 150.0, 220.0, 400.0])
def test_f0_of_a_periodic_signal(f0):
    track = f0_track(harmonic(f0))
    assert np.isfinite(track).mean() > 0.9
    assert np.nanmedian(track) == pytest.approx(f0, rel=0.01)


def test_silence_and_noise_are_unvoiced():
    assert np.isnan(f0_track(np.zeros(SR))).all()
    noise = np.random.default_rng(0).standard_normal(SR) * 0.1
    assert np.isfinite(f0_track(noise)).mean() < 0.05


def test_clip_prosody_reads_range_level_and_span():
    glide = harmonic(np.linspace(100, 200, SR))  # one octave in 1 s
    pad = np.zeros(SR // 2)
    p = clip_prosody(np.concatenate([pad, glide, pad]), words=4)
    assert p["f0_range_st"] == pytest.approx(12 * 0.8, abs=0.5)  # 90th - 10th percentile of a linear-in-Hz glide
    assert p["voiced_seconds"] == pytest.approx(1.0, abs=0.05)
    assert p["words_per_minute"] == pytest.approx(240, rel=0.05)
    flat = clip_prosody(harmonic(150.0, amplitude=0.5))
    assert flat["f0_range_st"] < 0.2
    louder = clip_prosody(harmonic(150.0, amplitude=1.0))
    assert louder["level_db"] - flat["level_db"] == pytest.approx(20 * np.log10(2), abs=0.01)
    assert np.isnan(clip_prosody(np.zeros(SR))["f0_median_hz"])


def test_prosody_baseline_separable_vs_shuffled():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c", "d"]), 40)
    centres = {"a": 0, "b": 3, "c": 6, "d": 9}
    features = np.stack([[centres[c] + rng.normal(0, 0.3), rng.normal()] for c in labels])
    groups = np.tile(np.arange(4), 40)
    folds = [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in range(4)]
    assert probe_uar_per_fold(features, labels, folds) == pytest.approx(np.ones(4))
    shuffled = probe_uar_per_fold(features, rng.permutation(labels), folds)
    assert shuffled.mean() < 0.5
    features[0, 0] = np.nan  # a clip with no voiced frame is still scored (as the majority class), not dropped
    assert len(probe_uar_per_fold(features, labels, folds)) == 4
