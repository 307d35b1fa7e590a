"""Corpora laid out like the public releases, made from the demo corpus's synthesis, to rehearse a profile without
the real data: the same folder layout, file names, sample rate and clip lengths, so the readers, the input-length
fit, the folds and every chapter meet the shapes and costs of the real corpus. The speech is synthetic (espeak-ng
voices whose prosody sets the emotion), so accuracies say nothing about the real corpus; times and sizes do.

`write_ravdess_like`: RAVDESS's audio-only speech release (`Actor_NN/03-01-EE-II-SS-RR-NN.wav`, 48 kHz, 16-bit,
clips of about 3.3-4.5 s with a second of near-silence around the sentence).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import resample_poly

from ..io import atomic_directory, atomic_write_text, cache_root
from ..labels import SAMPLE_RATE
from ..progress import progress
from .corpora import load_audio
from .demo_corpus import DemoCorpusSettings, load_demo_corpus

__all__ = ["RAVDESS_CODES", "ravdess_name", "pad_to_seconds", "write_ravdess_like"]

# RAVDESS emotion codes of the classes the demo synthesis can make (02 calm and 08 surprised it cannot)
RAVDESS_CODES = {"neutral": "01", "happiness": "03", "sadness": "04", "anger": "05", "fear": "06", "disgust": "07"}
_RATE = 48000  # RAVDESS's sample rate


def ravdess_name(emotion: str, intensity: int, statement: int, repetition: int, actor: int) -> str:
    """The RAVDESS file name of an audio-only speech clip (modality 03, vocal channel 01)."""
    return f"03-01-{RAVDESS_CODES[emotion]}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"


def pad_to_seconds(wave: np.ndarray, seconds: float, lead_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """`wave` padded to `seconds` (never cut) with noise at the level of its quietest 10 ms, `lead_fraction` of the
    padding before it: recorded silence, not digital zeros."""
    n = int(round(seconds * SAMPLE_RATE))
    if wave.size >= n:
        return wave
    frames = wave[: wave.size // 160 * 160].reshape(-1, 160)
    floor = float(np.sqrt(np.min(np.mean(frames.astype(np.float64) ** 2, axis=1)))) if len(frames) else 1e-4
    pad = n - wave.size
    lead = int(pad * lead_fraction)
    noise = (rng.standard_normal(pad) * max(floor, 1e-5)).astype(np.float32)
    return np.concatenate([noise[:lead], wave, noise[lead:]])


def _clip_plan(table: pd.DataFrame, actor_offset: int) -> list[dict]:
    """RAVDESS names for a demo corpus's clips: per speaker and emotion, clip k has statement k%2+1, repetition
    k//2%2+1 and intensity k//4+1 (neutral: normal intensity only, as in RAVDESS, so its 4 first clips)."""
    speakers = sorted(table["speaker"].unique(), key=lambda s: (s[:-1], s[-1] == "F"))  # M, F alternate: odd male
    plan = []
    for i, speaker in enumerate(speakers):
        actor = actor_offset + i + 1
        for emotion, rows in table[table["speaker"] == speaker].groupby("label", sort=False):
            for k, row in enumerate(rows.sort_values("utterance").itertuples()):
                intensity = k // 4 + 1
                if intensity > 2 or (emotion == "neutral" and intensity > 1):
                    continue
                plan.append(dict(path=row.path, label=emotion, actor=actor,
                                 name=ravdess_name(emotion, intensity, k % 2 + 1, k // 2 % 2 + 1, actor)))
    return plan


def write_ravdess_like(out: str | Path | None = None, *, n_actors: int = 24, seed: int = 0,
                       cache_dir: str | Path | None = None) -> Path:
    """A RAVDESS-like speech release of `n_actors` actors (an even number up to 48) in `out` (default
    `<cache>/rehearsal/ravdess-like-<n_actors>-<seed>`), written once (atomically) and reused.

    Per actor, as RAVDESS: 4 neutral clips and 8 (2 intensities x 2 statements x 2 repetitions) of each of
    happiness, sadness, anger, fear and disgust (calm and surprised are not synthesised: 44 of RAVDESS's 60), so
    the paper's four classes have 28 clips per actor, 672 for 24 actors, as in RAVDESS. Actors come from demo
    corpora of 12 speakers each (seeds `seed`, `seed + 1`, ...): actors 13-24 reuse the voices of 1-12 with other
    pitch, rate and sentences. Odd actors are male, even female. Clips are padded with recorded-level noise to
    3.3-4.5 s (RAVDESS's range) and written at 48 kHz, 16-bit.
    """
    if n_actors < 2 or n_actors % 2 or n_actors > 48:
        raise ValueError(f"n_actors={n_actors}: an even number from 2 to 48 (12 per demo corpus, 4 corpora at most)")
    out = Path(out) if out is not None else cache_root(cache_dir) / "rehearsal" / f"ravdess-like-{n_actors}-{seed}"
    if (out / "rehearsal.json").is_file():
        return out
    plan: list[dict] = []
    for c in range(0, n_actors, 12):
        speakers = min(12, n_actors - c)
        table = load_demo_corpus(DemoCorpusSettings(seed=seed + c // 12, n_speakers=speakers,
                                                    clips_per_speaker_emotion=8,
                                                    emotions=tuple(RAVDESS_CODES)), cache_dir=cache_dir)
        plan += _clip_plan(table, actor_offset=c)
    rng = np.random.default_rng(seed)
    with atomic_directory(out) as tmp:
        for clip in progress(plan, desc="RAVDESS-like clips", unit="clip", leave=False):
            wave = pad_to_seconds(load_audio(clip["path"]), rng.uniform(3.3, 4.5), rng.uniform(0.3, 0.6), rng)
            folder = tmp / f"Actor_{clip['actor']:02d}"
            folder.mkdir(exist_ok=True)
            sf.write(folder / clip["name"], resample_poly(wave, _RATE // SAMPLE_RATE, 1).clip(-1, 1), _RATE,
                     subtype="PCM_16")
        atomic_write_text(tmp / "rehearsal.json", json.dumps(dict(
            layout="RAVDESS audio-only speech", n_actors=n_actors, seed=seed, n_clips=len(plan),
            note="synthetic speech (espeak-ng) in RAVDESS's layout, for timing and rehearsal only")))
    return out
