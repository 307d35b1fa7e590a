"""Clip level normalisation before the log-mel: Whisper's log-mel features are not level-invariant, and a corpus's
clips can span 40 dB for reasons that have nothing to do with emotion (microphone distance, gain).

Three methods (the `level` setting): `none` keeps each clip as recorded (the official code's choice and the
default); `peak` scales each clip so its largest sample is at `PEAK_DBFS`; `loudness` scales it so the RMS of its
active frames (20 ms frames within `ACTIVE_RANGE_DB` of the loudest) is at `LOUDNESS_DBFS`. The active-frame RMS
is a simple speech-level estimate in the spirit of ITU-T P.56's active speech level; it needs no library and works
on clips shorter than the 400 ms blocks of an ITU-R BS.1770 (LUFS) meter. Pure functions on arrays.
"""

from __future__ import annotations

import numpy as np

from ..labels import SAMPLE_RATE

__all__ = ["LEVEL_METHODS", "PEAK_DBFS", "LOUDNESS_DBFS", "ACTIVE_RANGE_DB", "peak_dbfs", "active_rms_dbfs",
           "normalise_level"]

LEVEL_METHODS = ("none", "peak", "loudness")
PEAK_DBFS = -1.0  # peak target: 1 dB of headroom below full scale
LOUDNESS_DBFS = -23.0  # active-speech RMS target (typical of broadcast speech; at most about 20 dB below its peak)
ACTIVE_RANGE_DB = 40.0  # frames within this many dB of the loudest 20 ms frame count as active
_SILENT = 1e-10  # a clip whose samples are all below this is left as it is (nothing to scale)


def _db(x: float) -> float:
    return float(20.0 * np.log10(max(x, _SILENT)))


def peak_dbfs(wave: np.ndarray) -> float:
    """The largest absolute sample in dB relative to full scale (1.0 = 0 dBFS)."""
    wave = np.asarray(wave, dtype=np.float64)
    return _db(float(np.max(np.abs(wave)))) if wave.size else _db(0.0)


def active_rms_dbfs(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *, frame_seconds: float = 0.02,
                    active_range_db: float = ACTIVE_RANGE_DB) -> float:
    """RMS level (dBFS, a full-scale sine reads -3) of the 20 ms frames within `active_range_db` of the loudest.

    Pauses and silence padding do not dilute it, so two recordings of one sentence with different pause lengths
    read the same level. A clip shorter than a frame is measured as one frame.
    """
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"active_rms_dbfs needs a 1-D wave, got shape {wave.shape}")
    n = max(1, int(round(frame_seconds * sample_rate)))
    usable = (wave.size // n) * n or wave.size
    frames = wave[:usable].reshape(-1, min(n, usable)) if usable else np.zeros((1, 1))
    power = np.mean(frames ** 2, axis=1)
    loudest = float(np.max(power))
    if loudest <= _SILENT ** 2:
        return _db(0.0)
    active = power[power >= loudest * 10 ** (-active_range_db / 10)]
    return float(10.0 * np.log10(np.mean(active)))


def normalise_level(wave: np.ndarray, method: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`wave` scaled by one gain chosen by `method` (none | peak | loudness), float32; a silent clip is returned
    unchanged. Scaling by one gain keeps every spectral shape and changes only the level Whisper sees; samples are
    floats, so a gain that lifts a peak past 1.0 does not clip."""
    if method not in LEVEL_METHODS:
        raise ValueError(f"level={method!r}: choose one of {', '.join(LEVEL_METHODS)}")
    wave = np.asarray(wave, dtype=np.float32)
    if method == "none" or wave.size == 0 or float(np.max(np.abs(wave))) <= _SILENT:
        return wave
    if method == "peak":
        gain_db = PEAK_DBFS - peak_dbfs(wave)
    else:
        gain_db = LOUDNESS_DBFS - active_rms_dbfs(wave, sample_rate)
    return (wave * np.float32(10 ** (gain_db / 20))).astype(np.float32)
