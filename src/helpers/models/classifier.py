"""The audio classifier: `WhisperForAudioClassification` with pretrained encoder weights, a fresh head, optional
shorter inputs and LoRA, and saving/loading it with every trained weight.

`max_seconds` < 30 builds an encoder that accepts shorter inputs (its positional embedding cut to the first
`max_seconds * 50` positions): faster, and a different model from stock Whisper. `pooling="speech"` builds the
speech-pooled classifier of `helpers.models.pooling` (another model again; the official one averages all positions).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..data.features import input_frames
from ..io import CorruptCacheError, check_tensors, load_tensors_checked
from ..labels import EMOTIONS
from .lora import LoraSettings, attach_lora
from .pooling import POOLINGS
from .weights import TINY_EN, WeightsError, resolve_whisper_source

__all__ = ["ATTENTION_KERNELS", "load_whisper_classifier", "ModelSpec", "build_classifier", "read_spec",
           "save_classifier", "load_classifier"]

ATTENTION_KERNELS = ("sdpa", "eager")
_SPEC_FILE = "model_spec.json"


def _shorten_encoder(encoder: nn.Module, config, max_seconds: int) -> None:
    """Make `encoder` accept `max_seconds` of log-mel input by keeping the first positions of its embedding."""
    positions = input_frames(max_seconds) // 2  # conv2 has stride 2
    full = encoder.embed_positions
    if positions == full.num_embeddings:
        return
    if positions > full.num_embeddings:
        raise ValueError(f"max_seconds={max_seconds} needs {positions} positions but the model has "
                         f"{full.num_embeddings}")
    short = nn.Embedding(positions, full.embedding_dim, device=full.weight.device, dtype=full.weight.dtype)
    with torch.no_grad():
        short.weight.copy_(full.weight[:positions])
    short.requires_grad_(False)
    encoder.embed_positions = short
    encoder.max_source_positions = positions
    config.max_source_positions = positions


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Run the block with torch's CPU RNG seeded, restoring the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_whisper_classifier(source: str | Path = TINY_EN, *, labels: Sequence[str] = EMOTIONS, max_seconds: int = 30,
                            allow_download: bool = False, cache_dir: str | Path | None = None,
                            seed: int | None = None, attention: str = "sdpa", pooling: str = "mean"):
    """`WhisperForAudioClassification` with pretrained encoder weights and a fresh projector/classifier.

    `max_seconds` < 30 slices the positional embedding so the encoder takes shorter inputs (a different, faster
    model than stock Whisper); `seed` fixes the head's random initialisation without touching the global RNG;
    `attention` picks the attention kernel: "sdpa" (torch's fused scaled-dot-product attention) or "eager";
    `pooling` the time pooling: "mean" (all positions, the official model) or "speech" (each clip's speech positions,
    `SpeechPooledWhisperForAudioClassification`, whose forward takes `speech_positions`).
    """
    from transformers import WhisperForAudioClassification
    from transformers.utils import logging as hf_logging

    input_frames(max_seconds)
    if attention not in ATTENTION_KERNELS:
        raise ValueError(f"attention={attention!r}; choose one of {ATTENTION_KERNELS}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}; choose one of {POOLINGS}")
    if pooling == "speech":
        from .speech_classifier import SpeechPooledWhisperForAudioClassification as WhisperForAudioClassification  # noqa: N814
    path = resolve_whisper_source(source, allow_download=allow_download, cache_dir=cache_dir)
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels={labels}: give at least two distinct class names")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is new by design; the 'newly initialised' report is noise here
    try:
        with _seeded(seed):
            model = WhisperForAudioClassification.from_pretrained(
                path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)}, dtype=torch.float32,
                attn_implementation=attention)
    finally:
        hf_logging.set_verbosity(verbosity)
    _shorten_encoder(model.encoder, model.config, max_seconds)
    model.config.pooling = pooling
    return model


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a classifier before loading trained weights into it."""

    source: str = TINY_EN
    labels: tuple[str, ...] = EMOTIONS
    max_seconds: int = 30
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    pooling: str = "mean"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        data = json.loads(text)
        lora = data.get("lora")
        return cls(source=data["source"], labels=tuple(data["labels"]), max_seconds=int(data["max_seconds"]),
                   lora=LoraSettings(**{**lora, "target_modules": tuple(lora["target_modules"])}) if lora else None,
                   pooling=data.get("pooling", "mean"))  # specs saved before pooling existed: the official mean


def build_classifier(spec: ModelSpec, *, allow_download: bool = False, cache_dir: str | Path | None = None,
                     seed: int | None = None, attention: str = "sdpa"):
    """The classifier `spec` describes: pretrained encoder, fresh head, LoRA attached if `spec.lora` is set.

    `seed` fixes both random initialisations, the head's and LoRA A's, whatever ran before in the process.
    """
    model = load_whisper_classifier(spec.source, labels=spec.labels, max_seconds=spec.max_seconds,
                                    allow_download=allow_download, cache_dir=cache_dir, seed=seed,
                                    attention=attention, pooling=spec.pooling)
    if spec.lora is None:
        return model
    with _seeded(None if seed is None else seed + 1):
        return attach_lora(model, spec.lora)


def save_classifier(model, spec: ModelSpec, directory: str | Path) -> Path:
    """Save trained weights with peft's own format (safetensors) plus the spec; frozen models save the head only."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if spec.lora is not None:
        model.save_pretrained(directory, safe_serialization=True)
    else:
        head = {f"{name}.{k}": v.detach().cpu().contiguous()
                for name in ("projector", "classifier") for k, v in getattr(model, name).state_dict().items()}
        save_file(head, directory / "head.safetensors")
    (directory / _SPEC_FILE).write_text(spec.to_json())
    return directory


def read_spec(directory: str | Path) -> ModelSpec:
    """The `ModelSpec` a `save_classifier` folder was written with (what to rebuild, before any weight)."""
    spec_file = Path(directory) / _SPEC_FILE
    if not spec_file.is_file():
        raise WeightsError(f"{spec_file} is missing: {directory} was not written by save_classifier")
    try:
        return ModelSpec.from_json(spec_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CorruptCacheError(spec_file, f"not a model spec ({type(err).__name__}: {err})") from None


def load_classifier(directory: str | Path, *, allow_download: bool = False, cache_dir: str | Path | None = None):
    """Rebuild a classifier saved by `save_classifier`; returns `(model, spec)` with every trained weight restored.

    A damaged weights file raises `CorruptCacheError` naming it (rerunning the run sets it aside and retrains).
    """
    from peft import PeftModel

    directory = Path(directory)
    spec = read_spec(directory)
    base = load_whisper_classifier(spec.source, labels=spec.labels, max_seconds=spec.max_seconds,
                                   allow_download=allow_download, cache_dir=cache_dir, pooling=spec.pooling)
    if spec.lora is not None:
        for weights in directory.glob("*.safetensors"):
            check_tensors(weights)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(base, directory), spec
    head = load_tensors_checked(directory / "head.safetensors")
    for name in ("projector", "classifier"):
        part = {k.split(".", 1)[1]: v for k, v in head.items() if k.startswith(name + ".")}
        getattr(base, name).load_state_dict(part)
    return base, spec
