"""The CTranslate2 reader on files written here byte by byte, with known content."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from helpers.models.ctranslate2 import Ct2FormatError, read_ct2_model


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path, variables: dict[str, tuple[int, np.ndarray]], aliases: dict[str, str], version: int = 6) -> bytes:
    """Write a model.bin in CTranslate2's layout; `variables` maps name -> (dtype code, array)."""
    out = struct.pack("<I", version) + _string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, (code, array) in variables.items():
        out += _string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
        raw = array.tobytes()
        out += struct.pack("<B", code) + struct.pack("<I", len(raw)) + raw
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases.items())
    path.write_bytes(out)
    return out


@pytest.fixture
def content():
    rng = np.random.default_rng(0)
    return {
        "encoder/conv1/weight": (4, rng.standard_normal((6, 2, 3)).astype("<f2")),
        "encoder/num_heads": (2, np.array(3, dtype="<i2")),
        "decoder/activation": (1, np.array(1, dtype="i1")),
        "x/f32": (0, rng.standard_normal((2, 5)).astype("<f4")),
        "x/i32": (3, np.arange(7, dtype="<i4")),
    }


def test_round_trip_reads_every_variable_exactly(tmp_path, content):
    write_ct2(tmp_path / "model.bin", content, {"decoder/projection/weight": "x/f32"})
    model = read_ct2_model(tmp_path / "model.bin")
    assert (model.version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert list(model.variables) == list(content)
    for name, (_, array) in content.items():
        np.testing.assert_array_equal(model.variables[name], array)
        assert model.variables[name].shape == array.shape
    np.testing.assert_array_equal(model.get("decoder/projection/weight"), content["x/f32"][1])
    assert int(model.get("encoder/num_heads")) == 3


def test_bfloat16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 2.0**100], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # these values are exact in bf16
    write_ct2(tmp_path / "model.bin", {"w": (5, bf16)}, {})
    np.testing.assert_array_equal(read_ct2_model(tmp_path / "model.bin").variables["w"], values)


def test_truncated_file_is_refused_with_its_path(tmp_path, content):
    raw = write_ct2(tmp_path / "model.bin", content, {})
    (tmp_path / "model.bin").write_bytes(raw[:-10])
    with pytest.raises(Ct2FormatError, match="truncated") as err:
        read_ct2_model(tmp_path / "model.bin")
    assert str(tmp_path / "model.bin") in str(err.value)


def test_trailing_bytes_are_refused(tmp_path, content):
    raw = write_ct2(tmp_path / "model.bin", content, {})
    (tmp_path / "model.bin").write_bytes(raw + b"\0\0\0")
    with pytest.raises(Ct2FormatError, match="3 unexpected bytes"):
        read_ct2_model(tmp_path / "model.bin")


def test_unknown_version_is_refused(tmp_path, content):
    write_ct2(tmp_path / "model.bin", content, {}, version=5)
    with pytest.raises(Ct2FormatError, match="binary version 5"):
        read_ct2_model(tmp_path / "model.bin")
