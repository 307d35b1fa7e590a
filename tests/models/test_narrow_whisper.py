"""The narrow Whisper of `write_narrow_whisper`: large-v2's depth and 30 s inputs at a width a CPU trains in
seconds, loaded as any local Hugging Face folder (`model=<folder>`)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.models.weights import WHISPER_SIZES, WeightsError, resolve_whisper_source, write_narrow_whisper


def test_narrow_whisper_has_large_v2_depth_and_30_s_inputs(tmp_path):
    from transformers import WhisperConfig

    from helpers.data.features import whisper_feature_extractor
    from helpers.models.classifier import load_whisper_classifier

    folder = write_narrow_whisper(tmp_path / "narrow", d_model=16, heads=1, ffn=64)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                        "preprocessor_config.json", "rehearsal.json"]
    assert resolve_whisper_source(str(folder)) == str(folder)
    assert json.loads((folder / "rehearsal.json").read_text())["note"].startswith("untrained")
    model = load_whisper_classifier(folder, labels=("anger", "happiness", "neutral", "sadness"))
    config = model.config
    assert (config.encoder_layers, config.max_source_positions, config.num_mel_bins) == (32, 1500, 80)
    assert (config.d_model, config.encoder_attention_heads, config.encoder_ffn_dim) == (16, 1, 64)
    assert len(model.encoder.layers) == WHISPER_SIZES["large-v2"]["layers"]
    extractor = whisper_feature_extractor(WhisperConfig.from_pretrained(folder), 30)
    features = extractor([torch.zeros(16000).numpy()], sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 3000)
    with torch.no_grad():
        hidden = model.encoder(features, output_hidden_states=True).hidden_states
    assert len(hidden) == 33 and hidden[-1].shape == (1, 1500, 16)


def test_narrow_whisper_is_deterministic_in_its_seed_and_never_overwritten(tmp_path):
    first = load_file(write_narrow_whisper(tmp_path / "a", d_model=16, heads=1, ffn=64, seed=3) / "model.safetensors")
    again = load_file(write_narrow_whisper(tmp_path / "b", d_model=16, heads=1, ffn=64, seed=3) / "model.safetensors")
    other = load_file(write_narrow_whisper(tmp_path / "c", d_model=16, heads=1, ffn=64, seed=4) / "model.safetensors")
    key = "model.encoder.layers.31.self_attn.v_proj.weight"
    assert torch.equal(first[key], again[key]) and not torch.equal(first[key], other[key])
    with pytest.raises(WeightsError, match="other settings"):
        write_narrow_whisper(tmp_path / "a", d_model=16, heads=1, ffn=64, seed=5)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("mine")
    with pytest.raises(WeightsError, match="empty or new folder"):
        write_narrow_whisper(tmp_path / "d")
    with pytest.raises(ValueError, match="multiple of heads"):
        write_narrow_whisper(tmp_path / "e", d_model=30, heads=4)
