"""Where and with what numbers are computed: the device (CUDA, MPS or CPU), mixed precision, TF32, and the library
versions and training-code format that cached results depend on."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

__all__ = ["pick_device", "resolve_device_type", "resolve_precision", "autocast", "matmul_precision",
           "library_versions", "TRAINING_FORMAT", "Precision"]

TRAINING_FORMAT = 4  # bump when training code changes what a run computes, so older cached folds are not reused

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
        raise ValueError(f"device={requested!r} was asked for but CUDA is not available here; use device='auto' or "
                         "'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={requested!r} was asked for but MPS is not available here; use device='auto' or "
                         "'cpu'")
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


def resolve_device_type(requested: str | None) -> str:
    """"cuda", "mps" or "cpu": what `requested` means here ("auto" looks), without requiring that device to exist."""
    return pick_device("auto").type if requested in ("auto", None) else torch.device(requested).type


@contextlib.contextmanager
def matmul_precision(device: torch.device, tf32: bool):
    """TF32 for fp32 matmuls and convolutions on CUDA while the block runs (the caller's settings come back)."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def library_versions() -> dict[str, str]:
    """Versions of the code that computes a result (hashed into run directories and caches)."""
    import peft
    import transformers

    from .. import __version__

    return dict(helpers=__version__, torch=torch.__version__, transformers=transformers.__version__,
                peft=peft.__version__)
