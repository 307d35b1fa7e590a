"""Interventions on real tiny.en with known answers: switching LoRA off, and patching activations between models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.analysis.interventions import (
    ablation_sets,
    layer_activations,
    lora_ablation_table,
    lora_switched_off,
    patched_logits,
    predict_logits,
)
from helpers.models.classifier import ModelSpec, build_classifier
from helpers.models.lora import ATTENTION_PROJECTIONS, LoraSettings, redraw_lora

pytestmark = pytest.mark.integration
N_LAYERS = 4


@pytest.fixture(scope="module")
def models(tiny_en_dir):
    """A LoRA model with non-zero adapters and the same checkpoint without LoRA, sharing the LoRA model's head."""
    lora = build_classifier(ModelSpec(max_seconds=2, lora=LoraSettings(rank=4, target_modules=ATTENTION_PROJECTIONS)),
                            seed=0).eval()
    redraw_lora(lora, init="official", seed=1)
    with torch.no_grad():  # make the adapters matter: N(0, 0.02) B A is small for a 4-layer model
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.mul_(20)
    frozen = build_classifier(ModelSpec(max_seconds=2, lora=None), seed=0).eval()
    base = lora.get_base_model()
    for name in ("projector", "classifier"):  # peft keeps the trainable head copy in modules_to_save
        getattr(frozen, name).load_state_dict(getattr(base, name).modules_to_save["default"].state_dict())
    features = torch.randn(3, 80, 200, generator=torch.Generator().manual_seed(0))
    return lora, frozen, features


def test_switching_lora_off_everywhere_is_the_base_encoder_and_nowhere_is_the_model(models):
    lora, frozen, x = models
    trained = predict_logits(lora, x)
    with lora_switched_off(lora) as off:
        ablated = predict_logits(lora, x)
    assert len(off) == N_LAYERS * len(ATTENTION_PROJECTIONS)
    with lora.disable_adapter():
        base = predict_logits(lora, x)
    np.testing.assert_allclose(ablated, base, atol=1e-5)
    np.testing.assert_allclose(ablated, predict_logits(frozen, x), atol=1e-5)
    assert np.abs(trained - base).max() > 1e-3  # the adapters do change the output
    np.testing.assert_allclose(predict_logits(lora, x), trained, atol=1e-6)  # restored on exit
    with lora_switched_off(lora, layers=[]):
        np.testing.assert_allclose(predict_logits(lora, x), trained, atol=1e-6)


def test_ablation_table_covers_every_set_and_reads_the_intact_model_as_zero(models):
    lora, _, x = models
    sets = ablation_sets(N_LAYERS)
    assert len(sets) == 1 + 3 * N_LAYERS and sets[-1] == ("top", N_LAYERS, (0, 1, 2, 3))
    table = lora_ablation_table(lora, x, np.array([0, 1, 2]))
    assert len(table) == len(sets) and table.loc[table["kind"] == "none", "d_uar"].iloc[0] == 0
    everything = table[(table["kind"] == "bottom") & (table["k"] == N_LAYERS)]
    with lora.disable_adapter():
        base_pred = predict_logits(lora, x).argmax(-1)
    assert everything["war"].iloc[0] == pytest.approx(float((base_pred == np.array([0, 1, 2])).mean()))


@pytest.mark.parametrize("part", ["residual", "attention", "mlp"])
def test_patching_a_model_with_its_own_activations_changes_nothing(models, part):
    lora, _, x = models
    for layer in (0, 2):
        own = layer_activations(lora, x, layer, part=part)
        np.testing.assert_allclose(patched_logits(lora, x, layer, own, part=part), predict_logits(lora, x), atol=1e-5)


def test_layer_zero_input_is_shared_and_the_final_output_patch_is_the_other_encoder_under_this_head(models):
    lora, frozen, x = models
    embeddings = layer_activations(frozen, x, 0)
    np.testing.assert_allclose(layer_activations(lora, x, 0), embeddings, atol=1e-6)  # same frozen front end
    np.testing.assert_allclose(patched_logits(lora, x, 0, embeddings), predict_logits(lora, x), atol=1e-5)
    # the frozen encoder's last-layer output into the LoRA model = the LoRA model's head on the frozen encoder
    final = layer_activations(frozen, x, N_LAYERS)
    with torch.no_grad():
        encoded = frozen.encoder(x).last_hidden_state
        head = lora.get_base_model()
        expected = head.classifier(head.projector(encoded).mean(1)).numpy()
    np.testing.assert_allclose(patched_logits(lora, x, N_LAYERS, final), expected, atol=1e-5)
    assert np.abs(expected - predict_logits(lora, x)).max() > 1e-3


def test_bad_part_and_layer_are_refused(models):
    lora, _, x = models
    with pytest.raises(ValueError, match="part"):
        layer_activations(lora, x, 0, part="embedding")
    with pytest.raises(ValueError, match="sublayer"):
        layer_activations(lora, x, N_LAYERS, part="mlp")
