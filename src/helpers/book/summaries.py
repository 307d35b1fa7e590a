"""Each chapter's "What this run shows": Markdown whose every number is read from the run's own tables.

Each function takes the tables, evidence and claims a chapter has already computed and returns Markdown: each verdict
put in words and linked to its scorecard row (`scorecard.html#claim-<id>`), and where the paper's claim does not hold
or the test is inconclusive, the differences between this run's set-up and the paper's that could explain it.

The text is rendered as a notebook's Markdown output, which the book renders as CommonMark: no `$...$` math and no
pipe tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..analysis.uncertainty import FAILS, HOLDS, INCONCLUSIVE, UNTESTABLE, Interval, judge
from ..config import RunConfig
from .paper_reference import FROZEN_KL_MIN_LAYER, K90, LAYERS, TABLE1

__all__ = [
    "corpus_summary",
    "data_summary",
    "finetuning_summary",
    "contributions_summary",
    "lens_summary",
    "ranks_summary",
    "svd_summary",
    "cka_summary",
    "causal_summary",
]

PAPER_EPOCHS = 20  # the official train_lora.py: num_train_epochs=20

_VERDICT_WORDS = {HOLDS: "holds", FAILS: "does not hold", INCONCLUSIVE: "is inconclusive",
                  UNTESTABLE: "is not testable here"}


def _interval(evidence: pd.DataFrame, quantity: str, prefix: str = "") -> Interval:
    """The interval of `quantity` (or its control / contrast with `prefix`); undefined when the row is missing."""
    hit = evidence[evidence["quantity"] == quantity]
    if hit.empty:
        return Interval.undefined()
    r = hit.iloc[0]
    name = prefix or "value"
    low, high = (f"{prefix}_low", f"{prefix}_high") if prefix else ("low", "high")
    return Interval(*(float(r[c]) if c in r and pd.notna(r[c]) else math.nan for c in (name, low, high)))


def corpus_summary(table: pd.DataFrame) -> str:
    """The data chapter's account of the corpus a run read (`helpers.training.runs.load_corpus`'s table): which
    corpus, how many clips, speakers and classes (with chance), the label map applied, and what was left out
    (`helpers.data.corpora.left_out_table`), or that nothing was."""
    from ..data.corpora import left_out_table

    attrs = table.attrs
    classes = list(attrs.get("classes") or sorted(table["label"].unique()))
    counts = table["label"].value_counts()
    corpus = attrs.get("corpus") or "?"
    lines = [f"- **Corpus.** `{corpus}`, read from {attrs.get('source', '?')}: {len(table)} clips from "
             f"{table['speaker'].nunique()} speakers in {len(classes)} classes, the model's outputs in this order: "
             + ", ".join(f"{c} ({int(counts.get(c, 0))} clips)" for c in classes)
             + f". Chance UAR is 1/{len(classes)} = {1 / len(classes):.3f}."]
    label_map = attrs.get("label_map") or {}
    if label_map and all(raw == target for raw, target in label_map.items()):
        lines.append("- **Label map.** None needed: the corpus's labels are the class names.")
    elif label_map:
        by_target: dict[str, list[str]] = {}
        for raw, target in label_map.items():
            by_target.setdefault(target, []).append(str(raw))
        lines.append("- **Label map applied** (corpus label → class): "
                     + "; ".join(f"{', '.join(raws)} → {target}" for target, raws in by_target.items()) + ".")
    lines.append(_level_line(table))
    left = left_out_table(table)
    dropped = left[left["left_out"]] if len(left) else left
    checked = (attrs.get("validation") or {}).get("checked")
    if not len(left):
        lines.append("- **Left out.** Nothing: every clip the reader found has a label among the classes"
                     + (f", and all {checked} passed validation" if checked is not None else "") + ".")
    else:
        parts = [f"{int(r.count)} {r.what}" for r in left.itertuples()]
        lines.append(f"- **Left out.** {int(dropped['count'].sum()) if len(dropped) else 0} item(s) in all, by "
                     "reason (listed in the table below): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def _level_line(table: pd.DataFrame) -> str:
    """The corpus account's line on clip levels: the `level` setting and the spread of peak levels it meets."""
    from ..data.corpora import load_audio
    from ..data.levels import peak_dbfs

    level = table.attrs.get("level", "none")
    if "path" in table and len(table):
        sample = table.sample(n=min(len(table), 200), random_state=0)
        peaks = np.array([peak_dbfs(load_audio(p)) for p in sample["path"]])
        low, mid, high = np.percentile(peaks, [5, 50, 95])
        spread = (f"clip peaks span {high - low:.1f} dB (5th to 95th percentile of {len(sample)} clips, "
                  f"{low:.1f} to {high:.1f} dBFS, median {mid:.1f})")
    else:
        spread = "clip levels were not measured (the table names no audio files)"
    meaning = {"none": "clips enter the log-mel as recorded (`level=none`, the official code's choice), and "
                       "Whisper's log-mel features are not level-invariant",
               "peak": "each clip is scaled so its peak is at -1 dBFS before the log-mel (`level=peak`)",
               "loudness": "each clip is scaled so its active-speech RMS is at -23 dBFS before the log-mel "
                           "(`level=loudness`)"}[level]
    return f"- **Level.** As read, {spread}; {meaning}."


def data_summary(prosody: pd.DataFrame, baseline: np.ndarray, *, features, fold_names, n_classes: int) -> str:
    """The data chapter's reading of its prosody measurements and the prosody-only classifier's test UAR per fold.

    `baseline` holds that classifier's test UAR per fold (`helpers.analysis.probes.probe_uar_per_fold`) on the
    prosody columns `features`.
    """
    baseline = np.asarray(baseline, dtype=float)
    chance = 1 / n_classes
    per_fold = ", ".join(f"{name} {u:.2f}" for name, u in zip(fold_names, baseline))
    spread = prosody.groupby("label")[["f0_range_st"]].median()["f0_range_st"]
    widest, narrowest = spread.idxmax(), spread.idxmin()
    unvoiced = int(prosody["f0_median_hz"].isna().sum())
    text = (f"A logistic regression on the {len(features)} "
            f"prosody numbers of each clip, trained on each fold's training split and tested on its test split "
            f"(its held-out speakers, sessions or dialogs), reaches a mean test UAR of **{baseline.mean():.2f}** "
            f"(chance {chance:.2f}; per fold: "
            f"{per_fold}). ")
    if baseline.mean() >= 0.8:
        text += ("The classes are separable by design from a handful of prosodic numbers; a Whisper model that "
                 "learns the task should come close to this, and the finetuning chapter reads Table 1 against it. ")
    elif baseline.mean() >= chance + 0.15:
        text += ("Prosody alone separates the classes only in part here; the rest, if any, must come from what the "
                 "prosody numbers do not measure (voice quality, timing within the sentence, words). ")
    else:
        text += ("Prosody alone hardly separates the classes here: these numbers carry little of the label, "
                 "as expected where emotions are not made by prosody settings. ")
    text += (f"The widest median pitch range is that of *{widest}* ({spread[widest]:.1f} semitones), the narrowest "
             f"that of *{narrowest}* ({spread[narrowest]:.1f}).")
    if unvoiced:
        text += f" {unvoiced} clip(s) had no voiced frame; they are scored as the majority class, not dropped."
    return text


def _verdict_link(claims: pd.DataFrame, claim_id: str) -> tuple[str, str]:
    """The verdict of claim `claim_id` and a Markdown link from it to the claim's scorecard row."""
    hit = claims[claims["id"] == claim_id]
    verdict = str(hit["verdict"].iloc[0]) if len(hit) else UNTESTABLE
    return verdict, f"[{verdict}](scorecard.html#claim-{claim_id})"


def _folds(n: int) -> str:
    """'1 fold', '4 folds': a rehearsal cut to one fold reads as English."""
    return f"{n} fold{'s' if n != 1 else ''}"


def _pm(mean: float, std: float) -> str:
    """'0.531 +/- 0.062', or the mean alone where there is no spread (one fold)."""
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f} (one fold, no spread)"


def _layers(layers) -> str:
    """[3] -> 'layer 3'; [0, 1] -> 'layers 0-1'."""
    layers = [int(x) for x in layers]
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return f"layers {layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else \
        "layers " + ", ".join(map(str, layers))


# ------------------------------------------------------------------------------------------------------------------
# Table 1


# which classifier a run trained, in one sentence: the paper's all-positions mean or our speech pooling
POOLING_SENTENCES = {
    "mean": "The classifier averages over all input positions, padding included (`pooling=mean`: the paper's and "
            "the official code's model).",
    "speech": "The classifier averages over each clip's speech positions only, every clip computed at its own "
              "length (`pooling=speech`: not the paper's model, which averages over all positions, padding "
              "included)."}


def finetuning_summary(results: pd.DataFrame, evidence: pd.DataFrame, claims: pd.DataFrame,
                       protocols: pd.DataFrame | None = None, *, n_classes: int,
                       config: RunConfig | None = None) -> str:
    """What Table 1 of this run shows, in Markdown.

    `results`: `helpers.book.results.results_table` of the main LoRA and frozen runs (one row per mode, with size,
    protocol, n_folds, uar_mean, uar_std, war_mean, f1_mean); `evidence`: `performance_evidence` (rows
    `uar_gain.<size>`); `claims`: `section_claims("3.1", evidence)`; `protocols`: `results_table` of the protocol
    comparison (mode, protocol, n_folds, uar_mean), or None; `n_classes`: the run's number of classes (chance is
    1 / n_classes); `config`: the main LoRA run's settings (its corpus, epochs and input length enter the likely
    reasons when the claim does not hold).
    """
    by_mode = results.set_index("mode")
    lora, frozen = by_mode.loc["lora"], by_mode.loc["frozen"]
    size, protocol = str(lora["size"]), str(lora["protocol"])
    diff = float(lora["uar_mean"] - frozen["uar_mean"])
    side = "above" if diff > 0 else "below" if diff < 0 else "level with"
    lines = [
        f"- **Table 1 in this run** (Whisper {size}, `{protocol}` protocol, {_folds(int(lora['n_folds']))} of the "
        f"first training seed). LoRA: UAR {_pm(lora['uar_mean'], lora['uar_std'])}, WAR {lora['war_mean']:.3f}, "
        f"macro-F1 {lora['f1_mean']:.3f}. Frozen encoder: UAR {_pm(frozen['uar_mean'], frozen['uar_std'])}, WAR "
        f"{frozen['war_mean']:.3f}, macro-F1 {frozen['f1_mean']:.3f}. Chance is {1 / n_classes:.3f}. LoRA is "
        f"{f'{abs(diff):.3f} UAR ' if diff else ''}{side} the frozen encoder on these folds."
        + (f" The paper reports {TABLE1[size]['lora_uar'][0]:.3f} (LoRA) and {TABLE1[size]['frozen_uar'][0]:.3f} "
           f"(frozen) for {size} on IEMOCAP under the official folds." if size in TABLE1 else "")
        + (f" {POOLING_SENTENCES[config.pooling]}" if config is not None else "")]

    verdict, link = _verdict_link(claims, "lora_beats_frozen")
    gains = evidence[evidence["quantity"].str.startswith("uar_gain.")] if len(evidence) else evidence
    reading = {HOLDS: "The whole interval lies above 0: LoRA is better on these folds, as the paper says.",
               FAILS: "No part of the interval lies above 0: LoRA does no better than the frozen encoder on these "
                      "folds, against the paper's claim.",
               INCONCLUSIVE: "The interval contains 0: with this many pairs the run cannot tell the two modes "
                             "apart.",
               UNTESTABLE: "No model size has both a LoRA and a frozen run, so there is nothing to compare."}
    for r in gains.itertuples():
        q = r.quantity
        behind = verdict == FAILS and r.contrast_high < 0
        lines.append(
            f"- **Does LoRA beat the frozen encoder ({r.size})?** Over {int(r.n_units)} pairs of runs (fold x "
            f"training seed), the mean test UAR is {_interval(gains, q).format()} for LoRA and "
            f"{_interval(gains, q, 'control').format()} for the frozen encoder; the paired difference LoRA - frozen "
            f"is {_interval(gains, q, 'contrast').format(signed=True)} (95% interval from resampling the pairs). "
            f"{reading[verdict]}{' The frozen encoder is better.' if behind else ''} Verdict: {link}.")
    if gains.empty:
        lines.append(f"- **Does LoRA beat the frozen encoder?** {reading[UNTESTABLE]} Verdict: {link}.")
    if verdict in (FAILS, INCONCLUSIVE) and len(gains):
        gain = _interval(gains, gains["quantity"].iloc[0], "contrast")
        n_units = int(gains["n_units"].iloc[0])
        reasons = []
        spread = float(lora["uar_std"])
        if np.isfinite(spread) and spread > abs(gain.value):
            reasons.append(f"the fold-to-fold standard deviation of LoRA's UAR ({spread:.3f}) is larger than the "
                           f"mean gain ({gain.value:+.3f}), and there are only {n_units} pairs")
        if config is not None and config.data == "demo" and frozen["uar_mean"] > 1 / n_classes:
            reasons.append("the demo corpus is synthetic: its emotions are prosody settings of synthesized voices, "
                           f"cues the frozen encoder's output may already carry (frozen UAR "
                           f"{frozen['uar_mean']:.3f}, chance {1 / n_classes:.3f}), so LoRA may have less to add "
                           "than on acted human speech")
        chosen = [int(e) for e in str(lora.get("chosen_epochs", "")).split(",") if e.strip().isdigit()]
        if config is not None and chosen and 2 * sum(e == config.epochs for e in chosen) >= len(chosen):
            reasons.append(f"LoRA trained for {config.epochs} epoch{'s' * (config.epochs != 1)} (the official "
                           f"code: {PAPER_EPOCHS}) and its "
                           f"validation score peaked at the last epoch in {sum(e == config.epochs for e in chosen)} "
                           f"of {len(chosen)} folds, so it likely stopped before it had learned what it can")
        if reasons:
            lines.append("- **Why this may differ from the paper.** Likely reasons: " + "; ".join(reasons) + ".")

    verdict, link = _verdict_link(claims, "uar_grows_with_size")
    hit = claims[claims["id"] == "uar_grows_with_size"]
    measured = str(hit["measured"].iloc[0]) if len(hit) else "-"
    if verdict == UNTESTABLE:
        lines.append(f"- **Does LoRA's UAR grow with model size?** This run trains one size ({size}); the claim "
                     f"needs runs of two or more sizes. Verdict: {link}.")
    else:
        lines.append(f"- **Does LoRA's UAR grow with model size?** {measured}. Verdict: {link}.")

    if protocols is not None and len(protocols):
        lines += _protocol_lines(protocols, protocol)
    return "\n".join(lines)


def _protocol_lines(protocols: pd.DataFrame, main: str) -> list[str]:
    """One line per protocol other than `main`: each mode's UAR there and its difference from `main`."""
    table = protocols.set_index(["protocol", "mode"])
    if main not in table.index.get_level_values(0):
        return []
    n_main = int(table.loc[(main, "lora"), "n_folds"])
    lines = []
    for other in dict.fromkeys(protocols["protocol"]):
        if other == main:
            continue
        parts, diffs = [], []
        for mode, name in (("lora", "LoRA"), ("frozen", "the frozen encoder")):
            if (other, mode) in table.index and (main, mode) in table.index:
                there, here = float(table.loc[(other, mode), "uar_mean"]), float(table.loc[(main, mode), "uar_mean"])
                diffs.append(there - here)
                parts.append(f"{name} scores {there:.3f} UAR against {here:.3f} under `{main}` ({there - here:+.3f})")
        if not parts:
            continue
        n_other = int(table.loc[(other, "lora"), "n_folds"]) if (other, "lora") in table.index else 0
        text = (f"- **Under the `{other}` protocol** ({n_other} fold{'s' * (n_other != 1)}), " + "; ".join(parts)
                + ".")
        if other == "dialog":
            text += (" The dialog folds let the test speakers' other utterances into training and pick the epoch "
                     "on the test fold, so they are expected to score higher; "
                     + ("here they do for both modes." if all(d > 0 for d in diffs) else
                        "here they do not for every mode."))
        if n_other < n_main:
            text += (f" The `{other}` row has {n_other} fold{'s' * (n_other != 1)} against {n_main}: the difference "
                     "mixes the protocol with which folds were run, so read it as an indication, not an estimate.")
        lines.append(text)
    return lines


# ------------------------------------------------------------------------------------------------------------------
# Layer contributions (Fig. 1)


def contributions_summary(table: pd.DataFrame, evidence: pd.DataFrame, claims: pd.DataFrame) -> str:
    """What Fig. 1 and the Section 3.2 verdicts of this run show, in Markdown.

    `table`: `helpers.analysis.tables.contribution_tables` of the figure's fold (layer, component, d_ratio,
    d_cosine); `evidence`: `contribution_evidence` of every unit; `claims`: `section_claims("3.2", evidence)`.
    """
    n_layers = int(table["layer"].max()) + 1
    depth = (np.arange(n_layers) + 1) / n_layers
    top_layers, early_layers = np.flatnonzero(depth > 0.75), np.flatnonzero(depth <= 0.5)
    parts = {c: t.set_index("layer").sort_index() for c, t in table.groupby("component")}
    total = parts["attention+mlp"]
    frames = str(evidence["frames"].iloc[0])
    n_units = int(evidence["n_units"].iloc[0])
    control = evidence["control_kind"].dropna()
    control_name = f"the {control.iloc[0]} adapter" if len(control) else "no control"
    top = n_layers - 1
    attn_top, mlp_top = float(parts["attention"].loc[top, "d_ratio"]), float(parts["mlp"].loc[top, "d_ratio"])
    peak = int(total["d_ratio"].idxmax())
    lines = [
        f"- **In the figure** (one fold, `{frames}` frames, {n_layers} layers): the summed update's Δρ "
        f"(attention + MLP, LoRA - frozen) averages {np.abs(total.loc[early_layers, 'd_ratio']).mean():.3f} in "
        f"absolute value over the first half ({_layers(early_layers)}) and "
        f"{total.loc[top_layers, 'd_ratio'].mean():+.3f} over the top quarter ({_layers(top_layers)}); its largest "
        f"value, {total.loc[peak, 'd_ratio']:+.3f}, is at layer {peak}. At the top layer attention's Δρ is "
        f"{attn_top:+.3f} and the MLP's {mlp_top:+.3f}; Δκ of the "
        f"sum there is {float(total.loc[top, 'd_cosine']):+.3f}."]

    verdict, link = _verdict_link(claims, "contribution_grows_late")
    growth, top_ratio = _interval(evidence, "growth"), _interval(evidence, "top_d_ratio")
    top_vs_control = _interval(evidence, "top_d_ratio", "contrast")
    text = (f"- **Near zero early, growing at the top?** Over {n_units} units (fold x training seed), the top "
            f"quarter's Δρ is {top_ratio.format(signed=True)}, against "
            f"{_interval(evidence, 'top_d_ratio', 'control').format(signed=True)} for {control_name}; the growth "
            f"(top-quarter Δρ minus 4 x the first half's mean absolute Δρ) is {growth.format(signed=True)}. "
            f"Verdict: {link}.")
    if verdict == HOLDS:
        text += " LoRA's change is concentrated in the top layers, beyond what an untrained adapter does there."
    elif verdict in (FAILS, INCONCLUSIVE):
        failing = []
        if judge(growth, 0.0) != HOLDS:
            failing.append("the top quarter's change is " + ("not larger" if judge(growth, 0.0) == FAILS else
                                                             "not clearly larger")
                           + " than 4 x the early layers'")
        if top_vs_control.defined and judge(top_vs_control, 0.0) != HOLDS:
            failing.append("the trained adapter's top-quarter change is not clearly above the untrained one's")
        text += " " + ("; ".join(failing) or "one condition straddles its criterion").capitalize() + "."
        paper_depth = (np.arange(LAYERS) + 1) / LAYERS
        paper_top, paper_early = int((paper_depth > 0.75).sum()), int((paper_depth <= 0.5).sum())
        reasons = [f"with {n_layers} layers the top quarter is {_layers(top_layers)} and the first half "
                   f"{_layers(early_layers)}, against {paper_top} and {paper_early} of the paper's {LAYERS} "
                   f"layers, so the depth profile has {n_layers} points"] if n_layers < LAYERS else []
        if attn_top > 0 > mlp_top:
            reasons.append(f"in the figure's fold the MLP's ratio falls at the top layer ({mlp_top:+.3f}) while "
                           f"attention's rises ({attn_top:+.3f}), so their sum changes little there")
        if reasons:
            text += " Likely reasons: " + "; ".join(reasons) + "."
    lines.append(text)

    verdict, link = _verdict_link(claims, "attention_over_mlp")
    attn = _interval(evidence, "top_attention_minus_mlp")
    reading = {HOLDS: "attention's ratio grows more than the MLP's in the top quarter, as in the paper",
               FAILS: "attention's ratio does not grow more than the MLP's in the top quarter, against the paper",
               INCONCLUSIVE: "the interval contains 0, so attention and MLP cannot be told apart here",
               UNTESTABLE: "the quantity is undefined in this run"}
    lines.append(f"- **Attention more than MLP at the top?** The top quarter's Δρ(attention) - Δρ(MLP) is "
                 f"{attn.format(signed=True)} ({control_name}: "
                 f"{_interval(evidence, 'top_attention_minus_mlp', 'control').format(signed=True)}): "
                 f"{reading[verdict]}. Verdict: {link}.")

    verdict, link = _verdict_link(claims, "cosine_negative_with_depth")
    slope, last = _interval(evidence, "d_cosine_slope"), _interval(evidence, "last_d_cosine")
    reading = {HOLDS: "the summed update turns against the residual stream with depth, as the paper says",
               FAILS: "the cosine difference does not fall with depth, or does not end below 0: against the paper",
               INCONCLUSIVE: "one of the two intervals contains 0",
               UNTESTABLE: "the quantity is undefined in this run"}
    lines.append(f"- **Cosine increasingly negative with depth?** The slope of Δκ (attention + MLP) over relative "
                 f"depth is {slope.format(signed=True)} per unit depth ({control_name}: "
                 f"{_interval(evidence, 'd_cosine_slope', 'control').format(signed=True)}), and Δκ at the last layer "
                 f"is {last.format(signed=True)}: {reading[verdict]}. Verdict: {link}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# Logit lens (Fig. 2a)


def lens_summary(lens: pd.DataFrame, evidence: pd.DataFrame, claims: pd.DataFrame) -> str:
    """What Fig. 2a and the Section 3.3 verdicts of this run show, in Markdown.

    `lens`: `helpers.analysis.tables.logit_lens_tables` of the figure's fold (index, kl, overlap, model,
    final_norm); `evidence`: `lens_evidence` of every unit; `claims`: `section_claims("3.3", evidence)`.
    """
    n_layers = int(evidence["n_layers"].iloc[0])
    n_units = int(evidence["n_units"].iloc[0])
    direction = str(evidence["direction"].iloc[0])
    curves = {m: t.set_index("index").sort_index() for m, t in lens.groupby("model")}
    last = int(lens["index"].max())
    kl_words = "KL(lens || prediction), as the paper writes it" if direction == "paper" else \
        "KL(prediction || lens), as the official code computes it"
    names = {"lora": "LoRA", "frozen": "the frozen encoder"}
    ordered = sorted(curves.items(), key=lambda kv: kv[0] != "lora")
    text = (f"- **In the figure** (one fold, {kl_words}): from the embeddings (index 0) to the last layer's output "
            f"(index {last}), " + " and ".join(f"{names.get(m, m)}'s KL goes from {c.loc[0, 'kl']:.3f} to "
                                              f"{c.loc[last, 'kl']:.3f} (lowest at index {int(c['kl'].idxmin())})"
                                              for m, c in ordered)
            + f"; top-1 agreement at index {last}: "
            + ", ".join(f"{names.get(m, m)} {c.loc[last, 'overlap']:.2f}" for m, c in ordered) + ".")
    raw = not bool(lens["final_norm"].iloc[0]) if "final_norm" in lens else True
    if raw and any(c.loc[last, "kl"] > 1e-6 for c in curves.values()):
        text += (" The last index is not the prediction itself: the raw lens omits the final LayerNorm that the "
                 "model applies before its head.")
    lines = [text]

    grid = ", ".join(f"{i / n_layers:.2f}" for i in range(n_layers + 1))
    target = FROZEN_KL_MIN_LAYER / LAYERS
    verdict, link = _verdict_link(claims, "frozen_kl_minimum")
    at = _interval(evidence, "frozen_argmin_depth")
    text = (f"- **Frozen KL minimum near layer {FROZEN_KL_MIN_LAYER} of {LAYERS} (depth {target:.2f})?** Over "
            f"{n_units} units the frozen encoder's KL is lowest at relative depth {at.format(2)} (LoRA's: "
            f"{_interval(evidence, 'frozen_argmin_depth', 'control').format(2)}). Verdict: {link}.")
    if verdict != HOLDS and at.defined and at.low >= 1.0 - 1e-9:
        text += " The frozen KL keeps falling to the last layer, so there is no minimum below the top."
    if verdict != HOLDS and at.defined and n_layers < LAYERS:
        text += (f" Likely reason: the lens of a {n_layers}-layer encoder has points at depths {grid} only, while "
                 f"the paper's minimum and rebound span its last {LAYERS - FROZEN_KL_MIN_LAYER} of {LAYERS} layers.")
    lines.append(text)

    verdict, link = _verdict_link(claims, "frozen_kl_rebound")
    rebound = _interval(evidence, "frozen_rebound")
    text = (f"- **Frozen KL rebounding at the top, LoRA's not?** The frozen encoder's top KL minus its lowest KL "
            f"below the top is {rebound.format(signed=True)} (LoRA: "
            f"{_interval(evidence, 'frozen_rebound', 'control').format(signed=True)}; difference "
            f"{_interval(evidence, 'frozen_rebound', 'contrast').format(signed=True)}). Verdict: {link}.")
    if verdict == HOLDS:
        text += " The frozen curve rises again at the top, more than LoRA's, as in the paper."
    elif rebound.defined and judge(rebound, 0.0) == FAILS and rebound.value < 0:
        text += " A negative value means the top is the frozen curve's lowest point: there is no rebound."
    elif verdict == INCONCLUSIVE:
        text += " One of the intervals contains 0."
    lines.append(text)

    verdict, link = _verdict_link(claims, "lora_kl_high_then_late_drop")
    gap, drop = _interval(evidence, "early_kl_gap", "contrast"), _interval(evidence, "lora_late_drop")
    reading = {HOLDS: "LoRA's early KL is above the frozen encoder's and its top KL is under half its early mean, "
                      "the paper's delayed decision",
               FAILS: "LoRA's early KL is not above the frozen encoder's, or it does not fall by half at the top",
               INCONCLUSIVE: "one of the two intervals straddles its criterion",
               UNTESTABLE: "the quantity is undefined in this run"}
    lines.append(f"- **LoRA's KL high early, then a late drop?** Mean KL over the first half of the lens: LoRA "
                 f"{_interval(evidence, 'early_kl_gap').format()}, frozen "
                 f"{_interval(evidence, 'early_kl_gap', 'control').format()} (difference {gap.format(signed=True)}); "
                 f"LoRA's top KL is {drop.format()} times its first-half mean: {reading[verdict]}. Verdict: {link}.")

    verdict, link = _verdict_link(claims, "lora_overlap_rises_late")
    rise, top = _interval(evidence, "overlap_rise_gap", "contrast"), _interval(evidence, "lora_top_overlap")
    text = (f"- **LoRA's top-1 agreement rising late to near perfect?** From the first half to the top, LoRA's "
            f"agreement rises by {_interval(evidence, 'overlap_rise_gap').format(signed=True)} and the frozen "
            f"encoder's by {_interval(evidence, 'overlap_rise_gap', 'control').format(signed=True)} (difference "
            f"{rise.format(signed=True)}); LoRA's agreement at the top is {top.format(2)}. Verdict: {link}.")
    if verdict != HOLDS:
        failing = []
        if judge(rise, 0.0) != HOLDS:
            failing.append("LoRA's rise is not clearly larger than the frozen encoder's")
        if judge(top, 0.8) != HOLDS:
            failing.append("the top agreement is not clearly above the 0.8 taken as near perfect")
        if failing:
            text += " Here " + " and ".join(failing) + "."
        if raw and top.defined and top.value < 1:
            text += (" Part of the shortfall is the definition: the raw top state lacks the final LayerNorm, so "
                     "even the last layer need not agree with the prediction.")
    lines.append(text)
    return "\n".join(lines)


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
    sil = {r: _interval(evidence, f"silhouette.r{r}") for r in ranks}
    if len(ranks) < 2 or "silhouette_slope_log2_rank" not in set(evidence["quantity"]):
        lines.append(f"- **Rank.** Only rank {ranks[0]} was run, so whether separation grows with rank "
                     f"is not testable ([scorecard](scorecard.html#claim-separation_grows_with_rank)).")
    else:
        slope = _interval(evidence, "silhouette_slope_log2_rank")
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
    peaks = [r for r in ranks if by.loc[r, "silhouette_all"].notna().any()
             and by.loc[r, "silhouette_all"].idxmax() == last]
    knn_top = ", ".join(f"r = {r}: {by.loc[(r, last), 'knn_uar']:.2f}" for r in ranks)
    knn_first = ", ".join(f"{by.loc[(r, first), 'knn_uar']:.2f}" for r in ranks)
    if separability["silhouette_all"].isna().all():  # e.g. one clip per class: nothing to separate
        lines.append(
            "- **Depth (fold shown in the figures).** Silhouettes and kNN UAR are undefined on "
            f"{'the analysis set' if n_clips is None else f'{n_clips} clips'}: no class has two clips, so there "
            "is no per-layer separation to read (a larger analysis set, `per_class`, gives one).")
    else:
        lines.append(
            f"- **Depth (fold shown in the figures).** From layer {first} to layer {last} the silhouette rises for "
            f"{len(rises)} of {len(ranks)} ranks and is highest at the top layer for {len(peaks)}; the "
            f"cross-validated kNN UAR at the top layer is {knn_top} (at layer {first}: {knn_first}; chance "
            f"{chance:.2f}). These per-layer numbers are single values on "
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
        trained, control = _interval(evidence, "k90.update_BA"), _interval(evidence, "k90.update_BA", "control")
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
    fwd, floor = _interval(evidence, "forward_cka"), _interval(evidence, "forward_cka", "control")
    untrained = _interval(evidence, "forward_cka_untrained")
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
        low = _interval(evidence, "backward_cka_min")
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


def causal_summary(evidence: pd.DataFrame, claims: pd.DataFrame, probes: pd.DataFrame) -> str:
    """"What this run shows" for the causal chapter, every number read from the evidence and probe tables."""
    iv = lambda quantity, prefix="": _interval(evidence, quantity, prefix)  # noqa: E731

    def change(x: Interval) -> str:  # evidence holds UAR *lost*; a reader wants the change
        return Interval(-x.value, -x.high, -x.low).format(signed=True)

    q, n = int(evidence["top_quarter"].iloc[0]), int(evidence["n_layers"].iloc[0])
    half = int(evidence["bottom_half"].iloc[0])
    every, top, gap = iv("ablation_all"), iv("ablation_top_quarter"), iv("lora_minus_frozen")
    attn = iv("patch_attention_minus_mlp")
    last = probes.groupby("model")["layer"].max()
    first_probe = probes[probes["layer"] == 0].set_index("model")["probe"]
    top_probe = probes[probes["layer"] == probes["layer"].max()].set_index("model")["probe"]
    sets = "single layers" if q == 1 else f"sets of {q} layers"
    lines = [
        f"- **Does LoRA matter at all?** Switching LoRA off in every layer changes test UAR by {change(every)}; "
        f"the LoRA model's UAR minus the frozen model's on the same clips is {gap.format(signed=True)}.",
        f"- **Depth.** Switching LoRA off in the top {q} of {n} layers changes UAR by {change(top)}, against "
        f"{change(iv('ablation_top_quarter', 'control'))} for random {sets}; the interval of the difference in UAR "
        f"lost {_side(iv('ablation_top_quarter', 'contrast'), 0.0)} (above 0: the top matters more than random "
        f"layers), and the top minus the bottom {half} layers' loss "
        f"{_side(iv('ablation_top_minus_bottom_half'), 0.0)}. The claim that LoRA's effect sits in the top layers "
        f"{_reads_short(claims, 'lora_effect_top_layers_causal')}.",
        f"- **Attention vs MLP.** The UAR lost when the frozen model's attention output replaces the LoRA model's, "
        f"minus the UAR lost when its MLP output does (mean over layers), is {attn.format(signed=True)}; the "
        f"interval {_side(attn, 0.0)}, and against the untrained-adapter control "
        f"{_side(iv('patch_attention_minus_mlp', 'contrast'), 0.0)}. The claim that attention carries more of the "
        f"effect {_reads_short(claims, 'attention_over_mlp_causal')}.",
        "- **Decodable vs readable.** A linear probe on the embeddings (layer 0) already reaches "
        + ", ".join(f"{m} {first_probe[m]:.2f}" for m in first_probe.index)
        + " test UAR, and at the last layer "
        + ", ".join(f"{m} {top_probe[m]:.2f}" for m in top_probe.index)
        + f" (layer {int(last.iloc[0])}): where the probe is high early while the raw lens sits near chance, the "
        "emotion is present early in a form the head cannot read; the tuned lens shows how far each layer is from "
        "the head's input.",
    ]
    return "\n".join(lines)


def _reads_short(claims: pd.DataFrame, claim_id: str) -> str:
    """The verdict words of claim `claim_id`, linked to its scorecard row."""
    return f"[{_VERDICT_WORDS[_verdict_of(claims, claim_id)]}](scorecard.html#claim-{claim_id})"
