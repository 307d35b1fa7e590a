"""Verdict logic: for every claim, a constructed evidence table on which it must hold, one on which it must not,
and one on which it must be inconclusive (the interval straddles the criterion)."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.analysis.uncertainty import FAILS, HOLDS, INCONCLUSIVE, UNTESTABLE
from helpers.book.scorecard import CLAIM_IDS, scorecard, section_claims, verdict_counts

UP, DOWN, STRADDLE = (0.5, 0.2, 0.8), (-0.5, -0.8, -0.2), (0.1, -0.2, 0.4)


def _row(quantity, value=UP, control=(0.0, -0.1, 0.1), contrast=UP, **extra) -> dict:
    out = dict(quantity=quantity, value=value[0], low=value[1], high=value[2])
    for name, iv in (("control", control), ("contrast", contrast)):
        out.update({name: iv[0], f"{name}_low": iv[1], f"{name}_high": iv[2]})
    return {**out, **extra}


def performance(**o) -> pd.DataFrame:
    return pd.DataFrame([_row("uar_gain.tiny", value=(0.7, 0.65, 0.75), contrast=o.get("tiny", UP), size="tiny"),
                         _row("uar_gain.base", value=o.get("base", (0.9, 0.85, 0.95)), contrast=UP, size="base")])


def contributions(**o) -> pd.DataFrame:
    rows = [_row("top_d_ratio", contrast=o.get("top_contrast", UP)), _row("growth", value=o.get("growth", UP)),
            _row("top_attention_minus_mlp", value=o.get("attn", UP)),
            _row("d_cosine_slope", value=o.get("slope", DOWN)), _row("last_d_cosine", value=o.get("last", DOWN))]
    return pd.DataFrame(rows).assign(frames="all", control_kind="untrained-official")


def lens(**o) -> pd.DataFrame:
    rows = [_row("frozen_argmin_depth", value=o.get("argmin", (0.84, 0.8, 0.9))),
            _row("frozen_rebound", value=o.get("rebound", UP), contrast=o.get("rebound_contrast", UP)),
            _row("early_kl_gap", contrast=o.get("gap", UP)),
            _row("lora_late_drop", value=o.get("drop", (0.1, 0.05, 0.2))),
            _row("overlap_rise_gap", contrast=o.get("rise", UP)),
            _row("lora_top_overlap", value=o.get("top", (0.95, 0.9, 1.0)))]
    return pd.DataFrame(rows).assign(frames="all", n_layers=32, control_kind="frozen")


def ranks(**o) -> pd.DataFrame:
    gains = o.get("gains", {"neutral": (0.0, -0.05, 0.05), "sadness": (0.2, 0.15, 0.25),
                            "anger": (0.4, 0.35, 0.45), "happiness": (0.6, 0.55, 0.65)})
    rows = [_row("silhouette.r8", value=(0.1, 0.05, 0.15), rank=8),
            _row("silhouette.r64", value=(0.3, 0.2, 0.4), rank=64),
            _row("silhouette_slope_log2_rank", value=o.get("slope", UP)),
            _row("silhouette_top_rank_minus_null_q95", value=o.get("null", UP), null_q95=0.02)]
    rows += [_row(f"class_gain.{c}", value=iv, emotion=c) for c, iv in gains.items()]
    return pd.DataFrame(rows)


def svd(**o) -> pd.DataFrame:
    rows = []
    for kind, default in (("A", (5.0, 3.0, 7.0)), ("B", (9.0, 6.0, 12.0)), ("A_grad", (1.6, 1.2, 2.0)),
                          ("B_grad", (0.4, 0.3, 0.6))):
        rows.append(_row(f"k90_ratio.{kind}", value=o.get(kind, default), kind=kind, k_trained=3.0,
                         k_trained_low=2.0, k_trained_high=4.0, k_baseline=15.0, k_baseline_low=14.0,
                         k_baseline_high=16.0, degenerate=False))
    return pd.DataFrame(rows).assign(baseline="untrained-official", frames="all", centred=False)


def cka(**o) -> pd.DataFrame:
    rows = [_row("forward_cka", value=o.get("fwd", (0.95, 0.9, 0.99)),
                 contrast=o.get("fwd_contrast", (0.1, 0.05, 0.2)), module="mean over modules"),
            _row("backward_cka_min", value=o.get("bwd", (-0.3, -0.4, -0.2)), module="lora.1.v_proj", range_all=0.8)]
    return pd.DataFrame(rows).assign(frames="all", kernel="linear", control_kind="untrained-official")


def causal(**o) -> pd.DataFrame:
    rows = [_row("ablation_top_quarter", contrast=o.get("vs_random", UP)),
            _row("ablation_top_minus_bottom_half", value=o.get("vs_bottom", UP)),
            _row("ablation_all", value=(0.3, 0.2, 0.4)),
            _row("patch_attention_minus_mlp", value=o.get("attn", UP), contrast=o.get("attn_contrast", UP))]
    return pd.DataFrame(rows).assign(n_layers=4, top_quarter=1, bottom_half=2, control_kind="a control")


# claim id -> (section, table maker, {verdict: overrides})
CASES = {
    "lora_beats_frozen": ("3.1", performance, {HOLDS: {}, FAILS: {"tiny": DOWN}, INCONCLUSIVE: {"tiny": STRADDLE}}),
    "uar_grows_with_size": ("3.1", performance, {HOLDS: {}, FAILS: {"base": (0.5, 0.45, 0.55)},
                                                 INCONCLUSIVE: {"base": (0.72, 0.6, 0.8)}}),
    "contribution_grows_late": ("3.2", contributions, {HOLDS: {}, FAILS: {"growth": DOWN},
                                                       INCONCLUSIVE: {"top_contrast": STRADDLE}}),
    "attention_over_mlp": ("3.2", contributions, {HOLDS: {}, FAILS: {"attn": DOWN}, INCONCLUSIVE: {"attn": STRADDLE}}),
    "cosine_negative_with_depth": ("3.2", contributions, {HOLDS: {}, FAILS: {"last": UP},
                                                          INCONCLUSIVE: {"slope": STRADDLE}}),
    "frozen_kl_minimum": ("3.3", lens, {HOLDS: {}, FAILS: {"argmin": (0.3, 0.2, 0.4)},
                                        INCONCLUSIVE: {"argmin": (0.8, 0.6, 0.9)}}),
    "frozen_kl_rebound": ("3.3", lens, {HOLDS: {}, FAILS: {"rebound": DOWN},
                                        INCONCLUSIVE: {"rebound_contrast": STRADDLE}}),
    "lora_kl_high_then_late_drop": ("3.3", lens, {HOLDS: {}, FAILS: {"gap": DOWN},
                                                  INCONCLUSIVE: {"drop": (0.45, 0.3, 0.7)}}),
    "lora_overlap_rises_late": ("3.3", lens, {HOLDS: {}, FAILS: {"top": (0.5, 0.4, 0.6)},
                                              INCONCLUSIVE: {"rise": STRADDLE}}),
    "separation_grows_with_rank": ("3.4", ranks, {HOLDS: {}, FAILS: {"slope": DOWN},
                                                  INCONCLUSIVE: {"null": STRADDLE}}),
    "rank_sensitivity_order": ("3.4", ranks, {
        HOLDS: {}, FAILS: {"gains": {"neutral": (0.6, 0.55, 0.65), "sadness": (0.2, 0.15, 0.25),
                                     "anger": (0.4, 0.35, 0.45), "happiness": (0.7, 0.65, 0.75)}},
        INCONCLUSIVE: {"gains": {"neutral": (0.0, -0.1, 0.3), "sadness": (0.2, 0.1, 0.3),
                                 "anger": (0.4, 0.35, 0.45), "happiness": (0.6, 0.55, 0.65)}}}),
    "k90_A": ("3.5", svd, {HOLDS: {}, FAILS: {"A": (0.8, 0.7, 0.9)}, INCONCLUSIVE: {"A": (1.5, 0.9, 2.0)}}),
    "k90_B": ("3.5", svd, {HOLDS: {}, FAILS: {"B": (0.5, 0.4, 0.6)}, INCONCLUSIVE: {"B": (1.2, 0.8, 1.6)}}),
    "k90_A_grad": ("3.5", svd, {HOLDS: {}, FAILS: {"A_grad": (0.7, 0.6, 0.8)},
                                INCONCLUSIVE: {"A_grad": (1.1, 0.9, 1.3)}}),
    "k90_B_grad": ("3.5", svd, {HOLDS: {}, FAILS: {"B_grad": (2.0, 1.5, 2.5)},
                                INCONCLUSIVE: {"B_grad": (0.9, 0.7, 1.1)}}),
    "forward_cka_high": ("3.6", cka, {HOLDS: {}, FAILS: {"fwd_contrast": (-0.05, -0.1, -0.01)},
                                      INCONCLUSIVE: {"fwd_contrast": (0.0, -0.02, 0.02)}}),
    "gradient_cka_negative": ("3.6", cka, {HOLDS: {}, FAILS: {"bwd": (0.3, 0.2, 0.4)},
                                           INCONCLUSIVE: {"bwd": (-0.05, -0.2, 0.1)}}),
    "lora_effect_top_layers_causal": ("causal", causal, {HOLDS: {}, FAILS: {"vs_bottom": DOWN},
                                                         INCONCLUSIVE: {"vs_random": STRADDLE}}),
    "attention_over_mlp_causal": ("causal", causal, {HOLDS: {}, FAILS: {"attn_contrast": DOWN},
                                                     INCONCLUSIVE: {"attn": STRADDLE}}),
}


def test_every_claim_has_its_three_cases():
    assert set(CASES) == set(CLAIM_IDS)


@pytest.mark.parametrize("verdict", [HOLDS, FAILS, INCONCLUSIVE])
@pytest.mark.parametrize("claim_id", sorted(CASES))
def test_verdict_follows_the_interval(claim_id, verdict):
    section, maker, cases = CASES[claim_id]
    claims = section_claims(section, maker(**cases[verdict])).set_index("id")
    assert claims.loc[claim_id, "verdict"] == verdict, claims.loc[claim_id].to_dict()


def test_forward_cka_in_band_but_no_better_than_an_untrained_adapter_does_not_hold():
    """The algebra gives a high forward CKA without training: the value alone must not carry the verdict."""
    table = cka(fwd=(0.99, 0.98, 1.0), fwd_contrast=(-0.001, -0.01, 0.008))
    assert section_claims("3.6", table).set_index("id").loc["forward_cka_high", "verdict"] != HOLDS


def test_a_kl_minimum_at_the_top_layer_is_not_near_85_percent_even_on_four_layers():
    table = lens(argmin=(1.0, 1.0, 1.0)).assign(n_layers=4)
    assert section_claims("3.3", table).set_index("id").loc["frozen_kl_minimum", "verdict"] == FAILS
    table = lens(argmin=(0.75, 0.75, 0.75)).assign(n_layers=4)
    assert section_claims("3.3", table).set_index("id").loc["frozen_kl_minimum", "verdict"] == HOLDS


def test_degenerate_svd_baseline_is_not_testable_and_missing_evidence_is_reported():
    table = svd()
    table.loc[table["kind"] == "B", "degenerate"] = True
    claims = section_claims("3.5", table).set_index("id")
    assert claims.loc["k90_B", "verdict"] == UNTESTABLE and claims.loc["k90_A", "verdict"] == HOLDS
    card = scorecard({"contributions": [contributions(), contributions().assign(frames="speech")]})
    assert (card.loc[card["section"] == "3.2", "frames"].tolist() == ["all"] * 3 + ["speech"] * 3)
    assert (card.loc[card["section"] != "3.2", "verdict"] == UNTESTABLE).all()
    assert sum(verdict_counts(card).values()) == len(card)


def test_an_unknown_section_is_refused():
    with pytest.raises(ValueError, match="section"):
        section_claims("9.9", pd.DataFrame())


def test_the_papers_class_order_is_not_testable_where_the_run_lacks_its_classes():
    """A per-class claim of the paper applies only where the run has the paper's class names."""
    others = ranks(gains={"anger": UP, "neutral": UP, "fear": UP, "disgust": UP})
    row = section_claims("3.4", others).set_index("id").loc["rank_sensitivity_order"]
    assert row["verdict"] == UNTESTABLE
    assert "lack sadness, happiness" in row["measured"] and "anger, neutral, fear, disgust" in row["criterion"]
    six = ranks(gains={"neutral": (0.0, -0.05, 0.05), "sadness": (0.2, 0.15, 0.25), "anger": (0.4, 0.35, 0.45),
                       "happiness": (0.6, 0.55, 0.65), "fear": DOWN, "disgust": UP})
    assert section_claims("3.4", six).set_index("id").loc["rank_sensitivity_order", "verdict"] == HOLDS
