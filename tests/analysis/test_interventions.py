"""Interventions on real tiny.en with known answers: switching LoRA off, and patching activations between models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.analysis.interventions import (
    Edit,
    ablation_sets,
    edited_logits,
    layer_activations,
    lora_ablation_table,
    lora_switched_off,
    patch_sweep,
    patched_logits,
    predict_logits,
    remove_antialigned,
    run_edits,
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


def test_patch_sweep_is_each_single_patch_and_a_self_sweep_changes_nothing(models):
    lora, frozen, x = models
    sites = [("mlp", 1), ("residual", 2), ("attention", 0), ("residual", N_LAYERS)]  # any order
    swept = patch_sweep(frozen, lora, x, sites)
    for part, layer in sites:
        single = patched_logits(lora, x, layer, layer_activations(frozen, x, layer, part=part), part=part)
        np.testing.assert_allclose(swept[part, layer], single, atol=1e-5)
    assert np.abs(swept["residual", N_LAYERS] - predict_logits(lora, x)).max() > 1e-3
    for logits in patch_sweep(lora, lora, x, sites).values():
        np.testing.assert_allclose(logits, predict_logits(lora, x), atol=1e-5)


def test_erasing_every_layer_feeds_the_embeddings_to_the_final_layer_norm(models):
    lora, _, x = models
    np.testing.assert_allclose(edited_logits(lora, x), predict_logits(lora, x), atol=1e-6)  # no edit
    embeddings = layer_activations(lora, x, 0)
    expected = patched_logits(lora, x, N_LAYERS, embeddings)
    np.testing.assert_allclose(edited_logits(lora, x, erase=range(N_LAYERS)), expected, atol=1e-5)
    # erasing one layer = its output replaced by its input, read through the rest of the model
    h1 = layer_activations(lora, x, 1)
    np.testing.assert_allclose(edited_logits(lora, x, erase=[1]), patched_logits(lora, x, 2, h1), atol=1e-5)


def test_removing_the_antialigned_part_keeps_aligned_and_orthogonal_updates():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 7, 16, generator=g)
    orthogonal = torch.randn(5, 7, 16, generator=g)
    orthogonal -= (orthogonal * h).sum(-1, keepdim=True) / (h * h).sum(-1, keepdim=True) * h
    torch.testing.assert_close(remove_antialigned(h, -2 * h), torch.zeros_like(h))
    torch.testing.assert_close(remove_antialigned(h, -3 * h + orthogonal), orthogonal, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(remove_antialigned(h, 0.5 * h + orthogonal), 0.5 * h + orthogonal)
    mixed = torch.randn(5, 7, 16, generator=g)
    assert ((remove_antialigned(h, mixed) * h).sum(-1) >= -1e-4).all()


def test_antialigned_removal_in_the_model_matches_the_same_edit_done_by_hand(models):
    lora, _, x = models
    h, out = layer_activations(lora, x, 2), layer_activations(lora, x, 3)
    by_hand = patched_logits(lora, x, 3, h + remove_antialigned(h, out - h))
    np.testing.assert_allclose(edited_logits(lora, x, antialigned=[2]), by_hand, atol=1e-5)
    assert np.abs(by_hand - predict_logits(lora, x)).max() > 1e-4  # the edit does something here
    with pytest.raises(ValueError, match="both"):
        edited_logits(lora, x, erase=[1], antialigned=[1])
    with pytest.raises(ValueError, match="outside"):
        edited_logits(lora, x, erase=[N_LAYERS])


def test_edits_that_skip_the_layers_below_them_match_full_passes(models):
    lora, frozen, x = models
    edits = {"none": Edit(), "top_off": Edit(lora_off=(2, 3)), "q_off": Edit(lora_off=(1,), projections=("q_proj",)),
             "residual0": Edit(patch=("residual", 0)), "mlp2": Edit(patch=("mlp", 2))}
    fast = run_edits(lora, x, edits, source=frozen, batch_size=2)
    np.testing.assert_allclose(fast["none"], predict_logits(lora, x, batch_size=2), atol=1e-5)
    for name, layers, projections in (("top_off", (2, 3), None), ("q_off", (1,), ("q_proj",))):
        with lora_switched_off(lora, layers, projections):
            np.testing.assert_allclose(fast[name], predict_logits(lora, x, batch_size=2), atol=1e-5)
    np.testing.assert_allclose(fast["residual0"], fast["none"], atol=1e-5)  # the shared front end
    mlp = patched_logits(lora, x, 2, layer_activations(frozen, x, 2, part="mlp", batch_size=2), part="mlp",
                         batch_size=2)
    np.testing.assert_allclose(fast["mlp2"], mlp, atol=1e-5)
    with pytest.raises(ValueError, match="source"):
        run_edits(lora, x, {"p": Edit(patch=("mlp", 1))})
    with pytest.raises(ValueError, match="outside"):
        run_edits(lora, x, {"p": Edit(lora_off=(N_LAYERS,))})
