"""The frozen-encoder baseline: the encoder runs once per clip, its time-pooled output is cached, and only the head
trains on it (exact, because the projector is linear)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..io import atomic_tensors, cache_root, fingerprint, load_tensors_checked, read_cached
from ..models.classifier import load_whisper_classifier
from ..models.weights import resolve_whisper_source
from ..progress import progress
from .device import TRAINING_FORMAT, autocast, library_versions, resolve_precision

__all__ = ["pooled_encoder_outputs", "head_logits", "cached_frozen_outputs"]


@torch.no_grad()
def pooled_encoder_outputs(encoder, features: torch.Tensor, *, device: torch.device, batch_size: int = 16,
                           precision: str = "auto") -> torch.Tensor:
    """Time-mean of the final encoder states (after its LayerNorm), (N, d), of a frozen encoder in eval mode.

    The projector is linear, so projector(h).mean(time) == projector(h.mean(time)): the head needs only this mean,
    which is T times smaller than the states themselves (28 MB instead of 42 GB for large-v2 on IEMOCAP).
    """
    encoder.eval().to(device)
    out = []
    for start in progress(range(0, len(features), batch_size), desc="frozen encoder", unit="batch", leave=False):
        with autocast(device, precision):
            hidden = encoder(features[start:start + batch_size].to(device)).last_hidden_state
        out.append(hidden.float().mean(dim=1).cpu())
    return torch.cat(out)


def head_logits(projector, classifier, pooled: torch.Tensor) -> torch.Tensor:
    """What `WhisperForAudioClassification` does after the encoder, from time-pooled states (B, d): (B, C)."""
    return classifier(projector(pooled))


def cached_frozen_outputs(config, *, features_key: str, load_features: Callable[[], torch.Tensor],
                          max_seconds: int, device: torch.device,
                          cache_dir: str | Path | None = None) -> torch.Tensor:
    """`pooled_encoder_outputs` of the frozen pretrained encoder `config.model` for every clip, cached on disk
    (`load_features` is called only on a cache miss; a damaged cache file is set aside and computed again).

    The key covers what the numbers depend on: the features, the model's files, the input length, the device type,
    the dtype autocast resolves to there, TF32, the attention kernel, and the library versions.
    """
    source = resolve_whisper_source(config.model, allow_download=config.allow_download, cache_dir=cache_dir)
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(source).glob("*.safetensors"))
    key = fingerprint([features_key, str(source), weights, max_seconds, device.type,
                       str(resolve_precision(device, config.precision)), config.tf32 and device.type == "cuda",
                       config.attention, library_versions(), TRAINING_FORMAT])
    path = cache_root(cache_dir) / "encoder_outputs" / f"{key}.safetensors"

    def build() -> torch.Tensor:
        probe = load_whisper_classifier(config.model, max_seconds=max_seconds, allow_download=config.allow_download,
                                        attention=config.attention, cache_dir=cache_dir)
        pooled = pooled_encoder_outputs(probe.encoder, load_features(), device=device, precision=config.precision)
        atomic_tensors(path, {"pooled": pooled})
        return pooled

    return read_cached(path, lambda p: load_tensors_checked(p)["pooled"], build)  # a damaged file is rebuilt
