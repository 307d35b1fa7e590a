"""Pick the compute device and the matching mixed-precision context (CUDA, MPS or CPU)."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

__all__ = ["pick_device", "resolve_precision", "autocast", "Precision"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def pick_device(requested: str | torch.device | None = "auto") -> torch.device:
    """`"auto"` (or None) gives CUDA if present, else Apple MPS, else CPU; anything else is taken as given.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={requested!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={requested!r} was asked for but MPS is not available here; use device='auto' or 'cpu'")
    return device


def resolve_precision(device: torch.device, precision: Precision = "auto") -> torch.dtype:
    """The autocast dtype: on CUDA `auto` is bf16 where supported else fp16; on CPU/MPS `auto` is fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"precision={precision!r}; choose one of 'auto', 'fp32', 'bf16', 'fp16'")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device: torch.device, precision: Precision = "auto") -> contextlib.AbstractContextManager:
    """Mixed-precision context for `device`; a no-op when the resolved dtype is fp32."""
    dtype = resolve_precision(device, precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
