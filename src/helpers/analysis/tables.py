"""The tidy tables the chapters show, computed from traces by the analysis modules (one per figure of the paper)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cka import cka, cka_permutation_null
from .contributions import contribution_difference, relative_contributions
from .evidence import lens_curves
from .separability import rank_features, rank_states, separability_table
from .spectra import k90_summary, spectrum_table
from .tracing import Trace

__all__ = ["contribution_tables", "logit_lens_tables", "rank_separability", "svd_tables", "cka_tables",
           "cka_trained_vs_untrained", "ablation_table", "patching_table", "erasure_table", "antialigned_table",
           "probe_table", "with_intervals"]


def contribution_tables(traces: dict, *, frames: str = "all") -> pd.DataFrame:
    """Fig. 1: per layer and component, LoRA and frozen ratios/cosines and their difference."""
    return contribution_difference(relative_contributions(traces["lora"].arrays, frames=frames),
                                   relative_contributions(traces["frozen"].arrays, frames=frames))


def logit_lens_tables(traces: dict, *, frames: str = "all", final_norm: bool = False,
                      direction: str = "paper") -> pd.DataFrame:
    """Fig. 2a: per lens index (0 = embeddings, L = last layer), KL to the model's own prediction and top-1
    overlap with it, for LoRA and frozen (`helpers.analysis.evidence.lens_curves` says what the reference is)."""
    parts = []
    for m in ("lora", "frozen"):
        if m in traces:
            kl, overlap = lens_curves(traces[m], frames=frames, final_norm=final_norm, direction=direction)
            n = kl.shape[1]
            parts.append(pd.DataFrame(dict(index=np.arange(n), depth=np.arange(n) / (n - 1), kl=kl.mean(0),
                                           kl_std=kl.std(0), overlap=overlap.mean(0), direction=direction,
                                           model=m, frames=frames, final_norm=final_norm)))
    return pd.concat(parts, ignore_index=True)


def rank_separability(rank_traces: dict[int, Trace], *, definition: str = "lora_a", frames: str = "all",
                      seed: int = 0) -> pd.DataFrame:
    """Fig. 2b's numbers: silhouette (overall and per class) and kNN UAR per rank and state
    (`helpers.analysis.separability.rank_features` says what a state is under each definition)."""
    parts = []
    for r, t in rank_traces.items():
        states = rank_states(t, definition)
        x = np.stack([rank_features(t, s, definition=definition, frames=frames) for s in states], 1)
        table = separability_table(x, t["labels"], t.classes, rank=r, seed=seed)
        parts.append(table.assign(state=[states[i] for i in table["index"]], definition=definition, frames=frames))
    return pd.concat(parts, ignore_index=True)


def svd_tables(traces: dict, *, frames: str = "all", baseline: str = "untrained-official", energy: float = 0.9,
               centred: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3a-d: per-module spectra and k90 (trained and `baseline`), and the k90 summary with ratios."""
    spectra, summary = [], []
    for kind in ("A", "B", "A_grad", "B_grad"):
        options = dict(frames=frames, energy=energy, centred=centred)
        trained = spectrum_table(traces["lora"], kind, **options).assign(model="trained")
        untrained = spectrum_table(traces[baseline], kind, **options).assign(model=baseline)
        spectra += [trained, untrained]
        summary.append(dict(k90_summary(trained, untrained), baseline=baseline, frames=frames, centred=centred))
    return pd.concat(spectra, ignore_index=True), pd.DataFrame(summary)


def _utterance_rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, T, d) -> (N, T*d), padding frames zeroed when a speech mask is given (rows = clips, as the official)."""
    if mask is not None:
        values = values * mask[:, :, None]
    return values.reshape(len(values), -1)


def cka_tables(trace: Trace, *, kernel: str = "linear", debiased: bool = False, frames: str = "all",
               n_permutations: int = 100, seed: int = 0) -> pd.DataFrame:
    """Fig. 3e-f: CKA between each module's A and B activations (forward) and their gradients (backward), with
    the 95th percentile of a permutation null for each value."""
    mask = trace["speech_mask"][:, trace["lora_frames"]] if frames == "speech" else None
    rows = []
    for name in trace.lora_names:
        layer, proj = name.split(".")[1:]
        for direction, (a, b) in (("forward", ("A", "B")), ("backward", ("A_grad", "B_grad"))):
            x = _utterance_rows(trace[f"{name}.{a}"], mask)
            y = _utterance_rows(trace[f"{name}.{b}"], mask)
            null = cka_permutation_null(x, y, kernel=kernel, debiased=debiased, n_permutations=n_permutations,
                                        seed=seed)
            rows.append(dict(module=name, layer=int(layer), projection=proj, direction=direction,
                             cka=cka(x, y, kernel=kernel, debiased=debiased), null_q95=float(np.quantile(null, 0.95)),
                             null_mean=float(null.mean()), kernel=kernel, debiased=debiased, frames=frames))
    return pd.DataFrame(rows)


def cka_trained_vs_untrained(traces: dict, *, control_kind: str = "untrained-official", kernel: str = "linear",
                             frames: str = "all") -> pd.DataFrame:
    """Per LoRA module, CKA between the trained adapter's A (and B) outputs and the untrained adapter's on the same
    clips: what the official notebook plots to show how far training moved each matrix (1 = unchanged geometry)."""
    trained, control = traces["lora"], traces[control_kind]
    mask = trained["speech_mask"][:, trained["lora_frames"]] if frames == "speech" else None
    rows = []
    for name in trained.lora_names:
        layer, proj = name.split(".")[1:]
        for part in ("A", "B"):
            value = cka(_utterance_rows(trained[f"{name}.{part}"], mask),
                        _utterance_rows(control[f"{name}.{part}"], mask), kernel=kernel)
            rows.append(dict(module=name, layer=int(layer), projection=proj, matrix=part, cka=value,
                             control=control_kind, kernel=kernel, frames=frames))
    return pd.DataFrame(rows)


_SCORES = ["uar", "uar_low", "uar_high", "d_uar", "d_uar_low", "d_uar_high", "war"]


_KIND_ORDER = {k: i for i, k in enumerate(("intact", "single", "bottom", "top", "proj", "random", "residual",
                                             "attention", "mlp", "layer"))}


def _experiment(curves: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """One experiment's rows in reading order: by model, kind (single, bottom, top, ...) and layer or k."""
    part = curves[curves["experiment"] == experiment]
    order = pd.DataFrame({"model": part["model"], "kind": part["kind"].map(_KIND_ORDER).fillna(99),
                          "at": pd.to_numeric(part["where"], errors="coerce").fillna(-1)})
    return part.loc[order.sort_values(["model", "kind", "at"], kind="stable").index].reset_index(drop=True)


def with_intervals(table: pd.DataFrame, names=("uar", "d_uar"), digits: int = 3) -> pd.DataFrame:
    """`table` with each of `names` (and its `_low`, `_high` columns) shown as one text column
    "value [low, high]", for display."""
    out = table.copy()
    for name in names:
        if name not in out:
            continue
        signed = "+" if name.startswith("d_") else ""
        out[name] = [f"{v:{signed}.{digits}f} [{lo:{signed}.{digits}f}, {hi:{signed}.{digits}f}]"
                     for v, lo, hi in zip(out[name], out[f"{name}_low"], out[f"{name}_high"])]
        out = out.drop(columns=[f"{name}_low", f"{name}_high"])
    return out


def ablation_table(curves: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """LoRA switched off in each layer set (`helpers.analysis.causal.ablation_plan`): the layers, the projection
    types, test UAR and its change from the intact LoRA model (mean over units, 95% interval over units)."""
    part = _experiment(curves, "ablate")
    plan = meta["ablations"]
    names = part["kind"] + "." + part["where"]
    return part.assign(
        set=names, layers=[",".join(map(str, plan[n]["layers"])) for n in names],
        projections=[",".join(plan[n]["projections"] or ["all"]) for n in names])[["set", "layers", "projections",
                                                                                     *_SCORES]]


def patching_table(curves: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
    """Activation patching: UAR of the target model with one site taken from the source model, and, for the
    residual stream, the fraction of the UAR gap recovered, (patched - target) / (source - target) on unit means;
    NaN when the interval of the two models' UAR gap (`lora_minus_frozen` in `evidence`) contains 0."""
    gap_row = evidence.set_index("quantity").loc["lora_minus_frozen"]
    gap_defined = bool(gap_row["low"] > 0 or gap_row["high"] < 0)
    part = _experiment(curves, "patch")
    finals = _experiment(curves, "final").set_index("model")["uar"]
    source = part["model"].str.split(">").str[0]
    target = part["model"].str.split(">").str[1]
    gap = source.map(finals) - target.map(finals)
    fraction = (part["uar"] - target.map(finals)) / gap
    fraction[(part["kind"] != "residual") | ~gap_defined | (gap.abs() < 1e-12)] = np.nan
    return part.assign(source=source, target=target, site=part["kind"], layer=part["where"].astype(int),
                       gap_recovered=fraction)[["source", "target", "site", "layer", *_SCORES, "gap_recovered"]]


def erasure_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The official residual erasure: accuracy drop, loss increase and confidence drop from the intact model, and
    the official contribution score acc_drop + 0.5 conf_drop - 0.1 loss_increase, per model and erased set."""
    part = _experiment(curves, "erase")
    finals = _experiment(curves, "final").set_index("model")
    intact = finals.loc[part["model"]].reset_index(drop=True)
    out = part.assign(erased=part["kind"] + " " + part["where"], acc_drop=intact["war"] - part["war"],
                      loss_increase=part["loss"] - intact["loss"], conf_drop=intact["confidence"] - part["confidence"])
    out["official_score"] = out["acc_drop"] + 0.5 * out["conf_drop"] - 0.1 * out["loss_increase"]
    return out[["model", "erased", "uar", "uar_low", "uar_high", "d_uar", "d_uar_low", "d_uar_high", "acc_drop",
                "loss_increase", "conf_drop", "official_score"]]


def antialigned_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The anti-aligned component of a + m removed: UAR and its change, per model and layer set."""
    part = _experiment(curves, "antialigned")
    return part.assign(layers=part["kind"] + " " + part["where"])[["model", "layers", *_SCORES]]


def probe_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per layer and model: test UAR of the linear probe, the tuned lens and the raw logit lens."""
    part = curves[curves["experiment"].isin(["probe", "tuned", "lens"])]
    wide = part.pivot_table(index=["model", "where"], columns="experiment", values="uar").reset_index()
    wide["layer"] = wide["where"].astype(int)
    return wide.sort_values(["model", "layer"])[["model", "layer", "probe", "tuned", "lens"]].reset_index(drop=True)
