"""Prosody measured from the audio (pitch, pitch range, level, speaking rate): what separates the classes by design.

The demo corpus's "emotions" are prosody settings, so these few numbers per clip show how separable its classes
are before any model sees them, and a linear classifier on them, scored on the run's own speaker-independent
folds, is the reference a Whisper model's UAR can be read against. Pure functions on arrays, plus one that reads
a corpus table's files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import SAMPLE_RATE

__all__ = [
    "PROSODY_FEATURES",
    "frame_signal",
    "f0_track",
    "clip_prosody",
    "prosody_table",
    "prosody_by_class",
    "fold_rows",
]

# column -> label with unit (definitions: `clip_prosody` and the data chapter)
PROSODY_FEATURES: dict[str, str] = {
    "f0_median_hz": "median pitch (Hz)",
    "f0_range_st": "pitch range (semitones)",
    "level_db": "level (dB FS)",
    "voiced_seconds": "voiced span (s)",
    "words_per_minute": "speaking rate (words/min)",
}


def frame_signal(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Overlapping frames of a 1-D signal, shape (n_frames, frame); the tail that does not fill a frame is dropped."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"frame_signal needs a 1-D signal, got shape {wave.shape}")
    n = 1 + (len(wave) - frame) // hop if len(wave) >= frame else 0
    if n == 0:
        return np.zeros((0, frame))
    index = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    return wave[index]


def f0_track(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *, frame_seconds: float = 0.04,
             hop_seconds: float = 0.01, fmin: float = 60.0, fmax: float = 500.0,
             voicing_threshold: float = 0.6) -> np.ndarray:
    """Pitch per 10 ms frame in Hz (NaN where unvoiced), shape (n_frames,), by normalised autocorrelation.

    A frame is voiced when its best normalised autocorrelation peak between 1/fmax and 1/fmin exceeds
    `voicing_threshold` and its level is within 40 dB of the loudest frame; the peak lag is refined by parabolic
    interpolation. Simple and deterministic: enough to tell robot voices' prosody settings apart, not a
    research-grade pitch tracker.
    """
    frame, hop = int(round(frame_seconds * sample_rate)), int(round(hop_seconds * sample_rate))
    frames = frame_signal(wave, frame, hop)
    if len(frames) == 0:
        return np.zeros(0)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    size = int(2 ** np.ceil(np.log2(2 * frame)))
    spectrum = np.fft.rfft(frames, size, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, size, axis=1)[:, :frame]
    lo, hi = int(sample_rate / fmax), min(int(np.ceil(sample_rate / fmin)), frame - 2)
    # normalise by the energies of the overlapping parts so that a periodic frame peaks near 1 at its period
    cumulative = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    lags = np.arange(frame)
    head = cumulative[:, frame - lags]  # energy of x[0 : frame - lag]
    tail = cumulative[:, [frame]] - cumulative[:, lags]  # energy of x[lag : frame]
    norm = acf / np.sqrt(np.maximum(head * tail, 1e-20))
    window = norm[:, lo:hi + 1]
    # the first local maximum within 10% of the best peak: multiples of the period
    # peak as high as the period itself, and taking the global maximum would give octave (or deeper) errors
    interior = np.zeros_like(window, dtype=bool)
    interior[:, 1:-1] = (window[:, 1:-1] >= window[:, :-2]) & (window[:, 1:-1] > window[:, 2:])
    candidate = interior & (window >= 0.9 * window.max(axis=1, keepdims=True))
    best = np.where(candidate.any(axis=1), candidate.argmax(axis=1), window.argmax(axis=1))
    rows_all = np.arange(len(frames))
    peak = window[rows_all, best]
    lag = (best + lo).astype(np.float64)
    inner = (best > 0) & (best < window.shape[1] - 1)
    rows = np.flatnonzero(inner)
    left, mid, right = (window[rows, best[rows] + d] for d in (-1, 0, 1))
    denominator = left - 2 * mid + right
    shift = np.where(np.abs(denominator) > 1e-12, 0.5 * (left - right) / np.where(denominator == 0, 1, denominator),
                     0.0)
    lag[rows] += np.clip(shift, -0.5, 0.5)
    loud = energy > energy.max() * 10 ** (-40 / 10) if energy.max() > 0 else np.zeros(len(frames), bool)
    f0 = sample_rate / lag
    return np.where((peak > voicing_threshold) & loud, f0, np.nan)


def clip_prosody(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, *, words: int | None = None) -> dict[str, float]:
    """`PROSODY_FEATURES` of one clip (NaN where it has no voiced frame; words per minute only with `words`): the
    median and the 90th-minus-10th percentile range (semitones) of voiced-frame pitch, the RMS level of voiced
    frames (dB re full scale), the time from the first to the last voiced frame, and `words` per minute of it."""
    f0 = f0_track(wave, sample_rate)
    voiced = np.flatnonzero(np.isfinite(f0))
    if len(voiced) == 0:
        return {name: float("nan") for name in PROSODY_FEATURES}
    hop = int(round(0.01 * sample_rate))
    frames = frame_signal(wave, int(round(0.04 * sample_rate)), hop)[voiced]
    rms = np.sqrt(np.mean(frames ** 2))
    semitones = 12 * np.log2(f0[voiced])
    span = (voiced[-1] - voiced[0] + 1) * hop / sample_rate
    return {
        "f0_median_hz": float(np.median(f0[voiced])),
        "f0_range_st": float(np.percentile(semitones, 90) - np.percentile(semitones, 10)),
        "level_db": float(20 * np.log10(max(rms, 1e-10))),
        "voiced_seconds": float(span),
        "words_per_minute": float(60 * words / span) if words else float("nan"),
    }


def prosody_table(table: pd.DataFrame) -> pd.DataFrame:
    """`clip_prosody` of every row of a corpus table (reads its `path`s), with its utterance, label and speaker;
    words per minute where the table has each clip's sentence (`text`, as the demo corpus does)."""
    from ..progress import progress
    from .corpora import load_audio

    rows = []
    for row in progress(list(table.itertuples(index=False)), desc="prosody", unit="clip"):
        text = getattr(row, "text", None)
        words = len(text.split()) if isinstance(text, str) else None
        rows.append({"utterance": row.utterance, "label": row.label, "speaker": row.speaker,
                     **clip_prosody(load_audio(row.path), words=words)})
    return pd.DataFrame(rows)


def prosody_by_class(prosody: pd.DataFrame, classes) -> pd.DataFrame:
    """Mean +/- sd of each prosody feature per class (rows: features, columns: classes), as 'mean ± sd' text."""
    columns = [c for c in PROSODY_FEATURES if c in prosody and prosody[c].notna().any()]
    stats = prosody.groupby("label")[columns].agg(["mean", "std"])
    cells = {c: [f"{stats.loc[c, (f, 'mean')]:.1f} ± {stats.loc[c, (f, 'std')]:.1f}" for f in columns]
             for c in classes if c in stats.index}
    return pd.DataFrame(cells, index=[PROSODY_FEATURES[f] for f in columns]).rename_axis("feature").reset_index()


def fold_rows(utterances, folds) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of each `Fold` as positions in `utterances` (ids missing from it are skipped)."""
    position = {u: k for k, u in enumerate(utterances)}
    return [(np.array([position[u] for u in f.train if u in position], dtype=int),
             np.array([position[u] for u in f.test if u in position], dtype=int)) for f in folds]
