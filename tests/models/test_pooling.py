"""Speech pooling (issue 18): known speech lengths, batches that equal their clips run alone at their own length
(logits, gradients, frozen means, traces, causal edits), length buckets that hold every clip once, and the official
mean-pooled model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.models.classifier import ModelSpec, build_classifier, read_spec, save_classifier
from helpers.models.lora import LoraSettings
from helpers.models.pooling import batch_to_speech, is_speech_pooled, model_inputs, speech_positions
from helpers.training.batches import length_bucketed_batches, shuffled_batches

LENGTHS = torch.tensor([150, 37, 101, 150, 2, 88])  # encoder positions of speech per clip (3 s inputs: 150)


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(len(LENGTHS), 80, 300)


def _model(attention: str = "sdpa", pooling: str = "speech", lora: LoraSettings | None = LoraSettings(rank=4)):
    model = build_classifier(ModelSpec(max_seconds=3, pooling=pooling, lora=lora), seed=3, attention=attention)
    with torch.no_grad():  # a trained-looking adapter: B != 0, so LoRA changes the forward pass
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    return model.eval()


def _alone(model, features: torch.Tensor, i: int) -> torch.Tensor:
    """Clip i run by itself at its own length: its first 2 x positions log-mel frames, nothing else."""
    n = int(LENGTHS[i])
    return model(input_features=features[i:i + 1, :, :2 * n], speech_positions=LENGTHS[i:i + 1]).logits


def test_speech_positions_are_20_ms_steps_rounded_up_within_the_input():
    assert speech_positions([0.001, 0.02, 0.021, 3.0, 4.49, 40.0], 1500).tolist() == [1, 1, 2, 150, 225, 1500]
    assert speech_positions([3.5], 150).tolist() == [150]  # cut at the input, as its features are


def test_batch_to_speech_cuts_to_the_longest_clip_and_zeroes_each_clip_beyond_its_speech(features):
    rows = torch.tensor([1, 2])
    cut = batch_to_speech(features[rows], LENGTHS[rows])
    assert cut.shape == (2, 80, 202)  # 2 x 101 frames
    assert torch.equal(cut[0, :, :74], features[1, :, :74]) and not cut[0, :, 74:].any()
    assert torch.equal(cut[1], features[2, :, :202])
    full = batch_to_speech(features[rows], LENGTHS[rows], cut=False)
    assert full.shape == (2, 80, 300) and torch.equal(full[:, :, :202], cut)
    with pytest.raises(ValueError, match="need 400 log-mel frames"):
        batch_to_speech(features[:1], torch.tensor([200]))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_bucketed_batch_gives_each_clip_the_logits_it_has_alone(features, attention):
    model = _model(attention)
    with torch.no_grad():
        alone = torch.cat([_alone(model, features, i) for i in range(len(LENGTHS))])
        batched = model(input_features=batch_to_speech(features, LENGTHS), speech_positions=LENGTHS).logits
        full = model(**model_inputs(model, features, LENGTHS)).logits  # the whole 3 s input, padding keys masked
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(full, alone, atol=1e-5, rtol=1e-4)
    # the control: with the key mask but without zeroing the frames past each clip's speech, the short clips'
    # last positions see other frames through the convolutions, and their logits move beyond the tolerance
    with torch.no_grad():
        unzeroed = model(input_features=features, speech_positions=LENGTHS).logits
    assert (unzeroed - alone).abs().max() > 1e-4


def test_bucketed_gradients_are_the_sum_of_each_clips_own(features):
    model, labels = _model(), torch.tensor([0, 1, 2, 3, 0, 1])
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss = torch.nn.functional.cross_entropy(
        model(input_features=batch_to_speech(features, LENGTHS), speech_positions=LENGTHS).logits, labels,
        reduction="sum")
    batched = torch.autograd.grad(loss, trainable)
    own = [torch.zeros_like(p) for p in trainable]
    for i in range(len(LENGTHS)):
        clip_loss = torch.nn.functional.cross_entropy(_alone(model, features, i), labels[i:i + 1], reduction="sum")
        for total, g in zip(own, torch.autograd.grad(clip_loss, trainable)):
            total += g
    for b, o in zip(batched, own):
        torch.testing.assert_close(b, o, atol=1e-5, rtol=1e-3)


def test_a_speech_pooled_model_refuses_to_run_without_speech_positions(features):
    model = _model()
    assert is_speech_pooled(model) and not is_speech_pooled(_model(pooling="mean"))
    with pytest.raises(ValueError, match="needs speech_positions"):
        model(input_features=features[:1])
    with pytest.raises(ValueError, match="pass each clip's speech_positions"):
        model_inputs(model, features[:1])


def test_the_official_mean_model_is_huggingfaces_own_and_unchanged(features):
    from transformers import WhisperForAudioClassification

    plain = build_classifier(ModelSpec(max_seconds=3, lora=None, pooling="mean"), seed=3)
    assert type(plain) is WhisperForAudioClassification
    inputs = model_inputs(plain, features[:2])
    assert list(inputs) == ["input_features"]
    assert torch.equal(inputs["input_features"], features[:2])
    speech = build_classifier(ModelSpec(max_seconds=3, lora=None, pooling="speech"), seed=3)
    for (name, a), (_, b) in zip(plain.state_dict().items(), speech.state_dict().items()):
        assert torch.equal(a, b), name  # same weights, same seeded head: only the pooling differs


def test_the_spec_records_pooling_and_old_specs_read_as_the_official_mean(tmp_path):
    model = _model()
    spec = ModelSpec(max_seconds=3, pooling="speech", lora=LoraSettings(rank=4))
    save_classifier(model, spec, tmp_path / "m")
    assert read_spec(tmp_path / "m").pooling == "speech"
    old = spec.to_json().replace('"pooling": "speech"', '"unused": 0').replace(',\n  "unused": 0', "")
    assert ModelSpec.from_json(old).pooling == "mean"
    with pytest.raises(ValueError, match="pooling='max'"):
        build_classifier(ModelSpec(pooling="max"))


def test_length_buckets_hold_every_clip_once_and_keep_batches_narrow():
    lengths = torch.from_numpy(np.random.default_rng(0).integers(20, 1500, 400))
    idx = torch.arange(400)
    train = length_bucketed_batches(idx, lengths, 8, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(train).tolist()) == list(range(400))
    again = length_bucketed_batches(idx, lengths, 8, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(train, again))  # seeded
    other = length_bucketed_batches(idx, lengths, 8, torch.Generator().manual_seed(2))
    assert not all(torch.equal(a, b) for a, b in zip(train, other))  # each epoch mixes clips differently
    padded = sum(len(b) * int(lengths[b].max()) for b in train)
    shuffled = shuffled_batches(idx, 8, torch.Generator().manual_seed(1))
    padded_shuffled = sum(len(b) * int(lengths[b].max()) for b in shuffled)
    assert padded < 0.7 * padded_shuffled  # the point: less padding than random batches
    evaluation = length_bucketed_batches(idx, lengths, 8)
    assert torch.equal(lengths[torch.cat(evaluation)], lengths.sort().values)
    with pytest.raises(ValueError, match="positive"):
        length_bucketed_batches(idx, lengths, 0)


def test_shuffled_batches_draw_the_batch_order_the_loop_always_drew():
    """The official layout's batches are unchanged: one randperm of the generator, cut in order."""
    idx = torch.arange(10, 30)
    got = shuffled_batches(idx, 8, torch.Generator().manual_seed(5))
    expected = idx[torch.randperm(20, generator=torch.Generator().manual_seed(5))]
    assert torch.equal(torch.cat(got), expected) and [len(b) for b in got] == [8, 8, 4]


def test_frozen_speech_means_equal_each_clip_alone(features):
    from helpers.models.pooling import encode_speech
    from helpers.training.frozen import pooled_encoder_outputs

    encoder = _model(lora=None).encoder
    pooled = pooled_encoder_outputs(encoder, features, device=torch.device("cpu"), batch_size=4,
                                     speech_positions=LENGTHS)
    with torch.no_grad():
        alone = torch.stack([encode_speech(encoder, features[i:i + 1, :, :2 * int(n)], LENGTHS[i:i + 1])[0].mean(0)
                             for i, n in enumerate(LENGTHS)])
    torch.testing.assert_close(pooled, alone, atol=1e-5, rtol=1e-4)
    everything = pooled_encoder_outputs(encoder, features, device=torch.device("cpu"), batch_size=4)
    assert (everything - alone).abs().max() > 1e-3  # the all-positions mean is another quantity


def test_traces_and_causal_edits_of_a_speech_pooled_model_read_the_model_it_is(features):
    from helpers.analysis.interventions import Edit, predict_logits, run_edits
    from helpers.analysis.tracing import trace_model

    model = _model()
    with torch.no_grad():
        alone = torch.cat([_alone(model, features, i) for i in range(len(LENGTHS))]).numpy()
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    trace = trace_model(model, features, labels, LENGTHS.numpy(), batch_size=4)
    assert trace.meta["pooling"] == "speech" and trace["h_norm"].shape[-1] == 150  # arrays keep the input length
    np.testing.assert_allclose(trace["logits"], alone, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(predict_logits(model, features, speech_positions=LENGTHS.numpy()), alone, atol=1e-5,
                               rtol=1e-4)
    edited = run_edits(model, features, {"intact": Edit(), "erase": Edit(erase=(3,))}, batch_size=4,
                       speech_positions=LENGTHS.numpy())
    np.testing.assert_allclose(edited["intact"], alone, atol=1e-5, rtol=1e-4)
    assert np.abs(edited["erase"] - alone).max() > 1e-4
