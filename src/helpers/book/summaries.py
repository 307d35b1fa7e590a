"""The "What this run shows" paragraphs of the chapters: Markdown with every number read from the run's tables.

Each function takes the tables and claims a chapter has already computed and returns Markdown (CommonMark: the book
renders generated Markdown without MyST math, so there is no `$...$` here). Every verdict links to its row of the
scorecard (`scorecard.html#claim-<id>`), and where the paper's claim does not hold or the test is inconclusive the
text says which differences between this run and the paper's set-up could explain it.
"""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.uncertainty import FAILS, HOLDS, INCONCLUSIVE, UNTESTABLE, Interval
from ..config import RunConfig
from .paper_reference import K90, LAYERS

__all__ = ["ranks_summary", "svd_summary", "cka_summary"]

_VERDICT_WORDS = {HOLDS: "holds", FAILS: "does not hold", INCONCLUSIVE: "is inconclusive",
                  UNTESTABLE: "is not testable here"}


def _iv(evidence: pd.DataFrame, quantity: str, prefix: str = "") -> Interval:
    """The interval of `quantity` (or its control / contrast with `prefix`); undefined when the row is missing."""
    hit = evidence[evidence["quantity"] == quantity]
    if hit.empty:
        return Interval.undefined()
    r = hit.iloc[0]
    name = prefix or "value"
    low, high = (f"{prefix}_low", f"{prefix}_high") if prefix else ("low", "high")
    return Interval(*(float(r[c]) if c in r and pd.notna(r[c]) else math.nan for c in (name, low, high)))


def _verdict_of(claims: pd.DataFrame, claim_id: str) -> str:
    hit = claims[claims["id"] == claim_id] if "id" in claims else claims.iloc[0:0]
    return str(hit["verdict"].iloc[0]) if len(hit) else UNTESTABLE


def _reads(claims: pd.DataFrame, claim_id: str) -> str:
    """"the claim holds / does not hold / ...", the verdict words linked to the claim's scorecard row."""
    words = _VERDICT_WORDS[_verdict_of(claims, claim_id)]
    return f"the claim [{words}](scorecard.html#claim-{claim_id})"


def _setup_differences(config: RunConfig | None, *, n_layers: int | None = None,
                       n_clips: int | None = None) -> list[str]:
    """What separates this run from the paper's (large-v2, 32 layers, IEMOCAP, 30 s inputs), as short phrases."""
    out = []
    if config is not None and config.model not in ("openai/whisper-large-v2", "large-v2"):
        out.append(f"Whisper {config.model.removeprefix('openai/whisper-')}, not large-v2")
    if n_layers is not None and n_layers < LAYERS:
        out.append(f"{n_layers} encoder layers, not {LAYERS}")
    if config is not None:
        if config.data == "demo":
            out.append("synthetic voices whose \"emotions\" are prosody settings (see the data chapter), not acted "
                       "emotion")
        if 0 < config.max_seconds < 30:
            out.append(f"{config.max_seconds} s inputs, not 30 s")
    if n_clips is not None:
        out.append(f"{n_clips} analysis clips")
    return out


def _setup_sentence(config: RunConfig | None, *, n_layers: int | None = None, n_clips: int | None = None) -> str:
    """One sentence listing `_setup_differences`, with a trailing space; empty when there is nothing to list."""
    parts = _setup_differences(config, n_layers=n_layers, n_clips=n_clips)
    return f"This run's set-up differs from the paper's: {'; '.join(parts)}. " if parts else ""


def _join(parts: list[str]) -> str:
    """Phrases joined into one sentence, its first letter capitalised (and nothing else: LoRA stays LoRA)."""
    text = parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + "; and " + parts[-1]
    return text[:1].upper() + text[1:]


def _side(iv: Interval, threshold: float) -> str:
    """Where an interval lies against a threshold, in words, with the boundary cases as `judge` reads them (an
    interval ending exactly at the threshold is not on the claimed side)."""
    if not iv.defined:
        return "is undefined"
    if iv.low > threshold:
        return f"lies above {threshold:g}"
    if iv.high < threshold:
        return f"lies below {threshold:g}"
    if iv.high == threshold:
        return f"lies at or below {threshold:g}"
    if iv.low == threshold:
        return f"lies at or above {threshold:g}"
    return f"contains {threshold:g}"


def ranks_summary(separability: pd.DataFrame, evidence: pd.DataFrame, claims: pd.DataFrame, *,
                  n_clips: int | None = None, config: RunConfig | None = None) -> str:
    """Section 3.4: silhouettes per rank at the top adapted layer against the label-shuffled null, the slope over
    log2(rank), how separation changes with depth (silhouette and kNN UAR per state), and the class order.

    `separability` is `helpers.analysis.tables.rank_separability`; `evidence` is `chapters.rank_evidence_for`;
    `claims` is `section_claims("3.4", evidence)`; `n_clips` the analysis set's size; `config` the run settings.
    """
    ranks = sorted(int(r) for r in separability["rank"].unique())
    x = "state" if "state" in separability else "index"
    states = sorted(int(s) for s in separability[x].unique())
    classes = [c for c in separability if c.startswith("silhouette_") and c != "silhouette_all"]
    chance = 1 / len(classes) if classes else math.nan
    lines = []
    sil = {r: _iv(evidence, f"silhouette.r{r}") for r in ranks}
    if len(ranks) < 2 or "silhouette_slope_log2_rank" not in set(evidence["quantity"]):
        lines.append(f"- **Rank.** Only rank {ranks[0]} was run, so whether separation grows with rank "
                     f"is not testable ([scorecard](scorecard.html#claim-separation_grows_with_rank)).")
    else:
        slope = _iv(evidence, "silhouette_slope_log2_rank")
        null = evidence.loc[evidence["quantity"] == "silhouette_top_rank_minus_null_q95", "null_q95"]
        null_q95 = float(null.iloc[0]) if len(null) else math.nan
        top_state = states[-1]
        lines.append(
            f"- **Rank.** At the top adapted layer ({top_state}) the silhouette is "
            + ", ".join(f"{sil[r].format()} at r = {r}" for r in ranks)
            + f"; with the labels shuffled its 95th percentile is {null_q95:.3f}. Per doubling of the rank the "
            f"silhouette changes by {slope.format(signed=True)}, an interval that {_side(slope, 0.0)}, so "
            f"{_reads(claims, 'separation_grows_with_rank')}.")
        if sil[ranks[-1]].defined and sil[ranks[-1]].high < 0.25:
            lines.append(
                f"- **How large is that?** The largest of these silhouettes, {max(sil[r].value for r in ranks):.3f}, "
                "is below 0.25, under which there is no substantial cluster structure (Kaufman and Rousseeuw's rule "
                "of thumb): whatever the t-SNE maps draw, the classes overlap in the full space.")
    first, last = states[0], states[-1]
    by = separability.set_index(["rank", x])
    rises = [r for r in ranks if by.loc[(r, last), "silhouette_all"] > by.loc[(r, first), "silhouette_all"]]
    peaks = [r for r in ranks if by.loc[r, "silhouette_all"].idxmax() == last]
    knn_top = ", ".join(f"r = {r}: {by.loc[(r, last), 'knn_uar']:.2f}" for r in ranks)
    knn_first = ", ".join(f"{by.loc[(r, first), 'knn_uar']:.2f}" for r in ranks)
    lines.append(
        f"- **Depth (fold shown in the figures).** From layer {first} to layer {last} the silhouette rises for "
        f"{len(rises)} of {len(ranks)} ranks and is highest at the top layer for {len(peaks)}; the cross-validated "
        f"kNN UAR at the top layer is {knn_top} (at layer "
        f"{first}: {knn_first}; chance {chance:.2f}). These per-layer numbers are single values on "
        f"{'the analysis set' if n_clips is None else f'{n_clips} clips'}, without intervals.")
    gains = evidence[evidence["quantity"].str.startswith("class_gain.")]
    if len(gains):
        order = list(gains.sort_values("value").itertuples())
        names = [r.emotion for r in order]
        where = (f" Neutral, the paper's least rank-sensitive class, comes {names.index('neutral') + 1} of "
                 f"{len(names)} here, and happiness, its most rank-sensitive, {names.index('happiness') + 1}."
                 if {"neutral", "happiness"} <= set(names) else "")
        lines.append(
            f"- **Classes.** The silhouette gain from r = {ranks[0]} to r = {ranks[-1]} per class, smallest first: "
            + ", ".join(f"{r.emotion} {Interval(r.value, r.low, r.high).format(signed=True)}" for r in order)
            + f".{where} Against the paper's order neutral < sadness < anger < happiness, "
            f"{_reads(claims, 'rank_sensitivity_order')}.")
    verdicts = {_verdict_of(claims, c) for c in ("separation_grows_with_rank", "rank_sensitivity_order")}
    if verdicts & {FAILS, INCONCLUSIVE}:
        lines.append("- **Why this run may differ from the paper.** "
                     + _setup_sentence(config, n_layers=len(states), n_clips=n_clips)
                     + "The rank runs train one fold and one seed, so the intervals cover the clips only; and the "
                     "paper reads its claims off t-SNE pictures, with no number or interval to compare with.")
    return "\n".join(lines)


def _bound(spectra: pd.DataFrame | None, kind: str) -> str:
    """The largest k90 the matrix of `kind` allows, in words: its number of singular values, and for LoRA_B's
    outputs the rank r (they are A's outputs times B transposed, so their rank is at most r)."""
    if spectra is None or not len(spectra):
        return ""

    def width(k: str) -> int | None:
        part = spectra[spectra["kind"] == k]
        return int(min(len(s) for s in part["spectrum"])) if len(part) else None

    own, r = width(kind), width("A")
    if kind == "B" and r is not None and (own is None or r < own):
        return f" (at most r = {r}: B's outputs are A's outputs times B transposed)"
    return f" (at most {own})" if own else ""


_SVD_NAMES = {"A": "LoRA_A activations", "A_grad": "LoRA_A gradients", "B": "LoRA_B activations",
              "B_grad": "LoRA_B gradients"}


def svd_summary(evidence: pd.DataFrame, claims: pd.DataFrame, spectra: pd.DataFrame | None = None, *,
                config: RunConfig | None = None, split: str | None = None) -> str:
    """Section 3.5: per matrix kind, k90 trained and under the control with intervals, their ratio against the
    paper's, and the verdict; the weight update's own k90; reasons where a claim fails.

    `evidence` is `helpers.analysis.evidence.svd_evidence`; `claims` is `section_claims("3.5", evidence)`;
    `spectra` (optional, from `svd_tables`) gives each matrix's width; `split` names the analysis set's split.
    """
    baseline = str(evidence["baseline"].iloc[0]) if "baseline" in evidence and len(evidence) else "the control"
    lines = []
    for kind in ("A", "A_grad", "B", "B_grad"):
        rows = evidence[evidence["quantity"] == f"k90_ratio.{kind}"]
        if rows.empty:
            continue
        r = rows.iloc[0]
        of = _bound(spectra, kind)
        if bool(r["degenerate"]):
            lines.append(f"- **{_SVD_NAMES[kind]}.** Under the {baseline} control this matrix is identically zero, "
                         f"so k90 and the ratio are undefined: {_reads(claims, f'k90_{kind}')}.")
            continue
        ratio = Interval(float(r["value"]), float(r["low"]), float(r["high"]))
        trained = Interval(float(r["k_trained"]), float(r["k_trained_low"]), float(r["k_trained_high"]))
        control = Interval(float(r["k_baseline"]), float(r["k_baseline_low"]), float(r["k_baseline_high"]))
        paper = K90[kind]
        lines.append(
            f"- **{_SVD_NAMES[kind]}.** Trained k90 {trained.format(1)} singular values{of}, {baseline} "
            f"{control.format(1)}: ratio untrained/trained {ratio.format(2)}, an interval that {_side(ratio, 1.0)} "
            f"(paper: {paper}x, {'above' if paper > 1 else 'below'} 1); {_reads(claims, f'k90_{kind}')}.")
    update = evidence[evidence["quantity"] == "k90.update_BA"]
    if len(update):
        trained, control = _iv(evidence, "k90.update_BA"), _iv(evidence, "k90.update_BA", "control")
        lines.append(
            f"- **The update itself.** The weight update (alpha/r) BA needs {trained.format(1)} singular values for "
            f"90% of its energy after training, against {control.format(1)} for the {baseline} draw: a property of "
            f"the weights alone, no clips involved ({int(update['n_units'].iloc[0])} fold models).")
    failing = [k for k in ("A", "A_grad", "B", "B_grad") if _verdict_of(claims, f"k90_{k}") in (FAILS, INCONCLUSIVE)]
    if failing:
        reasons = []
        if "B_grad" in failing:
            reasons.append("the released notebook passes the LoRA_A gradient spectra to its LoRA_B-gradient panel, "
                           "so the paper's 0.4x cannot be traced to the released code")
        if split is not None and split != "train":
            reasons.append("the official notebook takes gradients on 40 training clips, where a trained model's loss "
                           f"is typically small, and this chapter on clips of the {split} split")
        lines.append(f"- **Why {', '.join(_SVD_NAMES[k] for k in failing)} may differ from the paper.** "
                     + _setup_sentence(config) + (_join(reasons) + ". " if reasons else "")
                     + "A k90 also depends on the width of the matrix and the number "
                     "of frames, so only the ratio's side of 1 is judged, not its size.")
    return "\n".join(lines)


def cka_summary(evidence: pd.DataFrame, claims: pd.DataFrame, cka: pd.DataFrame,
                trained_vs_untrained: pd.DataFrame | None = None, *, config: RunConfig | None = None) -> str:
    """Section 3.6: forward CKA(A, B) against the random-B floor and the traced untrained adapter, the lowest
    gradient CKA (debiased), and, as the official notebook plots it, how far training moved each matrix.

    `evidence` is `helpers.analysis.evidence.cka_evidence`; `claims` is `section_claims("3.6", evidence)`; `cka` is
    `cka_tables` output (biased and debiased rows of the fold in the figures); `trained_vs_untrained` is
    `cka_trained_vs_untrained`.
    """
    lines = []
    fwd, floor = _iv(evidence, "forward_cka"), _iv(evidence, "forward_cka", "control")
    untrained = _iv(evidence, "forward_cka_untrained")
    in_band = fwd.defined and fwd.low >= 0.8 and fwd.high <= 1.0
    n_units = int(evidence["n_units"].iloc[0]) if "n_units" in evidence else None
    text = (f"- **Forward.** Biased linear CKA between LoRA_A's and LoRA_B's outputs, mean over modules: "
            f"{fwd.format(3)} over {n_units} fold models; {'inside' if in_band else 'not inside'} the paper's "
            "0.8-1.0.")
    if floor.defined:
        text += (f" A random B on the untrained adapter's A outputs gives {floor.format(3)}, and the traced untrained "
                 f"adapter {untrained.format(3)}.")
        if fwd.high < floor.low:
            text += (" Training *lowers* the alignment below what LoRA's algebra gives a random B. A random Gaussian "
                     "B nearly preserves the geometry of A's outputs; a trained B likely maps them into a few "
                     "directions (the SVD chapter's LoRA_B k90), which distorts it.")
        elif fwd.low > floor.high:
            text += " Training raises the alignment above what LoRA's algebra gives a random B."
    lines.append(text + f" Read against that floor, {_reads(claims, 'forward_cka_high')}.")
    debiased = cka[(cka["direction"] == "backward") & cka["debiased"].astype(bool)]
    low_row = evidence[evidence["quantity"] == "backward_cka_min"]
    if len(low_row):
        r = low_row.iloc[0]
        low = _iv(evidence, "backward_cka_min")
        text = (f"- **Backward.** Debiased linear CKA between the gradients at LoRA_A's and LoRA_B's outputs: the "
                f"lowest module, {r['module']}, has {low.format(3, signed=True)}, the range over modules is "
                f"{float(r['range_all']):.2f}")
        if len(debiased):
            negative = int((debiased["cka"] < 0).sum())
            text += (f"; in the fold shown, {negative} of {len(debiased)} modules are below 0 and "
                     f"{int((debiased['cka'] > debiased['null_q95']).sum())} above their permutation null's 95th "
                     "percentile")
        lines.append(text + f". The paper reports values from high positive to negative: "
                            f"{_reads(claims, 'gradient_cka_negative')}.")
    if trained_vs_untrained is not None and len(trained_vs_untrained):
        t = trained_vs_untrained
        means = t.groupby("matrix")["cka"].mean()
        layers = sorted(t["layer"].unique())
        edge = t[t["layer"].isin([layers[0], layers[-1]])].pivot_table(index="matrix", columns="layer", values="cka")
        lines.append(
            "- **What the official panel (e) plots.** CKA between the trained and the untrained adapter's outputs of "
            "the same matrix (1 = training left the geometry unchanged): "
            + ", ".join(f"{m} mean {means[m]:.2f} (layer {layers[0]}: {edge.loc[m, layers[0]]:.2f}, layer "
                        f"{layers[-1]}: {edge.loc[m, layers[-1]]:.2f})" for m in means.index)
            + ".")
    verdicts = {_verdict_of(claims, c) for c in ("forward_cka_high", "gradient_cka_negative")}
    if verdicts & {FAILS, INCONCLUSIVE}:
        reasons = []
        n_modules = int(cka["module"].nunique())
        if n_modules < LAYERS:
            reasons.append(f"there are {n_modules} adapted modules, not the paper's {LAYERS}, so fewer chances to "
                           "meet a negative gradient CKA")
        reasons.append("the released notebook computes every CKA with the biased estimator on positive "
                       "semi-definite kernels (linear and RBF), which cannot be negative, so the negative values of "
                       "the paper's Fig. 3f cannot come from the released code")
        lines.append("- **Why this run may differ from the paper.** " + _setup_sentence(config) + _join(reasons) + ".")
    return "\n".join(lines)
