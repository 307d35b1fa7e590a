"""The paper run's projection (benchmarks/paper_projection.py): parameter counts against real encoders, FLOPs
against the GPU check's measured throughput, hours and memory against hand computations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from helpers.models.weights import WHISPER_SIZES

_spec = importlib.util.spec_from_file_location(
    "paper_projection", Path(__file__).resolve().parents[1] / "benchmarks" / "paper_projection.py")
projection = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(projection)


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_encoder_parameters_match_the_transformers_encoder(size):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    s = WHISPER_SIZES[size]
    config = WhisperConfig(d_model=s["d_model"], encoder_layers=s["layers"], encoder_attention_heads=s["heads"],
                           encoder_ffn_dim=s["ffn"], num_mel_bins=s["mels"])
    assert projection.encoder_params(s) == sum(p.numel() for p in WhisperEncoder(config).parameters())


def test_flops_reproduce_the_measured_large_v2_throughput_and_hours_follow():
    shape = WHISPER_SIZES["large-v2"]
    flops = projection.train_flops(shape)
    measured = projection.MEASURED
    assert flops * measured["clips_per_s"] == pytest.approx(measured["tflops"] * 1e12, rel=0.01)
    by_hand = 10 * (20 * 0.9 * 5531 * flops + 2.1 * 5531 * flops / 3) / (0.38 * 989e12) / 3600
    assert projection.lora_run_hours(shape) == pytest.approx(by_hand)
    epoch_seconds = 0.9 * 5531 / measured["clips_per_s"]  # the GPU check's clips/s, no FLOP model in between
    assert projection.lora_run_hours(shape) == pytest.approx(10 * 20 * epoch_seconds / 3600, rel=0.05)
    assert projection.peak_memory_gib(shape) == pytest.approx(measured["peak_gib"])
    assert projection.peak_memory_gib(WHISPER_SIZES["tiny"]) < projection.peak_memory_gib(shape) / 10


def test_trace_bytes_scale_clips_and_width_only():
    arrays = {"states": ((4, 33, 16), 4), "lora.A": ((4, 50, 32), 4), "lens": ((4, 33, 4), 4), "frames": ((50,), 8)}
    got = projection.trace_bytes(arrays, clips=4, width=16, to_clips=100, to_width=1280)
    assert got == (100 * 33 * 1280 + 100 * 50 * 32 + 100 * 33 * 4) * 4 + 50 * 8


def test_causal_passes_of_a_one_layer_encoder_by_hand():
    """L = 1: per model a stream pass and a source pass (2 layers); unique edits running layer 0: LoRA model 4
    (antialigned, attention patch, MLP patch, LoRA off; the intact run, the erasure and the residual patch at the
    top run no layer), frozen 3, untrained 2 (its two patches): 6 + 5 + 4 = 15."""
    assert projection.causal_layer_passes(1) == 15
    assert projection.causal_layer_passes(32) > 32 * 100  # hundreds of encoder passes per test clip
