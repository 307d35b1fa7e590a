"""The claims scorecard: each claim of the paper, what it reports, what this run measured, and a verdict.

Every measured value is computed from result tables (runs and traces), never typed in. Depth claims are judged
at relative depth (layer / number of layers) so a 4-layer model can be compared with the paper's 32 layers.
Verdicts: "holds", "does not hold", "not testable" (this profile lacks what the claim needs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import EMOTIONS
from .paper_reference import FROZEN_KL_MIN_LAYER, K90, LAYERS

__all__ = ["scorecard", "section_claims", "verdict_markdown"]

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable"


def _verdict(ok: bool | None) -> str:
    return UNTESTABLE if ok is None else (HOLDS if ok else FAILS)


def _claim(section: str, claim: str, paper: str, measured: str, ok: bool | None, how: str) -> dict:
    return dict(section=section, claim=claim, paper=paper, measured=measured, verdict=_verdict(ok), criterion=how)


def _performance_claims(results: pd.DataFrame) -> list[dict]:
    if results.duplicated(["size", "mode"]).any():
        raise ValueError("results hold several runs of one size and mode (e.g. several protocols): pass one per pair")
    by = results.pivot_table(index="size", columns="mode", values="uar_mean")
    rows = []
    if {"lora", "frozen"} <= set(by.columns):
        margins = (by["lora"] - by["frozen"]).dropna()
        rows.append(_claim("3.1", "LoRA beats the frozen encoder at every size", "e.g. large-v2 0.774 vs 0.582 UAR",
                           ", ".join(f"{s}: {m:+.3f} UAR" for s, m in margins.items()),
                           bool((margins > 0).all()) if len(margins) else None,
                           "mean UAR of LoRA minus frozen > 0 for every size run"))
    lora = by["lora"].dropna() if "lora" in by else pd.Series(dtype=float)
    order = ["tiny", "base", "small", "medium", "large-v2", "large-v3"]
    sizes = [s for s in order if s in lora.index]
    grows = None if len(sizes) < 2 else bool(np.all(np.diff(lora[sizes].to_numpy()) > 0))
    rows.append(_claim("3.1", "LoRA UAR grows with model size", "0.670 (tiny) ... 0.774 (large-v2)",
                       ", ".join(f"{s}: {lora[s]:.3f}" for s in sizes) or "one size only", grows,
                       "UAR strictly increasing over the sizes run (needs two or more sizes)"))
    return rows


def _contribution_claims(diff: pd.DataFrame) -> list[dict]:
    d = diff.pivot_table(index="depth", columns="component", values="d_ratio")
    c = diff.pivot_table(index="depth", columns="component", values="d_cosine")
    early, late = d[d.index <= 0.5], d[d.index > 0.75]
    early_size = float(early["attention+mlp"].abs().mean())
    late_total, late_attn, late_mlp = (float(late[k].mean()) for k in ("attention+mlp", "attention", "mlp"))
    rows = [
        _claim("3.2", "LoRA's contribution is near zero early and grows in the top layers",
               "negligible early, substantial at the top (Fig. 1a)",
               f"mean |d ratio| first half {early_size:.3f}; top quarter {late_total:+.3f}",
               late_total > 0 and early_size < 0.25 * late_total,
               "top-quarter mean d ratio (attn+MLP) > 0 and first-half mean |d ratio| below a quarter of it"),
        _claim("3.2", "In the top layers attention grows more than the MLP", "attention > MLP (Fig. 1a)",
               f"top quarter: attention {late_attn:+.3f}, MLP {late_mlp:+.3f}", late_attn > late_mlp,
               "top-quarter mean d ratio: attention > MLP"),
    ]
    total = c["attention+mlp"]
    slope = float(np.polyfit(total.index.to_numpy(), total.to_numpy(), 1)[0])
    rows.append(_claim("3.2", "Cosine differences grow negative with depth", "increasingly negative (Fig. 1b)",
                       f"slope of d cosine(attn+MLP) vs depth {slope:+.3f}; last layer {total.iloc[-1]:+.3f}",
                       slope < 0 and total.iloc[-1] < 0, "negative slope and negative last-layer value"))
    return rows


def _lens_claims(lens: pd.DataFrame) -> list[dict]:
    rows = []
    frozen = lens[(lens["model"] == "frozen") & (lens["depth"] < 1)]
    lora = lens[(lens["model"] == "lora") & (lens["depth"] < 1)]
    target = FROZEN_KL_MIN_LAYER / LAYERS
    if len(frozen):
        at = float(frozen.loc[frozen["kl"].idxmin(), "depth"])
        spacing = 1 / (len(frozen))
        rows.append(_claim("3.3", "The frozen encoder's KL has its minimum near 85% depth",
                           f"minimum near layer {FROZEN_KL_MIN_LAYER} of {LAYERS} ({target:.0%})",
                           f"minimum at depth {at:.0%}", abs(at - target) <= max(0.1, spacing),
                           "argmin depth within one layer spacing (at least 10 points) of 84%"))
    if len(lora):
        half = lora[lora["depth"] <= 0.5]["kl"].mean()
        top = float(lora["kl"].iloc[-1])
        rows.append(_claim("3.3", "LoRA's KL stays high, then drops late", "flat and high, then a late drop",
                           f"first-half mean KL {half:.3f}; last inner layer {top:.3f}", top < 0.5 * half,
                           "KL at the last inner hidden state < half the first-half mean"))
        mid = float(lora[lora["depth"] <= 0.5]["overlap"].mean())
        last = float(lora["overlap"].iloc[-1])
        rows.append(_claim("3.3", "LoRA's prediction overlap rises late, near perfect at the top",
                           "sharp rise from about layer 27", f"first-half mean {mid:.2f}; last inner layer {last:.2f}",
                           last - mid >= 0.2 and last >= 0.8,
                           "overlap at the last inner state >= 0.8 and >= 0.2 above the first-half mean"))
    return rows


def _rank_claims(sep: pd.DataFrame) -> list[dict]:
    ranks = sorted(sep["rank"].unique())
    if len(ranks) < 2:
        return [_claim("3.4", "Cluster separation grows with rank", "r=64 best, r=8 overlapping", "one rank only",
                       None, "needs two or more ranks")]
    top = sep[sep["index"] == sep["index"].max()].set_index("rank")
    sil = top["silhouette_all"]
    rows = [_claim("3.4", "Cluster separation grows with rank", "r=8 < r=32 < r=64 (t-SNE, Fig. 2b)",
                   ", ".join(f"r={r}: {sil[r]:.3f}" for r in ranks), bool(np.all(np.diff(sil[ranks].to_numpy()) > 0)),
                   "last-layer silhouette strictly increasing with rank")]
    gain = {c: float(top.loc[ranks[-1], f"silhouette_{c}"] - top.loc[ranks[0], f"silhouette_{c}"]) for c in EMOTIONS}
    order = sorted(gain, key=gain.get)
    paper_order = ["neutral", "sadness", "anger", "happiness"]
    rows.append(_claim("3.4", "Rank sensitivity: neutral < sadness < anger < happiness", " < ".join(paper_order),
                       " < ".join(f"{c} ({gain[c]:+.3f})" for c in order), order == paper_order,
                       f"order of last-layer silhouette gain from r={ranks[0]} to r={ranks[-1]} per class"))
    return rows


def _svd_claims(summary: pd.DataFrame) -> list[dict]:
    rows = []
    names = {"A": "LoRA_A activations", "A_grad": "LoRA_A gradients", "B": "LoRA_B activations",
             "B_grad": "LoRA_B gradients"}
    for r in summary.itertuples():
        if r.degenerate:
            measured, ok = f"undefined: the {r.baseline} baseline makes this quantity identically zero", None
        else:
            measured = f"{r.ratio:.2f}x (k90 {r.k_untrained:.1f} untrained vs {r.k_trained:.1f} trained)"
            ok = (r.ratio > 1) == (K90[r.kind] > 1) and 0.5 <= r.ratio / K90[r.kind] <= 2
        rows.append(_claim("3.5", f"k90 ratio untrained/trained, {names[r.kind]}", f"{K90[r.kind]}x", measured, ok,
                           "same side of 1 and within a factor of 2 of the paper's ratio"))
    return rows


def _cka_claims(forward_backward: pd.DataFrame, debiased: pd.DataFrame) -> list[dict]:
    fwd = forward_backward[forward_backward["direction"] == "forward"]["cka"]
    bwd = debiased[debiased["direction"] == "backward"]["cka"]
    return [
        _claim("3.6", "Forward CKA between LoRA_A and LoRA_B is high", "0.8-1.0 (Fig. 3e)",
               f"{fwd.min():.2f}-{fwd.max():.2f} ({forward_backward['kernel'].iloc[0]}, biased)",
               bool(fwd.between(0.8, 1.0).all()), "every module's forward CKA in [0.8, 1.0]"),
        _claim("3.6", "Gradient CKA varies widely, including negative values",
               "from high positive to negative (Fig. 3f)",
               f"debiased linear CKA {bwd.min():+.2f} to {bwd.max():+.2f}; the biased estimator cannot be negative",
               bool(bwd.min() < 0 and bwd.max() - bwd.min() > 0.3),
               "debiased CKA has a negative value and a range above 0.3 (standard linear CKA is never negative)"),
    ]


def scorecard(*, results: pd.DataFrame, contributions: pd.DataFrame, lens: pd.DataFrame,
              separability: pd.DataFrame, svd_summary: pd.DataFrame, cka_biased: pd.DataFrame,
              cka_debiased: pd.DataFrame) -> pd.DataFrame:
    """All claims with the paper's value, this run's value and the verdict."""
    rows = (_performance_claims(results) + _contribution_claims(contributions) + _lens_claims(lens)
            + _rank_claims(separability) + _svd_claims(svd_summary) + _cka_claims(cka_biased, cka_debiased))
    return pd.DataFrame(rows)


def section_claims(section: str, **tables) -> pd.DataFrame:
    """The claims of one paper section from the tables a chapter already has (e.g. `contributions=` for 3.2)."""
    makers = {"3.1": lambda: _performance_claims(tables["results"]),
              "3.2": lambda: _contribution_claims(tables["contributions"]),
              "3.3": lambda: _lens_claims(tables["lens"]),
              "3.4": lambda: _rank_claims(tables["separability"]),
              "3.5": lambda: _svd_claims(tables["svd_summary"]),
              "3.6": lambda: _cka_claims(tables["cka_biased"], tables["cka_debiased"])}
    if section not in makers:
        raise ValueError(f"section={section!r}; choose one of {sorted(makers)}")
    return pd.DataFrame(makers[section]())


def verdict_markdown(claims: pd.DataFrame) -> str:
    """One sentence per claim: what the paper says, what this run measured, and whether it holds here."""
    return "\n".join(f"- **{r.claim}** (paper: {r.paper}). This run: {r.measured}. Verdict: **{r.verdict}**."
                     for r in claims.itertuples())
