"""The tracing pass on real tiny.en: residual identity, logit lens = model logits, gradients = torch hooks."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from helpers.analysis.logit_lens import lens_logits
from helpers.analysis.spectra import k_energy, singular_values
from helpers.analysis.tracing import Trace, trace_model
from helpers.data.features import extract_features, whisper_feature_extractor
from helpers.io import CorruptCacheError, atomic_tensors, read_cached
from helpers.models.classifier import ModelSpec, build_classifier, load_whisper_classifier
from helpers.models.lora import ATTENTION_PROJECTIONS, LoraSettings, redraw_lora
from helpers.models.pooling import speech_positions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lora_model(tiny_en_dir):
    model = build_classifier(ModelSpec(max_seconds=4, lora=LoraSettings(rank=8, target_modules=ATTENTION_PROJECTIONS)),
                             seed=0)
    redraw_lora(model, init="official", seed=1)  # non-zero B so every gradient is informative
    return model


@pytest.fixture(scope="module")
def batch(spoken, lora_model):
    features = extract_features(spoken[1], whisper_feature_extractor(lora_model.config, 4))
    n_speech = speech_positions([len(w) / 16000 for w in spoken[1]], features.shape[-1] // 2)
    return features, torch.tensor([1, 3]), n_speech


def test_trace_shapes_and_residual_identity(lora_model, batch):
    trace = trace_model(lora_model, *batch, batch_size=1)
    n_layers = lora_model.config.encoder_layers
    assert trace.meta["residual_error"] < 1e-4
    assert trace["h_norm"].shape == (2, n_layers, 200)
    assert trace["pooled_ln_all"].shape == (2, n_layers + 1, 384)
    assert len(trace.lora_names) == 4 * n_layers
    assert trace["lora.0.q_proj.A"].shape == (2, 200, 8) and trace["lora.3.out_proj.B_grad"].shape == (2, 200, 384)
    assert trace["speech_mask"].sum(1).tolist() == batch[2].tolist()


def test_logit_lens_at_the_last_layer_with_final_norm_is_the_model(lora_model, batch):
    trace = trace_model(lora_model, *batch, with_gradients=False)
    base = lora_model.get_base_model()
    lens = lens_logits(trace["pooled_ln_all"], base.projector, base.classifier)
    with torch.no_grad():
        logits = lora_model.eval()(input_features=batch[0]).logits.numpy()
    np.testing.assert_allclose(lens[:, -1], logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trace["logits"], logits, rtol=1e-5, atol=1e-6)
    assert not np.allclose(lens[:, -1], lens_logits(trace["pooled_all"], base.projector, base.classifier)[:, -1])


def test_captured_gradients_equal_plain_torch_hooks(lora_model, batch):
    features, labels, n_speech = batch
    trace = trace_model(lora_model, features, labels, n_speech, batch_size=2)
    captured = {}
    hooks = []
    for name, module in lora_model.named_modules():
        if name.endswith(("layers.2.self_attn.k_proj.lora_A.default", "layers.2.self_attn.k_proj.lora_B.default")):
            key = "A" if "lora_A" in name else "B"

            def hook(mod, args, out, key=key):
                out.register_hook(lambda g: captured.__setitem__(key, g))
            hooks.append(module.register_forward_hook(hook))
    lora_model.eval()
    x = features.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(lora_model(input_features=x).logits, labels, reduction="sum")
    loss.backward()
    for h in hooks:
        h.remove()
    lora_model.zero_grad(set_to_none=True)
    np.testing.assert_allclose(trace["lora.2.k_proj.A_grad"], captured["A"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(trace["lora.2.k_proj.B_grad"], captured["B"].numpy(), rtol=1e-5, atol=1e-7)
    assert np.abs(trace["lora.2.k_proj.A_grad"]).sum() > 0


def test_peft_initialisation_makes_b_outputs_and_a_gradients_zero(tiny_en_dir, batch):
    model = build_classifier(ModelSpec(max_seconds=4, lora=LoraSettings(rank=8)), seed=0)
    redraw_lora(model, init="peft")
    trace = trace_model(model, *batch)
    assert np.all(trace["lora.1.v_proj.B"] == 0) and np.all(trace["lora.1.v_proj.A_grad"] == 0)
    assert np.isnan(k_energy(singular_values(trace["lora.1.v_proj.B"].reshape(-1, 384))))
    assert np.abs(trace["lora.1.v_proj.B_grad"]).sum() > 0


def test_frozen_model_trace_and_round_trip(tiny_en_dir, batch, tmp_path):
    model = load_whisper_classifier("tiny.en", max_seconds=4, seed=0)
    trace = trace_model(model, *batch)
    assert trace.lora_names == [] and not trace.meta["gradients"] and trace.meta["residual_error"] < 1e-4
    again = Trace.load(trace.save(tmp_path / "t.safetensors"))
    assert again.meta == trace.meta and all(np.array_equal(again[k], trace[k]) for k in trace.arrays)


def test_a_damaged_trace_file_is_named_set_aside_and_traced_again(tiny_en_dir, batch, tmp_path, caplog):
    model = load_whisper_classifier("tiny.en", max_seconds=4, seed=0)
    trace = trace_model(model, *batch, with_gradients=False)
    path = trace.save(tmp_path / "frozen-trace.safetensors")
    os.truncate(path, path.stat().st_size - 100)
    with pytest.raises(CorruptCacheError, match="frozen-trace.safetensors: the header declares"):
        Trace.load(path)
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        again = read_cached(path, Trace.load, lambda: trace_model(model, *batch, with_gradients=False).save(path)
                            and Trace.load(path))
    assert again.meta == trace.meta and all(np.array_equal(again[k], trace[k]) for k in trace.arrays)
    assert str(path) in caplog.text and len(list(tmp_path.glob("frozen-trace.safetensors.corrupt-*"))) == 1
    atomic_tensors(path, {"x": np.ones(2)})  # whole, but not a trace
    with pytest.raises(CorruptCacheError, match="no readable trace description"):
        Trace.load(path)


def test_tracing_leaves_the_model_in_the_mode_it_found(lora_model, batch):
    lora_model.train()
    trace_model(lora_model, *batch, with_gradients=False)
    assert lora_model.training
    lora_model.eval()
    trace_model(lora_model, *batch, with_gradients=False, dropout_active=True)
    assert not lora_model.training


def test_lora_frames_keeps_evenly_spaced_positions(lora_model, batch):
    trace = trace_model(lora_model, *batch, lora_frames=10)
    assert trace["lora.0.v_proj.A"].shape == (2, 10, 8)
    assert trace["lora_frames"][0] == 0 and trace["lora_frames"][-1] == 199


def test_dropout_traces_are_repeatable_from_the_seed(lora_model, batch):
    first = trace_model(lora_model, *batch, dropout_active=True, seed=3)
    again = trace_model(lora_model, *batch, dropout_active=True, seed=3)
    other = trace_model(lora_model, *batch, dropout_active=True, seed=4)
    assert np.array_equal(first["lora.1.v_proj.A"], again["lora.1.v_proj.A"])
    assert not np.array_equal(first["lora.1.v_proj.A"], other["lora.1.v_proj.A"])


@pytest.mark.parametrize("parts, gradients", [(("residual",), False), (("pooled",), False), (("lora",), True),
                                              (("residual", "pooled"), False)])
def test_a_narrowed_trace_keeps_exactly_the_full_trace_arrays(lora_model, batch, parts, gradients):
    full = trace_model(lora_model, *batch, batch_size=2)
    part = trace_model(lora_model, *batch, batch_size=2, parts=parts, with_gradients=gradients)
    expected = {"logits", "labels", "speech_mask", "lora_frames"}
    if "residual" in parts:
        expected |= {"h_norm", "a_norm", "m_norm", "am_norm", "cos_ah", "cos_mh", "cos_amh"}
    if "pooled" in parts:
        expected |= {"pooled_all", "pooled_speech", "pooled_ln_all", "pooled_ln_speech"}
    if "lora" in parts:
        expected |= {k for k in full.arrays if k.startswith("lora.")}
    assert set(part.arrays) == expected
    for key in expected:
        np.testing.assert_allclose(part[key], full[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert (part.meta["residual_error"] is None) == ("residual" not in parts)


def test_unknown_trace_parts_are_refused(lora_model, batch):
    with pytest.raises(ValueError, match="parts=\\('attention',\\)"):
        trace_model(lora_model, *batch, parts=("attention",))
