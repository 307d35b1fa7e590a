"""LoRA on the Whisper encoder via peft: settings, attaching it, and re-drawing its matrices in place."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..io import parse_list

__all__ = ["ATTENTION_PROJECTIONS", "LORA_TARGETS", "LoraSettings", "attach_lora", "redraw_lora"]

ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
LORA_TARGETS: tuple[str, ...] = (*ATTENTION_PROJECTIONS, "fc1", "fc2")  # every linear map of an encoder layer


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the encoder; defaults are the official code's (r=32, alpha=64, dropout 0.1, `v_proj` only).

    The paper's text says "attention projections": use `target_modules=ATTENTION_PROJECTIONS` for that.
    """

    rank: int = 32
    alpha: int = 64
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("v_proj",)

    def __post_init__(self) -> None:
        targets = self.target_modules
        if targets == "attention":
            targets = ATTENTION_PROJECTIONS
        targets = parse_list(targets, name="LoraSettings.target_modules")
        object.__setattr__(self, "target_modules", targets)
        unknown = [t for t in targets if t not in LORA_TARGETS]
        if not targets or unknown:
            raise ValueError(f"LoraSettings.target_modules={targets}: choose from {LORA_TARGETS}")
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"LoraSettings.rank={self.rank!r} must be a positive integer")
        if not self.alpha > 0:
            raise ValueError(f"LoraSettings.alpha={self.alpha!r} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSettings.dropout={self.dropout!r} must be in [0, 1)")


def attach_lora(model, settings: LoraSettings = LoraSettings()):
    """Wrap a `WhisperForAudioClassification` in a peft LoRA model; the projector and classifier train alongside."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), modules_to_save=["projector", "classifier"],
                        bias="none")
    with warnings.catch_warnings():  # peft 0.21 calls a transformers method deprecated in 5.x: not ours to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


@torch.no_grad()
def redraw_lora(model, *, init: str, seed: int = 0) -> None:
    """Re-initialise every LoRA A and B in place: `"official"` draws both from N(0, 0.02) as the paper's code does;
    `"peft"` uses peft's own initialisation (A Kaiming-uniform, B = 0)."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            if init == "official":
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
            elif init == "peft":
                if "lora_B" in name:
                    param.zero_()
                else:
                    bound = 1 / math.sqrt(param.shape[1])  # kaiming_uniform_(a=sqrt(5)) on (r, d_in)
                    param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * bound)
            else:
                raise ValueError(f"init={init!r}; choose 'official' or 'peft'")
