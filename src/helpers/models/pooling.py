"""Speech pooling: a Whisper classifier that averages its projector output over each clip's speech positions only,
computing every clip as if it ran alone at its own length (issue 18).

The official classifier (`pooling="mean"`, HF's `WhisperForAudioClassification`) pads every clip to the input length
(30 s for the paper) and averages over all 1500 positions, padding included. The speech-pooled classifier
(`helpers.models.speech_classifier`) is a different model, defined clip by clip: the log-mel frames of the clip's
speech (`speech_positions` whole encoder positions, 20 ms each), the positional embedding sliced to that length,
self-attention over those positions, the projector output averaged over them. In a batch, clips are cut to the
batch's longest clip; each shorter clip's features beyond its speech are zeroed (what the convolutions' zero padding
gives a clip alone) and its padding positions are masked out of every key. Hence batched results equal per-clip ones
to float tolerance, and a batch of 3 s clips costs 3 s of compute, which makes length-bucketed batches
(`helpers.training.batches`) pay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["POOLINGS", "ENCODER_POSITION_SECONDS", "speech_positions", "speech_key_mask", "batch_to_speech",
           "encode_speech", "masked_mean", "is_speech_pooled", "model_inputs"]

POOLINGS = ("mean", "speech")  # mean: the official all-positions mean; speech: speech positions only
ENCODER_POSITION_SECONDS = 0.02  # conv2 has stride 2 over 10 ms mel frames


def speech_positions(durations, n_positions: int) -> np.ndarray:
    """Encoder positions that hold each clip's speech: ceil(duration / 20 ms), at least 1, at most `n_positions`
    (N,) ints; a clip longer than the input is cut at it, as its features are."""
    seconds = np.asarray(durations, dtype=float)
    return np.clip(np.ceil(seconds / ENCODER_POSITION_SECONDS), 1, n_positions).astype(int)


def speech_key_mask(positions: torch.Tensor, length: int, *,
                    additive_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Attention mask (B, 1, 1, length) letting every query attend to the speech keys of its clip only: boolean
    (True = attend, for sdpa), or additive (0 / the dtype's minimum, for eager attention) with `additive_dtype`."""
    keep = torch.arange(length, device=positions.device)[None, :] < positions[:, None]
    if additive_dtype is None:
        return keep[:, None, None, :]
    return torch.zeros(keep.shape, dtype=additive_dtype, device=positions.device).masked_fill(
        ~keep, torch.finfo(additive_dtype).min)[:, None, None, :]


def batch_to_speech(features: torch.Tensor, positions: torch.Tensor, *, cut: bool = True) -> torch.Tensor:
    """Log-mel features (B, n_mels, frames) with each clip's frames beyond its speech set to zero (what the
    encoder's zero-padded convolutions see of a clip alone), cut to the batch's longest clip (2 x its positions
    frames) unless `cut=False` keeps the input length (analyses that compare positions across models)."""
    positions = torch.as_tensor(positions)
    frames = 2 * int(positions.max())
    if frames > features.shape[-1]:
        raise ValueError(f"speech positions up to {int(positions.max())} need {frames} log-mel frames; the features "
                         f"have {features.shape[-1]}")
    kept = features[..., :frames] if cut else features
    keep = torch.arange(kept.shape[-1], device=kept.device)[None, :] < 2 * positions.to(kept.device)[:, None]
    return kept * keep[:, None, :].to(kept.dtype)


def model_inputs(model, features: torch.Tensor, positions=None) -> dict:
    """Keyword inputs of `model` for a batch: `input_features` alone for the official mean-pooled classifier; for a
    speech-pooled one the features zeroed beyond each clip's speech (input length kept) and `speech_positions`,
    which must then be given (B,)."""
    if not is_speech_pooled(model):
        return {"input_features": features}
    if positions is None:
        raise ValueError("this classifier pools over speech positions (pooling='speech'): pass each clip's "
                         "speech_positions")
    positions = torch.as_tensor(positions, device=features.device)
    return {"input_features": batch_to_speech(features, positions, cut=False), "speech_positions": positions}


def masked_mean(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, d) over the first `positions[b]` steps of each row: (B, d)."""
    keep = (torch.arange(x.shape[1], device=x.device)[None, :] < positions.to(x.device)[:, None]).to(x.dtype)
    return (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)


def encode_speech(encoder, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Whisper encoder states (B, T, d) of `features` (B, n_mels, 2T) whose clip b holds `positions[b]` speech
    positions: the encoder's own layers, the positional embedding sliced to T and padding keys masked out, so each
    clip's speech states are those of the clip alone (features beyond its speech must be zero: `batch_to_speech`)."""
    length = features.shape[-1] // 2
    if length > encoder.embed_positions.num_embeddings:
        raise ValueError(f"{features.shape[-1]} log-mel frames need {length} positions; the encoder has "
                         f"{encoder.embed_positions.num_embeddings}")
    positions = torch.as_tensor(positions, device=features.device)
    x = nn.functional.gelu(encoder.conv1(features))
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[:length]
    x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
    eager = getattr(encoder.config, "_attn_implementation", "sdpa") == "eager"
    mask = speech_key_mask(positions, length, additive_dtype=torch.float32 if eager else None)
    for layer in encoder.layers:
        out = layer(x, mask)
        x = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(x)


def is_speech_pooled(model) -> bool:
    """Whether `model` (plain or peft-wrapped) pools over speech positions (takes `speech_positions`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.config, "pooling", "mean") == "speech"
