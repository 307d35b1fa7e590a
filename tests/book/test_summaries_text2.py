"""The generated "What this run shows" paragraphs of the ranks, SVD and CKA chapters, on small constructed tables
with known verdicts: the numbers appear, each verdict is worded and linked to its scorecard row, and a claim that
fails is said not to hold, with the differences from the paper's set-up that may explain it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.analysis.evidence import row
from helpers.analysis.uncertainty import Interval
from helpers.book import summaries
from helpers.book.scorecard import section_claims
from helpers.config import make_config

EMOTIONS = ("anger", "happiness", "neutral", "sadness")
PAPER_ORDER = ("neutral", "sadness", "anger", "happiness")
DEMO = make_config("demo", max_seconds=3)


def _separability(top: dict[int, float]) -> pd.DataFrame:
    """Four adapted layers per rank; the silhouette rises linearly to `top[rank]` at layer 3."""
    rows = []
    for rank, s_top in top.items():
        for state in range(4):
            s = s_top * state / 3
            rows.append(dict(rank=rank, index=state, depth=state / 3, knn_uar=0.25 + 0.2 * state, silhouette_all=s,
                             **{f"silhouette_{c}": s for c in EMOTIONS}, state=state, definition="lora_a",
                             frames="all"))
    return pd.DataFrame(rows)


def _rank_evidence(slope: Interval, gains: dict[str, Interval], *, null_q95: float = -0.05) -> pd.DataFrame:
    rows = [row(f"silhouette.r{r}", Interval(v, v - 0.02, v + 0.02), rank=r)
            for r, v in ((8, 0.30), (32, 0.40), (64, 0.50))]
    rows.append(row("silhouette_slope_log2_rank", slope))
    rows.append(row("silhouette_top_rank_minus_null_q95", Interval(0.55, 0.53, 0.57), null_q95=null_q95))
    rows += [row(f"class_gain.{c}", iv, emotion=c) for c, iv in gains.items()]
    return pd.DataFrame(rows).assign(definition="lora_a", frames="all", state=3)


def _in_order(step: float) -> dict[str, Interval]:
    """Class gains increasing (step > 0) or decreasing (step < 0) along the paper's order, intervals +/- 0.01."""
    return {c: Interval(i * step, i * step - 0.01, i * step + 0.01) for i, c in enumerate(PAPER_ORDER)}


def test_ranks_summary_holds_with_every_number_and_links():
    evidence = _rank_evidence(Interval(0.067, 0.05, 0.08), _in_order(0.1))
    claims = section_claims("3.4", evidence)
    assert set(claims["verdict"]) == {"holds"}
    text = summaries.ranks_summary(_separability({8: 0.3, 32: 0.4, 64: 0.5}), evidence, claims, n_clips=48,
                                   config=DEMO)
    assert "0.300 [0.280, 0.320] at r = 8" in text and "0.500 [0.480, 0.520] at r = 64" in text
    assert "+0.067 [+0.050, +0.080]" in text and "lies above 0" in text and "-0.050" in text
    assert "the claim [holds](scorecard.html#claim-separation_grows_with_rank)" in text
    assert "the claim [holds](scorecard.html#claim-rank_sensitivity_order)" in text
    assert "rises for 3 of 3 ranks and is highest at the top layer for 3" in text
    assert "r = 64: 0.85" in text and "chance 0.25" in text and "48 clips" in text
    assert "Neutral, the paper's least rank-sensitive class, comes 1 of 4 here, and happiness, its most" in text
    assert "its most rank-sensitive, 4." in text
    assert "Why this run may differ" not in text  # nothing to explain when every claim holds
    assert "no substantial cluster structure" not in text  # 0.5 is above the rule of thumb's 0.25
    assert "$" not in text  # generated Markdown is rendered without MyST math


def test_ranks_summary_says_a_failing_claim_does_not_hold_and_why():
    evidence = _rank_evidence(Interval(-0.04, -0.06, -0.02), _in_order(-0.1))
    claims = section_claims("3.4", evidence)
    assert set(claims["verdict"]) == {"does not hold"}
    text = summaries.ranks_summary(_separability({8: 0.1, 32: 0.05, 64: 0.02}), evidence, claims, n_clips=48,
                                   config=DEMO)
    assert "lies below 0" in text
    assert "the claim [does not hold](scorecard.html#claim-separation_grows_with_rank)" in text
    assert "the claim [does not hold](scorecard.html#claim-rank_sensitivity_order)" in text
    assert "least rank-sensitive class, comes 4 of 4" in text
    reasons = text.split("Why this run may differ from the paper.")[1]
    for phrase in ("tiny.en", "4 encoder layers, not 32", "synthetic voices", "3 s inputs", "48 analysis clips",
                   "one fold"):
        assert phrase in reasons, phrase


def test_ranks_summary_inconclusive_and_small_silhouettes():
    evidence = _rank_evidence(Interval(0.008, -0.001, 0.019), _in_order(0.1))
    for q, (v, lo, hi) in {"silhouette.r64": (0.03, -0.01, 0.07)}.items():
        evidence.loc[evidence["quantity"] == q, ["value", "low", "high"]] = [v, lo, hi]
    claims = section_claims("3.4", evidence)
    text = summaries.ranks_summary(_separability({8: 0.0, 32: 0.01, 64: 0.03}), evidence, claims)
    assert "contains 0" in text
    assert "the claim [is inconclusive](scorecard.html#claim-separation_grows_with_rank)" in text
    assert "no substantial cluster structure" in text and "0.300" in text  # the largest top-layer silhouette
    assert "Why this run may differ from the paper." in text and "one fold and one seed" in text


def test_ranks_summary_with_one_rank_is_not_testable():
    evidence = pd.DataFrame([row("silhouette.r32", Interval(0.2, 0.1, 0.3), rank=32)]).assign(frames="all")
    claims = section_claims("3.4", evidence)
    text = summaries.ranks_summary(_separability({32: 0.2}), evidence, claims)
    assert "is not testable" in text and "scorecard.html#claim-separation_grows_with_rank" in text


def _svd_row(kind: str, ratio: Interval | None, k_trained: float = 2.0, k_baseline: float = 10.0,
             degenerate: bool = False) -> dict:
    iv = ratio or Interval.undefined()
    return row(f"k90_ratio.{kind}", iv, kind=kind, k_trained=k_trained, k_trained_low=k_trained - 0.5,
               k_trained_high=k_trained + 0.5, k_baseline=np.nan if degenerate else k_baseline,
               k_baseline_low=np.nan if degenerate else k_baseline - 1,
               k_baseline_high=np.nan if degenerate else k_baseline + 1, degenerate=degenerate,
               clip_resampling=kind.startswith("A"))


def _svd_evidence(rows: list[dict], baseline: str = "untrained-official") -> pd.DataFrame:
    update = row("k90.update_BA", Interval(5.0, 4.5, 5.5), Interval(26.0, 26.0, 26.0), kind="update_BA",
                 k_trained=5.0, k_trained_low=4.5, k_trained_high=5.5, k_baseline=26.0, k_baseline_low=26.0,
                 k_baseline_high=26.0, degenerate=False, clip_resampling=False)
    return pd.DataFrame([*rows, update]).assign(baseline=baseline, frames="all", centred=False, n_units=8)


def _spectra(r: int = 8, d: int = 16) -> pd.DataFrame:
    widths = {"A": r, "A_grad": r, "B": d, "B_grad": d}
    return pd.DataFrame([dict(kind=k, model=m, spectrum=np.ones(w) / w, k=w * 0.9)
                         for k, w in widths.items() for m in ("trained", "untrained-official")])


def test_svd_summary_reads_each_ratio_against_the_paper():
    evidence = _svd_evidence([
        _svd_row("A", Interval(5.0, 4.0, 6.0)),               # paper 5.5x: holds
        _svd_row("A_grad", Interval(1.1, 0.9, 1.3)),          # straddles 1: inconclusive
        _svd_row("B", Interval(7.0, 6.5, 7.5)),               # paper 10.4x: holds
        _svd_row("B_grad", Interval(2.96, 2.84, 3.19), 38.4, 112.9),  # paper 0.4x: the must-fail case
    ])
    claims = section_claims("3.5", evidence)
    assert claims.set_index("id")["verdict"].to_dict() == {
        "k90_A": "holds", "k90_A_grad": "inconclusive", "k90_B": "holds", "k90_B_grad": "does not hold"}
    text = summaries.svd_summary(evidence, claims, _spectra(), config=DEMO, split="heldout")
    assert "Trained k90 2.0 [1.5, 2.5] singular values (at most 8)" in text
    assert "(at most r = 8: B's outputs are A's outputs times B transposed)" in text
    assert "ratio untrained/trained 5.00 [4.00, 6.00], an interval that lies above 1 (paper: 5.5x, above 1)" in text
    assert "the claim [holds](scorecard.html#claim-k90_A)" in text
    assert "contains 1" in text and "the claim [is inconclusive](scorecard.html#claim-k90_A_grad)" in text
    assert "38.4 [37.9, 38.9]" in text and "112.9 [111.9, 113.9]" in text and "(paper: 0.4x, below 1)" in text
    assert "the claim [does not hold](scorecard.html#claim-k90_B_grad)" in text
    assert "5.0 [4.5, 5.5]" in text and "26.0 [26.0, 26.0]" in text and "8 fold models" in text
    why = text.split("may differ from the paper.**")[1]
    assert "LoRA_B-gradient panel" in why and "heldout split" in why and "3 s inputs" in why
    assert "and the official notebook takes gradients" in why  # one reason list, joined once
    assert "$" not in text


def test_svd_summary_degenerate_control_is_not_testable():
    evidence = _svd_evidence([_svd_row("A", Interval(1.3, 1.2, 1.4)), _svd_row("B", None, degenerate=True)],
                             baseline="untrained-peft")
    claims = section_claims("3.5", evidence)
    text = summaries.svd_summary(evidence, claims)
    assert "untrained-peft control this matrix is identically zero" in text
    assert "the claim [is not testable here](scorecard.html#claim-k90_B)" in text
    assert "may differ from the paper" not in text  # nothing fails


def _cka_evidence(forward: Interval, floor: Interval, q95: float, lowest: Interval) -> pd.DataFrame:
    contrast = Interval(forward.value - q95, forward.low - q95, forward.high - q95)
    rows = [row("forward_cka", forward, floor, contrast, module="mean over modules", null_q95=q95, n_draws=160),
            row("forward_cka_untrained", Interval(0.999, 0.998, 0.999), module="mean over modules"),
            row("backward_cka_min", lowest, Interval(0.97, 0.96, 0.98), module="lora.3.v_proj", range_all=0.07)]
    return pd.DataFrame(rows).assign(control_kind="untrained-official", frames="all", kernel="linear", n_units=8)


def _cka_values(backward: list[float]) -> pd.DataFrame:
    rows = []
    for layer, b in enumerate(backward):
        for debiased in (False, True):
            rows += [dict(module=f"lora.{layer}.v_proj", layer=layer, projection="v_proj", direction="forward",
                          debiased=debiased, cka=0.9, null_q95=0.2),
                     dict(module=f"lora.{layer}.v_proj", layer=layer, projection="v_proj", direction="backward",
                          debiased=debiased, cka=abs(b) if not debiased else b, null_q95=0.1)]
    return pd.DataFrame(rows)


def _trained_vs_untrained() -> pd.DataFrame:
    return pd.DataFrame([dict(module=f"lora.{l}.v_proj", layer=l, projection="v_proj", matrix=m, cka=v)
                         for l, (a, b) in enumerate([(0.9, 0.7), (0.5, 0.3)]) for m, v in (("A", a), ("B", b))])


def test_cka_summary_must_fail_case_is_said_not_to_hold():
    evidence = _cka_evidence(Interval(0.905, 0.897, 0.912), Interval(0.999, 0.999, 0.999), 0.9995,
                             Interval(0.919, 0.882, 0.947))
    claims = section_claims("3.6", evidence)
    assert set(claims["verdict"]) == {"does not hold"}
    text = summaries.cka_summary(evidence, claims, _cka_values([0.92, 0.95]), _trained_vs_untrained(), config=DEMO)
    assert "0.905 [0.897, 0.912] over 8 fold models; inside the paper's 0.8-1.0" in text
    assert "0.999 [0.999, 0.999]" in text and "*lowers* the alignment" in text
    assert "the claim [does not hold](scorecard.html#claim-forward_cka_high)" in text
    assert "lora.3.v_proj, has +0.919 [+0.882, +0.947]" in text and "0.07" in text
    assert "0 of 2 modules are below 0 and 2 above" in text
    assert "the claim [does not hold](scorecard.html#claim-gradient_cka_negative)" in text
    assert "A mean 0.70 (layer 0: 0.90, layer 1: 0.50), B mean 0.50 (layer 0: 0.70, layer 1: 0.30)" in text
    why = text.split("Why this run may differ from the paper.")[1]
    assert "cannot be negative" in why and "2 adapted modules" in why and "synthetic voices" in why
    assert "$" not in text


def test_cka_summary_holds_and_inconclusive():
    evidence = _cka_evidence(Interval(0.95, 0.93, 0.97), Interval(0.5, 0.4, 0.6), 0.6, Interval(-0.3, -0.4, -0.2))
    claims = section_claims("3.6", evidence)
    assert set(claims["verdict"]) == {"holds"}
    text = summaries.cka_summary(evidence, claims, _cka_values([-0.3, 0.5]))
    assert "raises the alignment" in text and "1 of 2 modules are below 0" in text
    assert "the claim [holds](scorecard.html#claim-forward_cka_high)" in text
    assert "the claim [holds](scorecard.html#claim-gradient_cka_negative)" in text
    assert "Why this run may differ" not in text
    straddling = _cka_evidence(Interval(0.85, 0.78, 0.92), Interval(0.5, 0.4, 0.6), 0.6, Interval(0.1, -0.1, 0.3))
    text = summaries.cka_summary(straddling, section_claims("3.6", straddling), _cka_values([0.1, 0.5]))
    assert "not inside the paper's 0.8-1.0" in text
    assert "the claim [is inconclusive](scorecard.html#claim-forward_cka_high)" in text
    assert "the claim [is inconclusive](scorecard.html#claim-gradient_cka_negative)" in text


@pytest.mark.parametrize("name", summaries.__all__)
def test_every_summary_is_documented(name):
    assert getattr(summaries, name).__doc__


def test_svd_energy_figure_plots_the_cumulative_energy_that_k90_reads():
    from helpers.book.plots import spectra_figure

    sv = np.array([2.0, 1.0, 1.0])
    spectra = pd.DataFrame([dict(kind=k, model=m, layer=0, spectrum=sv / sv.sum(), k=3.0)
                            for k in ("A", "A_grad", "B", "B_grad") for m in ("trained", "untrained-official")])
    fig = spectra_figure(spectra, None)
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [4 / 6, 5 / 6, 1.0])  # E(k) = sum_{i<=k} sv_i^2 / sum sv^2
    assert any(np.allclose(l.get_ydata(), 0.9) for l in fig.axes[0].get_lines())  # the 90% line
    with pytest.raises(ValueError, match="scale"):
        spectra_figure(spectra, None, scale="log")


def test_an_interval_ending_at_the_threshold_reads_as_the_verdict_does():
    evidence = _svd_evidence([_svd_row("A", Interval(0.98, 0.96, 1.0)), _svd_row("B_grad", Interval(1.2, 1.0, 1.4))])
    claims = section_claims("3.5", evidence)
    assert claims.set_index("id")["verdict"].to_dict() == {"k90_A": "does not hold", "k90_B_grad": "does not hold"}
    text = summaries.svd_summary(evidence, claims)
    assert "an interval that lies at or below 1 (paper: 5.5x, above 1); the claim [does not hold]" in text
    assert "an interval that lies at or above 1 (paper: 0.4x, below 1); the claim [does not hold]" in text


def test_ranks_summary_of_one_clip_per_class_says_separation_is_undefined():
    """A paper rehearsal's analysis set has one clip per class: every silhouette and kNN UAR is NaN, and the
    depth line says so instead of failing on an all-NaN idxmax."""
    evidence = _rank_evidence(Interval(0.067, 0.05, 0.08), _in_order(0.1))
    claims = section_claims("3.4", evidence)
    undefined = _separability({8: 0.3, 32: 0.4, 64: 0.5}).assign(
        silhouette_all=np.nan, knn_uar=np.nan, **{f"silhouette_{c}": np.nan for c in EMOTIONS})
    text = summaries.ranks_summary(undefined, evidence, claims, n_clips=4, config=DEMO)
    assert "Silhouettes and kNN UAR are undefined on 4 clips: no class has two clips" in text
    assert "rises for" not in text
