"""Log-mel features: the Whisper feature extractor for an input length, extraction, and the per-corpus cache
keyed by the corpus content and the extractor's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..io import (
    CorruptCacheError,
    atomic_tensors,
    cache_root,
    check_tensors,
    fingerprint,
    load_tensors_checked,
    read_cached,
)
from ..labels import SAMPLE_RATE
from ..progress import progress
from .corpora import load_audio

__all__ = ["input_frames", "whisper_feature_extractor", "extract_features", "data_fingerprint", "feature_key",
           "compute_features"]


def input_frames(max_seconds: int) -> int:
    """Log-mel frames of a `max_seconds` input (10 ms hop), after checking it is a whole number from 1 to 30."""
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, np.integer)) or not 1 <= max_seconds <= 30:
        raise ValueError(f"max_seconds={max_seconds!r}: give a whole number of seconds from 1 to 30 "
                         "(30 is the stock Whisper input; fewer seconds make a faster, different model)")
    return int(max_seconds) * 100


def whisper_feature_extractor(config, max_seconds: int = 30):
    """A 16 kHz log-mel `WhisperFeatureExtractor` whose output length matches a model built with `max_seconds`;
    `config` is the model's `WhisperConfig` (only its number of mel bins is read)."""
    from transformers import WhisperFeatureExtractor

    input_frames(max_seconds)
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE,
                                   chunk_length=int(max_seconds))


def extract_features(waves: Sequence[np.ndarray], extractor) -> torch.Tensor:
    """Log-mel features of 16 kHz mono waves (each shape (n,)), padded/truncated: (batch, n_mels, frames)."""
    for i, wave in enumerate(waves):
        if np.ndim(wave) != 1:
            raise ValueError(f"wave {i} has shape {np.shape(wave)}; expected mono samples of shape (n,)")
    out = extractor([np.asarray(w, dtype=np.float32) for w in waves], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    return out["input_features"]


def data_fingerprint(table: pd.DataFrame) -> str:
    """A hash of the corpus content: ids, labels, speakers, groups, file sizes and durations."""
    sizes = [os.path.getsize(p) for p in table["path"]]
    cols = table[["utterance", "label", "speaker", "session", "dialog"]].astype(str).values.tolist()
    return fingerprint([cols, sizes, np.round(table["duration"].to_numpy(), 4).tolist()])


def feature_key(table: pd.DataFrame, extractor) -> str:
    """What the log-mel features of `table` depend on: the corpus content and the extractor's settings."""
    return fingerprint([data_fingerprint(table), extractor.to_dict()])


def compute_features(table: pd.DataFrame, extractor, *, cache_dir: str | Path | None = None,
                     load: bool = True) -> torch.Tensor | None:
    """Log-mel features of every utterance, (N, n_mels, frames), computed once and cached as safetensors.

    `load=False` only makes sure the cache file exists (a sweep driver prepares it for its workers). A cached file
    that is damaged or holds another number of clips is set aside and computed again.
    """
    path = cache_root(cache_dir) / "features" / f"{feature_key(table, extractor)}.safetensors"

    def build() -> torch.Tensor:
        chunks = []
        for start in progress(range(0, len(table), 32), desc="features", unit="batch", leave=False):
            waves = [load_audio(p) for p in table["path"].iloc[start:start + 32]]
            chunks.append(extract_features(waves, extractor))
        features = torch.cat(chunks)
        atomic_tensors(path, {"features": features})
        return features

    def read(p: Path) -> torch.Tensor | None:
        header = check_tensors(p)
        shape = header.get("features", {}).get("shape", [])
        if not shape or shape[0] != len(table):
            raise CorruptCacheError(p, f"it holds features of shape {shape}, not of the corpus's {len(table)} clips")
        return load_tensors_checked(p)["features"] if load else None

    features = read_cached(path, read, build)
    return features if load else None
