"""The frozen-encoder baseline: the encoder runs once per clip, its time-pooled output is cached, and only the head
trains on it (exact, because the projector is linear). Pooled over all positions (the official model) or, with
`speech_positions`, over each clip's speech positions with length-bucketed batches (`pooling="speech"`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..io import atomic_tensors, cache_root, fingerprint, load_tensors_checked, read_cached
from ..models.classifier import load_whisper_classifier
from ..models.pooling import batch_to_speech, encode_speech, masked_mean
from ..models.weights import resolve_whisper_source
from ..progress import progress
from .batches import length_bucketed_batches
from .device import TRAINING_FORMAT, autocast, library_versions, resolve_precision

__all__ = ["pooled_encoder_outputs", "head_logits", "cached_frozen_outputs"]


@torch.no_grad()
def pooled_encoder_outputs(encoder, features: torch.Tensor, *, device: torch.device, batch_size: int = 16,
                           precision: str = "auto", speech_positions: torch.Tensor | None = None) -> torch.Tensor:
    """Time-mean of the final encoder states (after its LayerNorm), (N, d), of a frozen encoder in eval mode: over
    all positions, or with `speech_positions` (N,) over each clip's speech, every clip as if alone at its length.

    The projector is linear, so projector(h).mean(time) == projector(h.mean(time)): the head needs only this mean,
    which is T times smaller than the states themselves (28 MB instead of 42 GB for large-v2 on IEMOCAP).
    """
    encoder.eval().to(device)
    if speech_positions is not None:
        return _speech_pooled_outputs(encoder, features, speech_positions, device=device, batch_size=batch_size,
                                      precision=precision)
    out = []
    for start in progress(range(0, len(features), batch_size), desc="frozen encoder", unit="batch", leave=False):
        with autocast(device, precision):
            hidden = encoder(features[start:start + batch_size].to(device)).last_hidden_state
        out.append(hidden.float().mean(dim=1).cpu())
    return torch.cat(out)


@torch.no_grad()
def _speech_pooled_outputs(encoder, features: torch.Tensor, positions: torch.Tensor, *, device: torch.device,
                           batch_size: int, precision: str) -> torch.Tensor:
    """Speech-position means of the final encoder states, in length-bucketed batches cut to their longest clip."""
    positions = torch.as_tensor(positions)
    out = torch.empty(len(features), encoder.layer_norm.normalized_shape[0])
    batches = length_bucketed_batches(torch.arange(len(features)), positions, batch_size)
    for rows in progress(batches, desc="frozen encoder (speech)", unit="batch", leave=False):
        pos = positions[rows]
        with autocast(device, precision):
            hidden = encode_speech(encoder, batch_to_speech(features[rows], pos).to(device), pos.to(device))
        out[rows] = masked_mean(hidden.float(), pos.to(device)).cpu()
    return out


def head_logits(projector, classifier, pooled: torch.Tensor) -> torch.Tensor:
    """What `WhisperForAudioClassification` does after the encoder, from time-pooled states (B, d): (B, C)."""
    return classifier(projector(pooled))


def cached_frozen_outputs(config, *, features_key: str, load_features: Callable[[], torch.Tensor],
                          max_seconds: int, device: torch.device, cache_dir: str | Path | None = None,
                          speech_positions: torch.Tensor | None = None) -> torch.Tensor:
    """`pooled_encoder_outputs` of the frozen pretrained encoder `config.model` for every clip, cached on disk
    (`load_features` is called only on a cache miss; a damaged cache file is set aside and computed again).

    The key covers what the numbers depend on: the features, the model's files, the input length, the device type,
    the dtype autocast resolves to there, TF32, the attention kernel, the library versions, and the speech positions
    where `speech_positions` pools over them (the all-positions mean keeps the key it had before pooling existed).
    """
    source = resolve_whisper_source(config.model, allow_download=config.allow_download, cache_dir=cache_dir)
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(source).glob("*.safetensors"))
    key = fingerprint([features_key, str(source), weights, max_seconds, device.type,
                       str(resolve_precision(device, config.precision)), config.tf32 and device.type == "cuda",
                       config.attention, library_versions(), TRAINING_FORMAT]
                      + ([] if speech_positions is None else [["speech", torch.as_tensor(speech_positions).tolist()]]))
    path = cache_root(cache_dir) / "encoder_outputs" / f"{key}.safetensors"

    def build() -> torch.Tensor:
        probe = load_whisper_classifier(config.model, max_seconds=max_seconds, allow_download=config.allow_download,
                                        attention=config.attention, cache_dir=cache_dir)
        pooled = pooled_encoder_outputs(probe.encoder, load_features(), device=device, precision=config.precision,
                                        speech_positions=speech_positions)
        atomic_tensors(path, {"pooled": pooled})
        return pooled

    return read_cached(path, lambda p: load_tensors_checked(p)["pooled"], build)  # a damaged file is rebuilt
