"""Evidence tables on constructed traces whose answers are known: the verdicts they feed must be able to fail."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.analysis.evidence import (
    cka_evidence,
    contribution_evidence,
    lens_evidence,
    performance_evidence,
    rank_evidence,
    svd_evidence,
)
from helpers.analysis.tracing import Trace
from helpers.analysis.uncertainty import FAILS, HOLDS
from helpers.book.scorecard import section_claims

N, L, T, R, D = 24, 4, 10, 4, 16


def _residual(rng, top_boost: float) -> dict:
    h = np.ones((N, L, T))
    a = 0.1 + 0.01 * rng.random((N, L, T))
    a[:, -1] += top_boost  # attention grows in the top layer only
    m = 0.1 + 0.01 * rng.random((N, L, T))
    return dict(h_norm=h, a_norm=a, m_norm=m, am_norm=a + m, cos_ah=np.zeros((N, L, T)), cos_mh=np.zeros((N, L, T)),
                cos_amh=np.zeros((N, L, T)) - 0.5 * top_boost * (np.arange(L) / L)[None, :, None])


def _trace(arrays: dict, loras=()) -> Trace:
    base = dict(labels=np.arange(N) % 4, speech_mask=np.ones((N, T), bool), lora_frames=np.arange(T))
    return Trace({**base, **arrays}, dict(n_layers=L, lora_modules=list(loras)))


def test_contribution_growth_holds_when_the_top_layer_grows_and_fails_when_nothing_changes():
    rng = np.random.default_rng(0)
    frozen = _trace(_residual(rng, 0.0))
    grown = [{"lora": _trace(_residual(rng, 0.5)), "frozen": frozen, "untrained-official": frozen}]
    same = [{"lora": _trace(_residual(rng, 0.0)), "frozen": frozen, "untrained-official": frozen}]
    verdicts = section_claims("3.2", contribution_evidence(grown, n_boot=100)).set_index("id")["verdict"]
    assert verdicts["contribution_grows_late"] == HOLDS and verdicts["attention_over_mlp"] == HOLDS
    assert verdicts["cosine_negative_with_depth"] == HOLDS
    flat = section_claims("3.2", contribution_evidence(same, n_boot=100)).set_index("id")["verdict"]
    assert flat["contribution_grows_late"] != HOLDS


def _lens_trace(rng, late: bool) -> Trace:
    """Logits whose agreement with the reference appears only at the top (late) or from the start."""
    ref = rng.normal(0, 1, (N, 4)) * 3
    lens = np.repeat(ref[:, None, :], L + 1, 1)
    if late:
        lens[:, : L - 1] = rng.normal(0, 3, (N, L - 1, 4))
    return _trace({"lens.all.raw": lens, "lens.all.reference": ref})


def test_lens_contrast_holds_for_a_late_converging_model_against_an_early_one():
    rng = np.random.default_rng(1)
    units = [{"lora": _lens_trace(rng, late=True), "frozen": _lens_trace(rng, late=False)} for _ in range(2)]
    claims = section_claims("3.3", lens_evidence(units, n_boot=100)).set_index("id")["verdict"]
    assert claims["lora_kl_high_then_late_drop"] == HOLDS and claims["lora_overlap_rises_late"] == HOLDS
    swapped = [{"lora": u["frozen"], "frozen": u["lora"]} for u in units]
    claims = section_claims("3.3", lens_evidence(swapped, n_boot=100)).set_index("id")["verdict"]
    assert claims["lora_kl_high_then_late_drop"] == FAILS


def _lora_trace(rng, a_rank: int, scale_b: float = 1.0) -> Trace:
    """LoRA outputs with B = A M (the algebra of a LoRA module in eval mode); A of the given rank."""
    arrays = {}
    for name in ("lora.0.v_proj", "lora.1.v_proj"):
        basis = rng.normal(0, 1, (a_rank, R))
        a = rng.normal(0, 1, (N, T, a_rank)) @ basis
        m = rng.normal(0, 1, (R, D)) * scale_b
        arrays.update({f"{name}.A": a, f"{name}.B": a @ m, f"{name}.A_grad": rng.normal(0, 1, (N, T, R)),
                       f"{name}.B_grad": rng.normal(0, 1, (N, T, D)),
                       f"{name}.delta_sv": np.linalg.svd(m.T, compute_uv=False)})
    return _trace(arrays, loras=("lora.0.v_proj", "lora.1.v_proj"))


def test_forward_cka_of_two_untrained_adapters_is_high_but_the_verdict_is_not_holds():
    rng = np.random.default_rng(2)
    units = [{"lora": _lora_trace(rng, R), "untrained-official": _lora_trace(rng, R)} for _ in range(4)]
    ev = cka_evidence(units, n_boot=100)
    forward = ev.set_index("quantity").loc["forward_cka"]
    assert forward["value"] > 0.8 and forward["control"] > 0.8  # the algebra alone gives a high value
    assert section_claims("3.6", ev).set_index("id").loc["forward_cka_high", "verdict"] != HOLDS
    # independent gradients: debiased CKA near 0, so "negative values" must not hold either
    assert section_claims("3.6", ev).set_index("id").loc["gradient_cka_negative", "verdict"] != HOLDS


def test_forward_cka_holds_when_b_preserves_the_geometry_of_a_better_than_random_b():
    rng = np.random.default_rng(5)
    units = []
    for _ in range(4):
        aligned = _lora_trace(rng, R)
        q = np.linalg.qr(rng.normal(size=(D, R)))[0].T  # orthonormal rows: CKA(Z, Z Q) = 1 exactly
        for name in aligned.lora_names:
            aligned.arrays[f"{name}.B"] = aligned[f"{name}.A"] @ q
        units.append({"lora": aligned, "untrained-official": _lora_trace(rng, R)})
    ev = cka_evidence(units, n_boot=100)
    assert ev.set_index("quantity").loc["forward_cka", "value"] == pytest.approx(1.0)
    assert section_claims("3.6", ev).set_index("id").loc["forward_cka_high", "verdict"] == HOLDS


def test_k90_ratio_is_above_one_when_training_concentrates_the_a_outputs():
    rng = np.random.default_rng(3)
    units = [{"lora": _lora_trace(rng, 1), "untrained-official": _lora_trace(rng, R)} for _ in range(3)]
    ev = svd_evidence(units, n_boot=50, max_clip_dim=8).set_index("quantity")  # A (4 wide) by clip, B by unit
    assert ev.loc["k90_ratio.A", "k_trained"] == 1 and ev.loc["k90_ratio.A", "low"] > 1
    assert bool(ev.loc["k90_ratio.A", "clip_resampling"]) and not bool(ev.loc["k90_ratio.B", "clip_resampling"])
    verdicts = section_claims("3.5", svd_evidence(units, n_boot=50)).set_index("id")["verdict"]
    assert verdicts["k90_A"] == HOLDS


def test_rank_evidence_separates_growing_clusters_and_not_shuffled_ones():
    rng = np.random.default_rng(4)
    labels = np.arange(40) % 4
    centres = rng.normal(0, 1, (4, 8))
    feats = {r: centres[labels] * s + rng.normal(0, 1, (40, 8)) for r, s in ((8, 0.2), (32, 1.5), (64, 4.0))}
    ev = rank_evidence(feats, labels, ["anger", "happiness", "neutral", "sadness"], n_boot=50, n_permutations=50)
    verdicts = section_claims("3.4", ev).set_index("id")["verdict"]
    assert verdicts["separation_grows_with_rank"] == HOLDS
    noise = {r: rng.normal(0, 1, (40, 8)) for r in (8, 32, 64)}
    ev = rank_evidence(noise, labels, ["anger", "happiness", "neutral", "sadness"], n_boot=50, n_permutations=50)
    assert section_claims("3.4", ev).set_index("id").loc["separation_grows_with_rank", "verdict"] != HOLDS


def test_performance_gain_interval_spans_folds_and_seeds():
    import pandas as pd

    rows = [dict(size="tiny", mode=m, fold=f, seed=s, uar=(0.7 if m == "lora" else 0.5) + 0.01 * f)
            for m in ("lora", "frozen") for f in range(4) for s in (1, 2)]
    ev = performance_evidence(pd.DataFrame(rows))
    assert ev.loc[0, "contrast"] == pytest.approx(0.2) and ev.loc[0, "n_units"] == 8
    assert section_claims("3.1", ev).set_index("id").loc["lora_beats_frozen", "verdict"] == HOLDS
    rows = [dict(r, uar=0.5 + 0.01 * r["fold"]) for r in rows]
    assert section_claims("3.1", performance_evidence(pd.DataFrame(rows))).set_index("id").loc[
        "lora_beats_frozen", "verdict"] == FAILS
