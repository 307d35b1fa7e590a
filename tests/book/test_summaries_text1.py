"""The generated "what this run shows" of the Table 1, layer-contribution and logit-lens chapters, on small
constructed tables with known answers: the numbers appear, each verdict is put in the right words and linked to its
scorecard row, and a claim that fails is said not to hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.analysis.evidence import row
from helpers.analysis.uncertainty import Interval
from helpers.book import summaries
from helpers.book.scorecard import section_claims
from helpers.config import make_config


def _iv(value: float, half: float) -> Interval:
    return Interval(value, value - half, value + half)


def _link(verdict: str, claim_id: str) -> str:
    return f"[{verdict}](scorecard.html#claim-{claim_id})"


# ------------------------------------------------------------------------------------------------------------------
# Table 1


def _results(lora_uar: float, frozen_uar: float, *, std: float = 0.05, chosen: str = "2,3,1,2") -> pd.DataFrame:
    return pd.DataFrame([
        dict(model="tiny.en", size="tiny", mode="lora", protocol="speaker", n_folds=4, uar_mean=lora_uar,
             uar_std=std, war_mean=lora_uar + 0.01, war_std=std, f1_mean=lora_uar - 0.02, chosen_epochs=chosen),
        dict(model="tiny.en", size="tiny", mode="frozen", protocol="speaker", n_folds=4, uar_mean=frozen_uar,
             uar_std=std, war_mean=frozen_uar + 0.01, war_std=std, f1_mean=frozen_uar - 0.02, chosen_epochs="1,1,1,1"),
    ])


def _performance(lora: float, frozen: float, half: float, n_units: int = 8) -> pd.DataFrame:
    return pd.DataFrame([row("uar_gain.tiny", _iv(lora, 0.05), _iv(frozen, 0.05), _iv(lora - frozen, half),
                             size="tiny", n_units=n_units)])


def _protocols(lora_dialog: float, frozen_dialog: float) -> pd.DataFrame:
    return pd.DataFrame([dict(mode="lora", protocol="dialog", n_folds=1, uar_mean=lora_dialog),
                         dict(mode="frozen", protocol="dialog", n_folds=1, uar_mean=frozen_dialog),
                         dict(mode="lora", protocol="speaker", n_folds=4, uar_mean=0.871),
                         dict(mode="frozen", protocol="speaker", n_folds=4, uar_mean=0.642)])


def test_finetuning_summary_reports_table1_and_a_holding_verdict():
    evidence = _performance(0.861, 0.633, 0.04)
    text = summaries.finetuning_summary(_results(0.871, 0.642), evidence, section_claims("3.1", evidence),
                                        _protocols(0.917, 0.708), n_classes=4, config=make_config("demo"))
    for number in ("0.871 ± 0.050", "0.642 ± 0.050", "0.881", "0.622", "0.250", "0.229 UAR above",
                   "0.861 [0.811, 0.911]", "+0.228 [+0.188, +0.268]", "0.670", "0.485"):
        assert number in text, number
    assert f"Verdict: {_link('holds', 'lora_beats_frozen')}" in text
    assert "LoRA is better on these folds" in text and "Why this may differ" not in text
    assert _link("not testable", "uar_grows_with_size") in text and "one size (tiny)" in text
    assert "0.917 UAR against 0.871 under `speaker` (+0.046)" in text
    assert "here they do for both modes" in text and "1 fold against 4" in text


def test_finetuning_summary_says_when_the_frozen_encoder_wins_and_why():
    evidence, config = _performance(0.50, 0.60, 0.03), make_config("demo")
    last = config.epochs  # three of four folds chose the last epoch
    text = summaries.finetuning_summary(_results(0.50, 0.60, std=0.2, chosen=f"{last},{last},{last},{last - 1}"),
                                        evidence, section_claims("3.1", evidence), n_classes=4, config=config)
    assert f"Verdict: {_link('does not hold', 'lora_beats_frozen')}" in text
    assert "LoRA does no better than the frozen encoder on these folds" in text
    assert "The frozen encoder is better." in text
    assert "0.100 UAR below" in text and "-0.100 [-0.130, -0.070]" in text
    assert "standard deviation of LoRA's UAR (0.200) is larger than the mean gain (-0.100)" in text
    assert "synthetic" in text and "frozen UAR 0.600, chance 0.250" in text
    assert "peaked at the last epoch in 3 of 4 folds" in text
    assert "dialog" not in text  # no protocol table given


def test_finetuning_summary_inconclusive_and_no_reason_from_settings_it_was_not_given():
    evidence = _performance(0.60, 0.58, 0.05)
    text = summaries.finetuning_summary(_results(0.60, 0.58, std=0.01), evidence, section_claims("3.1", evidence),
                                        _protocols(0.55, 0.50), n_classes=4)
    assert f"Verdict: {_link('inconclusive', 'lora_beats_frozen')}" in text
    assert "cannot tell the two modes apart" in text
    assert "Why this may differ" not in text  # small spread, no config: no reason to offer
    assert "here they do not for every mode" in text


def test_finetuning_summary_chance_is_one_over_the_run_classes():
    evidence, config = _performance(0.50, 0.60, 0.03), make_config("demo", classes="all")
    text = summaries.finetuning_summary(_results(0.50, 0.60, std=0.2), evidence, section_claims("3.1", evidence),
                                        n_classes=6, config=config)
    assert "Chance is 0.167." in text and "chance 0.167" in text and "0.250" not in text


def test_finetuning_summary_without_any_pair_is_not_testable():
    empty = pd.DataFrame(columns=["quantity", "value", "low", "high"])
    text = summaries.finetuning_summary(_results(0.6, 0.5), empty, section_claims("3.1", empty), n_classes=4)
    assert f"Verdict: {_link('not testable', 'lora_beats_frozen')}" in text
    assert "nothing to compare" in text


# ------------------------------------------------------------------------------------------------------------------
# Layer contributions


def _contribution_table(d_ratio: dict[str, list[float]], d_cosine: list[float]) -> pd.DataFrame:
    rows = []
    for component, values in d_ratio.items():
        for layer, value in enumerate(values):
            rows.append(dict(layer=layer, component=component, d_ratio=value,
                             d_cosine=d_cosine[layer] if component == "attention+mlp" else 0.0, frames="all"))
    return pd.DataFrame(rows)


def _contribution_evidence(top: Interval, growth: Interval, attn: Interval, slope: Interval, last: Interval,
                           control: float = 0.001) -> pd.DataFrame:
    quantities = dict(top_d_ratio=top, growth=growth, top_attention_minus_mlp=attn, d_cosine_slope=slope,
                      last_d_cosine=last)
    rows = [row(q, iv, _iv(control, 0.002), Interval(iv.value - control, iv.low - control, iv.high - control))
            for q, iv in quantities.items()]
    return pd.DataFrame(rows).assign(control_kind="untrained-official", frames="all", n_units=8)


def test_contributions_summary_reads_the_figure_and_each_verdict():
    table = _contribution_table({"attention": [0.0, 0.01, 0.05, 0.30], "mlp": [0.0, 0.0, 0.02, 0.10],
                                 "attention+mlp": [0.01, -0.01, 0.06, 0.35]}, [0.0, -0.01, -0.05, -0.12])
    evidence = _contribution_evidence(top=_iv(0.35, 0.05), growth=_iv(0.31, 0.05), attn=_iv(0.20, 0.03),
                                      slope=_iv(-0.15, 0.02), last=_iv(-0.12, 0.01))
    text = summaries.contributions_summary(table, evidence, section_claims("3.2", evidence))
    assert "4 layers" in text and "0.010 in absolute value over the first half (layers 0-1)" in text
    assert "+0.350 over the top quarter (layer 3)" in text and "+0.350, is at layer 3" in text
    assert "attention's Δρ is +0.300 and the MLP's +0.100" in text and "Δκ of the sum there is -0.120" in text
    assert "+0.310 [+0.260, +0.360]" in text and "Over 8 units" in text
    for claim in ("contribution_grows_late", "attention_over_mlp", "cosine_negative_with_depth"):
        assert f"Verdict: {_link('holds', claim)}" in text, claim
    assert "Likely reasons" not in text


def test_contributions_summary_phrases_a_failing_growth_as_not_holding_with_its_reason():
    table = _contribution_table({"attention": [0.0, 0.04, 0.11, 0.13], "mlp": [0.01, 0.0, 0.11, -0.10],
                                 "attention+mlp": [0.0, 0.02, 0.14, -0.04]}, [0.0, -0.02, -0.03, -0.08])
    evidence = _contribution_evidence(top=_iv(-0.016, 0.05), growth=_iv(-0.06, 0.04), attn=_iv(0.17, 0.04),
                                      slope=_iv(0.05, 0.01), last=_iv(-0.08, 0.01))
    text = summaries.contributions_summary(table, evidence, section_claims("3.2", evidence))
    assert f"Verdict: {_link('does not hold', 'contribution_grows_late')}" in text
    assert "The top quarter's change is not larger than 4 x the early layers'" in text
    assert "top quarter is layer 3 and the first half layers 0-1, against 8 and 16 of the paper's 32" in text
    assert "the MLP's ratio falls at the top layer (-0.100) while attention's rises (+0.130)" in text
    assert f"Verdict: {_link('holds', 'attention_over_mlp')}" in text
    assert f"Verdict: {_link('does not hold', 'cosine_negative_with_depth')}" in text
    assert "does not fall with depth, or does not end below 0: against the paper" in text


def test_contributions_summary_inconclusive_attention():
    table = _contribution_table({"attention": [0.0] * 4, "mlp": [0.0] * 4, "attention+mlp": [0.0] * 4}, [0.0] * 4)
    evidence = _contribution_evidence(top=_iv(0.0, 0.05), growth=_iv(0.0, 0.05), attn=_iv(0.0, 0.05),
                                      slope=_iv(0.0, 0.05), last=_iv(0.0, 0.05))
    text = summaries.contributions_summary(table, evidence, section_claims("3.2", evidence))
    for claim in ("contribution_grows_late", "attention_over_mlp", "cosine_negative_with_depth"):
        assert f"Verdict: {_link('inconclusive', claim)}" in text, claim
    assert "cannot be told apart" in text


# ------------------------------------------------------------------------------------------------------------------
# Logit lens


def _lens_table(lora_kl: list[float], frozen_kl: list[float], lora_top: float, frozen_top: float) -> pd.DataFrame:
    n = len(lora_kl)
    parts = []
    for model, kl, top in (("lora", lora_kl, lora_top), ("frozen", frozen_kl, frozen_top)):
        overlap = np.full(n, 0.25)
        overlap[-1] = top
        parts.append(pd.DataFrame(dict(index=np.arange(n), depth=np.arange(n) / (n - 1), kl=kl, overlap=overlap,
                                       model=model, frames="all", final_norm=False, direction="paper")))
    return pd.concat(parts, ignore_index=True)


def _lens_evidence(argmin: Interval, rebound: Interval, lora_rebound: Interval, early_lora: Interval,
                   early_frozen: Interval, drop: Interval, rise_lora: Interval, rise_frozen: Interval,
                   top: Interval, n_layers: int = 4) -> pd.DataFrame:
    def diff(a: Interval, b: Interval) -> Interval:
        return Interval(a.value - b.value, a.low - b.high, a.high - b.low)

    rows = [row("frozen_argmin_depth", argmin, _iv(1.0, 0.0)),
            row("frozen_rebound", rebound, lora_rebound, diff(rebound, lora_rebound)),
            row("early_kl_gap", early_lora, early_frozen, diff(early_lora, early_frozen)),
            row("lora_late_drop", drop, _iv(0.3, 0.05)),
            row("overlap_rise_gap", rise_lora, rise_frozen, diff(rise_lora, rise_frozen)),
            row("lora_top_overlap", top, _iv(0.6, 0.05))]
    return pd.DataFrame(rows).assign(control_kind="frozen", frames="all", final_norm=False, direction="paper",
                                     n_units=8, n_layers=n_layers)


def test_lens_summary_when_the_paper_holds():
    lens = _lens_table([1.5, 1.5, 1.4, 0.5, 0.0], [0.8, 0.4, 0.2, 0.1, 0.3], 1.0, 0.75)
    evidence = _lens_evidence(argmin=Interval(0.75, 0.75, 0.75), rebound=_iv(0.2, 0.05), lora_rebound=_iv(-1.0, 0.1),
                              early_lora=_iv(1.5, 0.1), early_frozen=_iv(0.4, 0.1), drop=_iv(0.05, 0.01),
                              rise_lora=_iv(0.7, 0.05), rise_frozen=_iv(0.2, 0.05), top=_iv(0.95, 0.03))
    text = summaries.lens_summary(lens, evidence, section_claims("3.3", evidence))
    assert "from the embeddings (index 0) to the last layer's output (index 4)" in text
    assert "LoRA's KL goes from 1.500 to 0.000 (lowest at index 4)" in text
    assert "the frozen encoder's KL goes from 0.800 to 0.300 (lowest at index 3)" in text
    assert "top-1 agreement at index 4: LoRA 1.00, the frozen encoder 0.75" in text
    assert "KL(lens || prediction), as the paper writes it" in text
    for claim in ("frozen_kl_minimum", "frozen_kl_rebound", "lora_kl_high_then_late_drop",
                  "lora_overlap_rises_late"):
        assert f"Verdict: {_link('holds', claim)}" in text, claim
    assert "relative depth 0.75 [0.75, 0.75]" in text and "+0.200 [+0.150, +0.250]" in text
    assert "0.95 [0.92, 0.98]" in text and "Likely reason" not in text


def test_lens_summary_explains_a_minimum_at_the_top_as_not_holding():
    lens = _lens_table([1.7, 1.6, 1.5, 0.8, 0.04], [0.25, 0.22, 0.19, 0.18, 0.06], 0.79, 0.67)
    evidence = _lens_evidence(argmin=Interval(1.0, 1.0, 1.0), rebound=_iv(-0.13, 0.04),
                              lora_rebound=_iv(-0.9, 0.2), early_lora=_iv(1.5, 0.3), early_frozen=_iv(0.23, 0.07),
                              drop=_iv(0.03, 0.01), rise_lora=_iv(0.55, 0.1), rise_frozen=_iv(0.24, 0.06),
                              top=_iv(0.80, 0.06))
    text = summaries.lens_summary(lens, evidence, section_claims("3.3", evidence))
    assert f"Verdict: {_link('does not hold', 'frozen_kl_minimum')}" in text
    assert "keeps falling to the last layer, so there is no minimum below the top" in text
    assert "depths 0.00, 0.25, 0.50, 0.75, 1.00 only" in text and "last 5 of 32 layers" in text
    assert f"Verdict: {_link('does not hold', 'frozen_kl_rebound')}" in text and "there is no rebound" in text
    assert f"Verdict: {_link('holds', 'lora_kl_high_then_late_drop')}" in text
    assert f"Verdict: {_link('inconclusive', 'lora_overlap_rises_late')}" in text
    assert "not clearly above the 0.8" in text and "lacks the final LayerNorm" in text
    assert "omits the final LayerNorm" in text  # the last index is not the prediction itself


@pytest.mark.parametrize("direction, words", [("paper", "as the paper writes it"),
                                              ("official", "as the official code computes it")])
def test_lens_summary_names_the_kl_direction(direction, words):
    lens = _lens_table([1.0, 0.5, 0.0], [1.0, 0.5, 0.0], 1.0, 1.0)
    evidence = _lens_evidence(argmin=Interval(1.0, 1.0, 1.0), rebound=_iv(-0.5, 0.1), lora_rebound=_iv(-0.5, 0.1),
                              early_lora=_iv(0.75, 0.1), early_frozen=_iv(0.75, 0.1), drop=_iv(0.0, 0.0),
                              rise_lora=_iv(0.5, 0.1), rise_frozen=_iv(0.5, 0.1), top=_iv(1.0, 0.0),
                              n_layers=2).assign(direction=direction)
    text = summaries.lens_summary(lens, evidence, section_claims("3.3", evidence))
    assert words in text
    assert f"Verdict: {_link('inconclusive', 'lora_kl_high_then_late_drop')}" in text  # gap straddles 0
    assert "not the prediction itself" not in text  # the lens reaches the prediction at the top here


def test_no_depth_excuse_for_an_encoder_as_deep_as_the_papers():
    n = 32
    lens = _lens_table(list(np.linspace(1.0, 0.1, n + 1)), list(np.linspace(0.5, 0.05, n + 1)), 0.9, 0.9)
    evidence = _lens_evidence(argmin=Interval(1.0, 1.0, 1.0), rebound=_iv(-0.1, 0.02), lora_rebound=_iv(-0.5, 0.1),
                              early_lora=_iv(0.8, 0.1), early_frozen=_iv(0.4, 0.1), drop=_iv(0.1, 0.02),
                              rise_lora=_iv(0.6, 0.1), rise_frozen=_iv(0.2, 0.1), top=_iv(0.9, 0.02), n_layers=n)
    text = summaries.lens_summary(lens, evidence, section_claims("3.3", evidence))
    assert f"Verdict: {_link('does not hold', 'frozen_kl_minimum')}" in text
    assert "no minimum below the top" in text and "Likely reason" not in text

    layers = {c: [0.1] * n for c in ("attention", "mlp", "attention+mlp")}
    table = _contribution_table(layers, [0.0] * n)
    evidence = _contribution_evidence(top=_iv(0.1, 0.01), growth=_iv(-0.3, 0.05), attn=_iv(0.0, 0.01),
                                      slope=_iv(0.0, 0.01), last=_iv(0.0, 0.01))
    text = summaries.contributions_summary(table, evidence, section_claims("3.2", evidence))
    assert f"Verdict: {_link('does not hold', 'contribution_grows_late')}" in text
    assert "Likely reasons" not in text and "top quarter (layers 24-31)" in text


def test_finetuning_summary_a_zero_gain_is_no_better_not_worse():
    evidence = pd.DataFrame([row("uar_gain.tiny", _iv(0.3125, 0.06), _iv(0.3125, 0.06), Interval(0.0, 0.0, 0.0),
                                 size="tiny", n_units=2)])
    claims = section_claims("3.1", evidence)
    text = summaries.finetuning_summary(_results(0.3125, 0.3125, chosen="1,1"), evidence, claims,
                                        n_classes=4, config=make_config("smoke"))
    assert f"Verdict: {_link('does not hold', 'lora_beats_frozen')}" in text
    assert "LoRA does no better than the frozen encoder" in text and "The frozen encoder is better" not in text
    assert "level with the frozen encoder" in text
    assert "trained for 1 epoch (the official code: 20)" in text and "2 of 2 folds" in text
