"""Log-mel features: the Whisper feature extractor for an input length, extraction, and the per-corpus cache
keyed by the corpus content, the clip level normalisation and the extractor's settings."""

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
from .levels import normalise_level

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
    """A hash of the corpus content: ids, labels, speakers, groups, file sizes and durations, and each file's
    content hash (the `sha256` column `validate_corpus` adds), so audio edited in place with the same size and
    duration changes the key.

    The demo corpus leaves the content hashes out, so its runs keep the keys they had: its folder is named by the
    hash of the settings that make it, and `load_demo_corpus` checks its files against the hashes recorded when it
    was built (rebuilding a damaged one)."""
    sizes = [os.path.getsize(p) for p in table["path"]]
    cols = table[["utterance", "label", "speaker", "session", "dialog"]].astype(str).values.tolist()
    parts = [cols, sizes, np.round(table["duration"].to_numpy(), 4).tolist()]
    if "sha256" in table.columns and table.attrs.get("corpus") != "demo":
        parts.append(table["sha256"].astype(str).tolist())
    return fingerprint(parts)


def feature_key(table: pd.DataFrame, extractor, level: str = "none") -> str:
    """What the log-mel features of `table` depend on: the corpus content, the level normalisation and the
    extractor's settings (`level="none"` is left out of the hash, so features cached before the setting existed
    keep their key)."""
    parts = [data_fingerprint(table), extractor.to_dict()]
    return fingerprint(parts if level == "none" else parts + [f"level={level}"])


def compute_features(table: pd.DataFrame, extractor, *, level: str = "none", cache_dir: str | Path | None = None,
                     load: bool = True) -> torch.Tensor | None:
    """Log-mel features of every utterance, (N, n_mels, frames), computed once and cached as safetensors.

    Each clip's level is first normalised by `level` (none | peak | loudness, `levels.normalise_level`).
    `load=False` only makes sure the cache file exists (a sweep driver prepares it for its workers). A cached file
    that is damaged or holds another number of clips is set aside and computed again.
    """
    path = cache_root(cache_dir) / "features" / f"{feature_key(table, extractor, level)}.safetensors"

    def build() -> torch.Tensor:
        chunks = []
        for start in progress(range(0, len(table), 32), desc="features", unit="batch", leave=False):
            waves = [normalise_level(load_audio(p), level) for p in table["path"].iloc[start:start + 32]]
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
