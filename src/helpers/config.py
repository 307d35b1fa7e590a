"""Run configuration as data: one frozen dataclass, three profiles (`smoke`, `demo`, `paper`), keyword overrides.

Every field can be overridden from papermill (`-p epochs 3`) or the CLI (`--epochs 3`); the resolved config is saved
as JSON beside every result, and its hash names the run directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .models import ATTENTION_KERNELS, ATTENTION_PROJECTIONS, LoraSettings
from .protocols import PROTOCOLS

__all__ = ["RunConfig", "PROFILES", "make_config"]

Mode = Literal["lora", "frozen"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a cross-validation run."""

    profile: str = "demo"
    model: str = "tiny.en"            # "tiny.en", a Hugging Face id (openai/whisper-large-v2) or a local HF folder
    data: str = "demo"                # "demo", an IEMOCAP_full_release folder, or a CSV manifest
    protocol: str = "speaker"         # speaker | session | dialog (see helpers.protocols)
    mode: Mode = "lora"               # lora: LoRA + head; frozen: head on cached frozen-encoder outputs
    max_seconds: int = 0              # input length; 0 = fitted to the longest clip (ceil, at most 30)
    rank: int = 32
    alpha: int = 64
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("v_proj",)
    epochs: int = 20
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0        # gradient clipping, 0 = off (1.0: the HF Trainer default the official code ran)
    seed: int = 42
    max_folds: int = 0                # 0 = all folds; n = the first n folds (sorted by name)
    demo_speakers: int = 12
    demo_clips: int = 6               # clips per speaker and emotion
    demo_seed: int = 0
    on_bad: str = "error"             # error | skip (see helpers.corpora.validate_corpus)
    device: str = "auto"
    precision: str = "auto"           # auto | fp32 | bf16 | fp16 (autocast; fp32 on CPU by default)
    attention: str = "sdpa"           # sdpa (fused scaled-dot-product attention) | eager
    compile: bool = False             # torch.compile the model (about 30 s of compiling first; small gain on CPU)
    tf32: bool = True                 # TF32 matmuls for fp32 work on CUDA (no effect elsewhere)
    allow_download: bool = False

    def __post_init__(self) -> None:
        targets = self.target_modules
        if isinstance(targets, str):
            targets = ATTENTION_PROJECTIONS if targets == "attention" else tuple(t.strip() for t in targets.split(","))
        object.__setattr__(self, "target_modules", tuple(targets))
        self.lora  # validates rank/alpha/dropout/targets
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"RunConfig.protocol={self.protocol!r}; choose one of {PROTOCOLS}")
        if self.mode not in ("lora", "frozen"):
            raise ValueError(f"RunConfig.mode={self.mode!r}; choose 'lora' or 'frozen'")
        if not (self.max_seconds == 0 or 1 <= self.max_seconds <= 30):
            raise ValueError(f"RunConfig.max_seconds={self.max_seconds}; 0 (fit to the clips) or 1..30")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RunConfig.{name}={getattr(self, name)} must be at least 1")
        if not self.max_grad_norm >= 0:
            raise ValueError(f"RunConfig.max_grad_norm={self.max_grad_norm} must be 0 (off) or positive")
        if not self.lr > 0:
            raise ValueError(f"RunConfig.lr={self.lr} must be positive")
        if self.on_bad not in ("error", "skip"):
            raise ValueError(f"RunConfig.on_bad={self.on_bad!r}; choose 'error' or 'skip'")
        if self.attention not in ATTENTION_KERNELS:
            raise ValueError(f"RunConfig.attention={self.attention!r}; choose one of {ATTENTION_KERNELS}")
        for name in ("compile", "tf32", "allow_download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RunConfig.{name}={getattr(self, name)!r} must be True or False")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"RunConfig.precision={self.precision!r}; choose auto, fp32, bf16 or fp16")

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout,
                            target_modules=self.target_modules)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


PROFILES: dict[str, RunConfig] = {
    # tests: a few dozen demo clips, 2 folds, 1 epoch
    "smoke": RunConfig(profile="smoke", demo_speakers=4, demo_clips=2, epochs=1, max_folds=2, lr=5e-4, rank=8,
                       alpha=16, batch_size=8),
    # CPU default: tiny.en, demo corpus, speaker folds, 4 s inputs (1 of the 288 clips is longer and is cut);
    # sized so the whole demo book builds in about 10 minutes on a 2-core laptop
    "demo": RunConfig(profile="demo", epochs=4, max_folds=4, lr=5e-4, batch_size=8, max_seconds=4),
    # the paper: large-v2, IEMOCAP, 10 folds, its hyperparameters, 30 s inputs, the official (leaky) folds
    "paper": RunConfig(profile="paper", model="openai/whisper-large-v2", data="IEMOCAP_full_release",
                       protocol="dialog", max_seconds=30, epochs=20, lr=5e-5, batch_size=8, seed=42),
}


def make_config(profile: str = "demo", **overrides: Any) -> RunConfig:
    """The `profile`'s config with `overrides` applied (unknown names are refused with the valid ones listed)."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}; choose one of {sorted(PROFILES)}")
    valid = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid ones: {sorted(valid)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PROFILES[profile], **overrides)
