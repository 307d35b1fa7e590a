"""The numbers behind each verdict: every quantity a claim is judged on, with its control and a 95% interval.

Inputs are *units*: one dict {kind: Trace} per fold (and seed) of the main runs, with the kinds `lora`, `frozen`
and the untrained controls. Each function returns one row per quantity with `value, low, high` (the trained
model) and `control, control_low, control_high` (the control named in `control_kind`), plus the paired contrast
`contrast, contrast_low, contrast_high` (value minus control on the same drawn clips) where one is meaningful.
Intervals are the two-level bootstrap of `helpers.analysis.uncertainty` (units, then clips within a unit).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .cka import cka_from_grams, gram
from .contributions import COMPONENTS
from .logit_lens import lens_kl_overlap
from .separability import silhouette_by_class
from .spectra import k_energy
from .uncertainty import Interval, bootstrap_many

__all__ = ["Units", "row", "contribution_evidence", "lens_evidence", "lens_curves", "svd_evidence",
           "cka_evidence", "rank_evidence", "performance_evidence", "logit_scores", "causal_curves",
           "causal_evidence"]

Units = Sequence[dict]


def row(quantity: str, value: Interval, control: Interval | None = None, contrast: Interval | None = None,
        **extra) -> dict:
    """One evidence row (intervals flattened into columns)."""
    out = dict(quantity=quantity, value=value.value, low=value.low, high=value.high)
    for name, iv in (("control", control), ("contrast", contrast)):
        iv = iv or Interval.undefined()
        out.update({name: iv.value, f"{name}_low": iv.low, f"{name}_high": iv.high})
    return {**out, **extra}


def _sizes(units: Units, kind: str = "lora") -> list[int]:
    return [len(u[kind]["labels"]) for u in units]


def _one_thread():
    """Small dense linear algebra runs fastest on one BLAS thread (many threads on 2 busy cores ran 150x slower)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _triplet_rows(intervals: dict[str, Interval], quantities, **extra) -> list[dict]:
    """Rows from bootstrap results named `<quantity>.value|control|contrast`."""
    rows = []
    for q in quantities:
        rows.append(row(q, intervals[f"{q}.value"], intervals.get(f"{q}.control"), intervals.get(f"{q}.contrast"),
                        **extra))
    return rows


def _mask(trace, frames: str) -> np.ndarray:
    h = trace["h_norm"]
    if frames == "all":
        return np.ones((h.shape[0], h.shape[2]), bool)
    if frames == "speech":
        return trace["speech_mask"].astype(bool)
    raise ValueError(f"frames={frames!r}; choose 'all' or 'speech'")


def _contribution_sums(trace, frames: str) -> dict[str, np.ndarray]:
    """Per clip and layer: sums over the selected frames of each ratio and cosine, and the frame count."""
    mask = _mask(trace, frames)
    h = np.maximum(trace["h_norm"], 1e-12)
    out = {"count": mask.sum(1).astype(float)}
    for component, (norm_key, cos_key) in COMPONENTS.items():
        out[f"ratio.{component}"] = (trace[norm_key] / h * mask[:, None, :]).sum(2)
        out[f"cosine.{component}"] = (trace[cos_key] * mask[:, None, :]).sum(2)
    return out


def contribution_evidence(units: Units, *, frames: str = "all", control_kind: str = "untrained-official",
                          n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Section 3.2's quantities, LoRA minus frozen (trained) and the same for the untrained adapter (control).

    `top_d_ratio`: mean d ratio (attention+MLP) over the top quarter of layers; `growth`: that minus 4 x the mean
    |d ratio| over the first half (> 0 means "near zero early, grows at the top"); `top_attention_minus_mlp`;
    `d_cosine_slope` (per unit depth) and `last_d_cosine`.
    """
    sums = [{k: _contribution_sums(u[k], frames) for k in ("lora", "frozen", control_kind) if k in u}
            for u in units]
    n_layers = units[0]["lora"]["h_norm"].shape[1]
    depth = (np.arange(n_layers) + 1) / n_layers
    top, early = depth > 0.75, depth <= 0.5

    def d(u: int, idx: np.ndarray, kind: str, what: str) -> np.ndarray:
        a, f = sums[u][kind], sums[u]["frozen"]
        return a[what][idx].sum(0) / a["count"][idx].sum() - f[what][idx].sum(0) / f["count"][idx].sum()

    quantities: dict[str, Callable[[int, np.ndarray, str], float]] = {
        "top_d_ratio": lambda u, i, k: float(d(u, i, k, "ratio.attention+mlp")[top].mean()),
        "growth": lambda u, i, k: float(d(u, i, k, "ratio.attention+mlp")[top].mean()
                                        - 4 * np.abs(d(u, i, k, "ratio.attention+mlp")[early]).mean()),
        "top_attention_minus_mlp": lambda u, i, k: float((d(u, i, k, "ratio.attention")
                                                          - d(u, i, k, "ratio.mlp"))[top].mean()),
        "d_cosine_slope": lambda u, i, k: float(np.polyfit(depth, d(u, i, k, "cosine.attention+mlp"), 1)[0]),
        "last_d_cosine": lambda u, i, k: float(d(u, i, k, "cosine.attention+mlp")[-1]),
    }
    has_control = all(control_kind in s for s in sums)

    def stats(u: int, idx: np.ndarray) -> dict[str, float]:
        out = {}
        for name, f in quantities.items():
            out[f"{name}.value"] = f(u, idx, "lora")
            if has_control:
                out[f"{name}.control"] = f(u, idx, control_kind)
                out[f"{name}.contrast"] = out[f"{name}.value"] - out[f"{name}.control"]
        return out

    with _one_thread():
        intervals = bootstrap_many(_sizes(units), stats, n_boot=n_boot, seed=seed)
    return pd.DataFrame(_triplet_rows(intervals, quantities, control_kind=control_kind if has_control else None,
                                      frames=frames, n_units=len(units)))


def lens_curves(trace, *, frames: str = "all", final_norm: bool = False,
                direction: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """Per clip and lens index: KL to the model's own prediction and top-1 agreement with it, (N, L+1) each.

    The lens reads every layer's pooled output, the last included, without overwriting it; the reference is the
    model's prediction for the same frames (`frames="all"`: its own logits; `"speech"`: the head on the final
    LayerNorm of the speech-pooled last state), so the raw lens need not reach KL 0 at the top.
    """
    if frames not in ("all", "speech"):
        raise ValueError(f"frames={frames!r}; choose 'all' or 'speech'")
    lens = trace[f"lens.{frames}.{'ln' if final_norm else 'raw'}"]
    return lens_kl_overlap(lens, trace[f"lens.{frames}.reference"], direction=direction)


def lens_evidence(units: Units, *, frames: str = "all", final_norm: bool = False, direction: str = "paper",
                  n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Section 3.3's quantities on the logit lens, LoRA against the frozen encoder on the same clips and layers.

    Depth of lens index i is i / L (0 = embeddings, 1 = last layer). `frozen_argmin_depth`: where the frozen KL
    curve is lowest; `frozen_rebound`: frozen KL at the top minus its minimum below the top (> 0: it rises
    again), with LoRA's rebound as the control; `early_kl_gap`: mean KL over the first half, LoRA minus frozen;
    `lora_late_drop`: LoRA's KL at the top over its first-half mean; `overlap_rise_gap`: the rise of the top-1
    agreement from the first half to the top, LoRA minus frozen; `lora_top_overlap`.
    """
    curves = [{k: lens_curves(u[k], frames=frames, final_norm=final_norm, direction=direction)
               for k in ("lora", "frozen")} for u in units]
    n = curves[0]["lora"][0].shape[1]
    depth = np.arange(n) / (n - 1)
    first = depth <= 0.5

    def rebound(c):
        return float(c[-1] - c[:-1].min())

    def rise(c):
        return float(c[-1] - c[first].mean())

    def stats(u: int, idx: np.ndarray) -> dict[str, float]:
        kl = {k: curves[u][k][0][idx].mean(0) for k in ("lora", "frozen")}
        ov = {k: curves[u][k][1][idx].mean(0) for k in ("lora", "frozen")}
        out = {"frozen_argmin_depth.value": float(depth[np.argmin(kl["frozen"])]),
               "frozen_argmin_depth.control": float(depth[np.argmin(kl["lora"])]),
               "frozen_rebound.value": rebound(kl["frozen"]), "frozen_rebound.control": rebound(kl["lora"]),
               "early_kl_gap.value": float(kl["lora"][first].mean()),
               "early_kl_gap.control": float(kl["frozen"][first].mean()),
               "lora_late_drop.value": float(kl["lora"][-1] / max(kl["lora"][first].mean(), 1e-12)),
               "lora_late_drop.control": float(kl["frozen"][-1] / max(kl["frozen"][first].mean(), 1e-12)),
               "overlap_rise_gap.value": rise(ov["lora"]), "overlap_rise_gap.control": rise(ov["frozen"]),
               "lora_top_overlap.value": float(ov["lora"][-1]), "lora_top_overlap.control": float(ov["frozen"][-1])}
        out["frozen_rebound.contrast"] = out["frozen_rebound.value"] - out["frozen_rebound.control"]
        out["early_kl_gap.contrast"] = out["early_kl_gap.value"] - out["early_kl_gap.control"]
        out["overlap_rise_gap.contrast"] = out["overlap_rise_gap.value"] - out["overlap_rise_gap.control"]
        return out

    intervals = bootstrap_many(_sizes(units), stats, n_boot=n_boot, seed=seed)
    quantities = ("frozen_argmin_depth", "frozen_rebound", "early_kl_gap", "lora_late_drop", "overlap_rise_gap",
                  "lora_top_overlap")
    return pd.DataFrame(_triplet_rows(intervals, quantities)).assign(
        control_kind="frozen", frames=frames, final_norm=final_norm, direction=direction, n_units=len(units),
        n_layers=n - 1)


def _lora_rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, T', dim) -> per clip (N, T', dim) with unselected frames zeroed."""
    return values if mask is None else values * mask[:, :, None]


def _frame_mask(trace, frames: str) -> np.ndarray | None:
    if frames == "all":
        return None
    if frames == "speech":
        return trace["speech_mask"][:, trace["lora_frames"]].astype(bool)
    raise ValueError(f"frames={frames!r}; choose 'all' or 'speech'")


def _clip_grams(values: np.ndarray, mask: np.ndarray | None, per_clip: bool = True) -> tuple:
    """Per clip: X_i^T X_i (N, dim, dim), the frame sums (N, dim) and frame counts (N,) of the selected frames;
    with `per_clip=False` one clip-summed entry (1, ...) for matrices that are only resampled by unit."""
    x = _lora_rows(values.astype(np.float64), mask)
    counts = (np.full(len(x), x.shape[1], float) if mask is None else mask.sum(1).astype(float))
    if not per_clip:
        flat = x.reshape(-1, x.shape[-1])
        return (flat.T @ flat)[None], x.sum((0, 1))[None], counts.sum(keepdims=True)
    return np.einsum("ntd,nte->nde", x, x), x.sum(1), counts


def _k_from_grams(grams, sums, counts, idx: np.ndarray, centred: bool, energy: float) -> float:
    w = np.bincount(idx, minlength=len(counts)).astype(float) if len(counts) > 1 else np.ones(1)
    g = np.tensordot(w, grams, 1)
    if centred:
        s, n = w @ sums, w @ counts
        g = g - np.outer(s, s) / max(n, 1.0)
    ev = np.clip(np.linalg.eigvalsh(g), 0, None)[::-1]
    return k_energy(np.sqrt(ev), energy)


def svd_evidence(units: Units, *, frames: str = "all", baseline: str = "untrained-official", centred: bool = False,
                 energy: float = 0.9, n_boot: int = 100, seed: int = 0, max_clip_dim: int = 64) -> pd.DataFrame:
    """Section 3.5: mean k90 over LoRA modules (trained and `baseline`) and the ratio baseline/trained per matrix
    kind (A, B, A_grad, B_grad), with intervals. Clips are resampled through per-clip Gram matrices where the
    matrix width is at most `max_clip_dim` (A and its gradient, r wide); wider ones (B and its gradient, d wide:
    an eigendecomposition per replicate would dominate the book's time) are resampled by unit only. Also the
    k90 of the singular values of each module's update scaling x B A (weights only: one number per unit)."""
    rows = []
    names = units[0]["lora"].lora_names
    for kind in ("A", "B", "A_grad", "B_grad"):
        if f"{names[0]}.{kind}" not in units[0]["lora"].arrays or baseline not in units[0]:
            continue
        by_clip = units[0]["lora"][f"{names[0]}.{kind}"].shape[-1] <= max_clip_dim
        grams = [{m: [_clip_grams(u[m][f"{name}.{kind}"], _frame_mask(u[m], frames), by_clip) for name in names]
                  for m in ("lora", baseline)} for u in units]

        def stats(u: int, idx: np.ndarray, grams=grams) -> dict[str, float]:
            k = {}
            for m in ("lora", baseline):
                ks = [_k_from_grams(*g, idx, centred, energy) for g in grams[u][m]]
                k[m] = float("nan") if np.all(np.isnan(ks)) else float(np.nanmean(ks))
            return {"trained": k["lora"], "baseline": k[baseline], "ratio": k[baseline] / k["lora"]}

        with _one_thread():
            iv = bootstrap_many(_sizes(units), stats, n_boot=n_boot, seed=seed, resample_clips=by_clip,
                                bias_correct=True)
        trained, untrained = iv["trained"], iv["baseline"]
        degenerate = not (trained.defined and untrained.defined)
        rows.append(row(f"k90_ratio.{kind}", Interval.undefined() if degenerate else iv["ratio"], kind=kind,
                        k_trained=trained.value, k_trained_low=trained.low, k_trained_high=trained.high,
                        k_baseline=untrained.value, k_baseline_low=untrained.low, k_baseline_high=untrained.high,
                        degenerate=degenerate, clip_resampling=by_clip))
    if all(f"{names[0]}.delta_sv" in u[m].arrays for u in units for m in ("lora", baseline) if m in u):
        def delta_k(u: int, _idx: np.ndarray) -> dict[str, float]:
            k = {m: float(np.mean([k_energy(units[u][m][f"{n}.delta_sv"], energy) for n in names]))
                 for m in ("lora", baseline) if m in units[u]}
            return {"trained": k["lora"], "baseline": k.get(baseline, float("nan"))}

        iv = bootstrap_many([1] * len(units), delta_k, n_boot=n_boot, seed=seed, resample_clips=False)
        trained, untrained = iv["trained"], iv["baseline"]
        rows.append(row("k90.update_BA", trained, untrained, kind="update_BA", k_trained=trained.value,
                        k_trained_low=trained.low, k_trained_high=trained.high, k_baseline=untrained.value,
                        k_baseline_low=untrained.low, k_baseline_high=untrained.high, degenerate=False,
                        clip_resampling=False))
    return pd.DataFrame(rows).assign(baseline=baseline, frames=frames, centred=centred, n_units=len(units))


def _utterance_grams(trace, name: str, frames: str, kernel: str) -> dict[str, np.ndarray]:
    mask = _frame_mask(trace, frames)
    out = {}
    for part in ("A", "B", "A_grad", "B_grad"):
        key = f"{name}.{part}"
        if key in trace.arrays:
            x = _lora_rows(trace[key], mask)
            out[part] = gram(x.reshape(len(x), -1), kernel=kernel)
    return out


def _random_b_null(a: np.ndarray, gram_a: np.ndarray, rng: np.random.Generator, d: int, n_draws: int) -> np.ndarray:
    """Linear CKA(A, A M) for `n_draws` Gaussian M (r x d): what LoRA's algebra gives a random B on these A outputs.

    Gram of the clip rows of A M (flattened over time) = sum_t a_t^T (M M^T) a_t, so only M M^T (r x r) is needed.
    """
    flat = a.reshape(len(a), -1)
    out = np.empty(n_draws)
    for k in range(n_draws):
        m = rng.normal(size=(a.shape[-1], d))
        gram_b = (a @ (m @ m.T)).reshape(len(a), -1) @ flat.T
        out[k] = cka_from_grams(gram_a, gram_b)
    return out


def cka_evidence(units: Units, *, frames: str = "all", kernel: str = "linear",
                 control_kind: str = "untrained-official", n_boot: int = 200, n_draws: int = 20,
                 seed: int = 0) -> pd.DataFrame:
    """Section 3.6. `forward_cka`: biased CKA(A, B) of the trained adapter (mean over modules), read against the
    floor LoRA's algebra gives: with dropout off B's output is A's times a fixed matrix, so the control is CKA(Z,
    Z M) for `n_draws` random Gaussian M on the untrained adapter's A outputs Z (value = mean, interval = the middle
    95% of the draws over units); `contrast` = trained minus the draws' 95th percentile. `forward_cka_untrained`:
    the traced untrained adapter itself. `backward_cka_min`: debiased CKA(dA, dB) of the module with the lowest
    value, against the untrained adapter's. Trained intervals are bias-corrected (repeated clips push CKA up)."""
    names = units[0]["lora"].lora_names
    with _one_thread():
        grams = [{k: {n: _utterance_grams(u[k], n, frames, kernel) for n in names} for k in ("lora", control_kind)
                  if k in u} for u in units]
    has_control = all(control_kind in g for g in grams)
    kinds = ("lora", control_kind) if has_control else ("lora",)
    backward = "A_grad" in grams[0]["lora"][names[0]]

    def fwd(u, idx, k):
        return float(np.mean([cka_from_grams(g["A"][np.ix_(idx, idx)], g["B"][np.ix_(idx, idx)])
                              for g in grams[u][k].values()]))

    def bwd(u, idx, k, name):
        idx = np.unique(idx)  # the debiased estimator must not see a clip twice (a duplicate is its own neighbour)
        g = grams[u][k][name]
        if len(idx) < 4 or "A_grad" not in g:
            return float("nan")
        return cka_from_grams(g["A_grad"][np.ix_(idx, idx)], g["B_grad"][np.ix_(idx, idx)], debiased=True)

    lowest, spread = None, float("nan")
    if backward:
        full = {n: np.mean([bwd(u, np.arange(s), "lora", n) for u, s in enumerate(_sizes(units))]) for n in names}
        lowest = min(full, key=full.get)
        spread = float(max(full.values()) - min(full.values()))

    def stats(u: int, idx: np.ndarray) -> dict[str, float]:
        out = {f"forward_cka.{r}": fwd(u, idx, k) for r, k in zip(("value", "untrained"), kinds)}
        if lowest is not None:
            out.update({f"backward_cka_min.{r}": bwd(u, idx, k, lowest) for r, k in zip(("value", "control"), kinds)})
        return out

    with _one_thread():
        iv = bootstrap_many(_sizes(units), stats, n_boot=n_boot, seed=seed, bias_correct=True)
        null = None
        if has_control and kernel == "linear":
            rng = np.random.default_rng(seed)
            draws = []
            for i, u in enumerate(units):
                per_module = []
                for n in names:
                    a = _lora_rows(u[control_kind][f"{n}.A"], _frame_mask(u[control_kind], frames))
                    d = u[control_kind][f"{n}.B"].shape[-1]
                    per_module.append(_random_b_null(a, grams[i][control_kind][n]["A"], rng, d, n_draws))
                draws.append(np.mean(per_module, 0))
            null = np.concatenate(draws)
    rows = []
    trained = iv["forward_cka.value"]
    if null is not None:
        q95 = float(np.quantile(null, 0.95))
        control = Interval(float(null.mean()), *map(float, np.quantile(null, [0.025, 0.975])))
        contrast = Interval(trained.value - q95, trained.low - q95, trained.high - q95)
        rows.append(row("forward_cka", trained, control, contrast, module="mean over modules", null_q95=q95,
                        n_draws=len(null)))
    else:
        rows.append(row("forward_cka", trained, module="mean over modules"))
    if has_control:
        rows.append(row("forward_cka_untrained", iv["forward_cka.untrained"], module="mean over modules"))
    if lowest is not None:
        rows.append(row("backward_cka_min", iv["backward_cka_min.value"], iv.get("backward_cka_min.control"),
                        module=lowest, range_all=spread))
    return pd.DataFrame(rows).assign(control_kind=control_kind if has_control else None, frames=frames,
                                     kernel=kernel, n_units=len(units))


def rank_evidence(features_by_rank: dict[int, np.ndarray], labels: np.ndarray, class_names: Sequence[str], *,
                  n_boot: int = 100, n_permutations: int = 100, seed: int = 0) -> pd.DataFrame:
    """Section 3.4 on one set of clips: silhouette per rank (features (N, p) per rank, e.g. the top layer), the
    slope of silhouette against log2(rank) with a clip-bootstrap interval, a label-permutation null of the
    top rank's silhouette, and per class the silhouette gain from the lowest to the highest rank.

    Silhouettes use each drawn clip once (a duplicate would sit at distance 0 from itself)."""
    ranks = sorted(features_by_rank)
    names = np.asarray(class_names)[labels]
    classes = sorted(set(names))
    n, top, lowest = len(labels), ranks[-1], ranks[0]
    rng = np.random.default_rng(seed)
    with _one_thread():
        null = np.array([silhouette_by_class(features_by_rank[top], rng.permutation(names))["all"]
                         for _ in range(n_permutations)])
    null_q95 = float(np.quantile(null, 0.95))

    def stats(_u: int, idx: np.ndarray) -> dict[str, float]:
        idx = np.unique(idx)
        if len(set(names[idx])) < 2:
            return {}
        sil = {r: silhouette_by_class(features_by_rank[r][idx], names[idx]) for r in ranks}
        out = {f"silhouette.r{r}": sil[r]["all"] for r in ranks}
        if len(ranks) > 1:
            out["silhouette_slope_log2_rank"] = float(np.polyfit(np.log2(ranks), [sil[r]["all"] for r in ranks], 1)[0])
            out["silhouette_top_rank_minus_null_q95"] = sil[top]["all"] - null_q95
            out.update({f"class_gain.{c}": sil[top].get(c, np.nan) - sil[lowest].get(c, np.nan) for c in classes})
        return out

    with _one_thread():
        keys = list(stats(0, np.arange(n)))

        def padded(u: int, idx: np.ndarray) -> dict[str, float]:
            s = stats(u, idx)
            return {k: s.get(k, float("nan")) for k in keys}

        iv = bootstrap_many([n], padded, n_boot=n_boot, seed=seed)
    rows = [row(f"silhouette.r{r}", iv[f"silhouette.r{r}"], rank=r) for r in ranks]
    if len(ranks) > 1:
        rows.append(row("silhouette_slope_log2_rank", iv["silhouette_slope_log2_rank"]))
        rows.append(row("silhouette_top_rank_minus_null_q95", iv["silhouette_top_rank_minus_null_q95"],
                        null_q95=null_q95))
        rows += [row(f"class_gain.{c}", iv[f"class_gain.{c}"], emotion=c) for c in classes]
    return pd.DataFrame(rows)


def performance_evidence(per_unit: pd.DataFrame, *, metric: str = "uar", n_boot: int = 1000,
                         seed: int = 0) -> pd.DataFrame:
    """Section 3.1: per model size, mean test `metric` of LoRA (value) and frozen (control) and their paired
    difference over units (fold x seed), interval by resampling units. `per_unit` has columns size, mode, fold,
    seed and `metric`."""
    rows = []
    for size, table in per_unit.groupby("size", sort=False):
        wide = table.pivot_table(index=["fold", "seed"], columns="mode", values=metric)
        if not {"lora", "frozen"} <= set(wide.columns):
            continue
        wide = wide.dropna()
        lora, frozen = wide["lora"].to_numpy(), wide["frozen"].to_numpy()
        def stats(u: int, _idx: np.ndarray, lora=lora, frozen=frozen) -> dict[str, float]:
            return {"value": float(lora[u]), "control": float(frozen[u]), "contrast": float(lora[u] - frozen[u])}

        iv = bootstrap_many([1] * len(wide), stats, n_boot=n_boot, seed=seed, resample_clips=False)
        rows.append(row(f"{metric}_gain.{size}", iv["value"], iv["control"], iv["contrast"], size=size,
                        n_units=len(wide)))
    return pd.DataFrame(rows)


def _uar_fast(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """UAR over the classes present in `labels` (as `helpers.training.metrics.uar`, without sklearn's overhead)."""
    total = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels[pred == labels], minlength=n_classes)
    present = total > 0
    return float((hits[present] / total[present]).mean())


def logit_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """UAR, WAR (accuracy), mean cross-entropy loss and mean confidence (top softmax probability) of logits (N, C);
    the official residual-erasure code reports the last three."""
    from .logit_lens import log_softmax

    log_p = log_softmax(np.asarray(logits, np.float64))
    pred = log_p.argmax(-1)
    return {"uar": _uar_fast(labels, pred, logits.shape[-1]), "war": float((pred == labels).mean()),
            "loss": float(-log_p[np.arange(len(labels)), labels].mean()),
            "confidence": float(np.exp(log_p.max(-1)).mean())}


def _parse_causal_key(key: str) -> dict:
    """'patch.frozen>lora.attention.3' -> experiment patch, model frozen>lora, kind attention, where 3."""
    parts = key.split(".")
    if parts[0] == "final":
        return dict(experiment="final", model=parts[1], kind="intact", where="-")
    if parts[0] == "ablate":
        return dict(experiment="ablate", model="lora", kind=parts[1], where=parts[2])
    return dict(experiment=parts[0], model=parts[1], kind=parts[2], where=parts[3])


def _target(meta: dict) -> str:
    """The intact model an edit is compared with."""
    return meta["model"].split(">")[-1]


def causal_curves(records: Units, *, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Every causal experiment's scores, averaged over units (folds x seeds) with a 95% interval by resampling
    units: one row per experiment key (per layer for `probe`, `tuned`, `lens`), with `d_uar` = UAR minus the
    intact model's (the model the edit was applied to)."""
    rows = []
    keys = [k for k in records[0].arrays if k != "labels"]
    for key in keys:
        layered = key.split(".")[0] in ("probe", "tuned", "lens")
        n_layers = records[0][key].shape[1] if layered else 1
        for l in range(n_layers):
            meta = (dict(experiment=key.split(".")[0], model=key.split(".")[1], kind="layer", where=str(l))
                    if layered else _parse_causal_key(key))
            per_unit = []
            for r in records:
                y = r["labels"]
                s = logit_scores(r[key][:, l] if layered else r[key], y)
                if not layered:
                    s["d_uar"] = s["uar"] - logit_scores(r[f"final.{_target(meta)}"], y)["uar"]
                per_unit.append(s)
            names = list(per_unit[0])
            iv = bootstrap_many([1] * len(per_unit), lambda u, _i, values=per_unit: values[u], n_boot=n_boot,
                                seed=seed, resample_clips=False)
            out = dict(key=key, **meta, n_units=len(per_unit))
            for name in names:
                out.update({name: iv[name].value, f"{name}_low": iv[name].low, f"{name}_high": iv[name].high})
            rows.append(out)
    return pd.DataFrame(rows)


def causal_evidence(records: Units, *, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """The causal chapter's verdict quantities (UAR points; intervals resample units, then test clips):

    - `ablation_top_quarter`: UAR lost when LoRA is switched off in the top quarter of layers; control: the mean
      loss over random layer sets of the same size; contrast: the difference (paired);
    - `ablation_top_minus_bottom_half`: that loss minus the loss from switching off the bottom half;
    - `ablation_all`: the loss from switching LoRA off everywhere (how much LoRA matters at all);
    - `patch_attention_minus_mlp`: mean over the patched layers (every layer, or the swept ones) of (UAR lost
      when the frozen model's attention output replaces the LoRA model's) minus (the same for the MLP output);
      control: the same for the untrained adapter (official init) under the trained head; contrast: the
      difference;
    - `antialigned_top`: UAR lost when the top quarter's updates lose their component anti-aligned with h; control:
      the same edit in the frozen model;
    - `lora_minus_frozen`: the two models' UAR gap on these clips.
    """
    meta = records[0].meta
    n_layers, q, half = int(meta["n_layers"]), int(meta["top_quarter"]), int(meta["bottom_half"])
    n_classes = records[0]["final.lora"].shape[-1]
    randoms = sorted(k for k in records[0].arrays if k.startswith("ablate.random."))
    patched = sorted(int(k.rsplit(".", 1)[1]) for k in records[0].arrays  # every layer, or the swept ones
                     if k.startswith("patch.frozen>lora.attention."))
    preds = [{k: v.argmax(-1) for k, v in r.arrays.items() if k != "labels" and v.ndim == 2} for r in records]
    labels = [r["labels"] for r in records]

    def stats(u: int, idx: np.ndarray) -> dict[str, float]:
        y = labels[u][idx]

        def score(key: str) -> float:
            return _uar_fast(y, preds[u][key][idx], n_classes)

        lora, frozen = score("final.lora"), score("final.frozen")
        top = lora - score(f"ablate.top.{q}")
        random = float(np.mean([lora - score(k) for k in randoms]))
        attn_mlp = {}
        for target in ("lora", "untrained"):
            base = score(f"final.{target}")
            attn_mlp[target] = float(np.mean([(base - score(f"patch.frozen>{target}.attention.{l}"))
                                              - (base - score(f"patch.frozen>{target}.mlp.{l}"))
                                              for l in patched]))
        anti = {m: score(f"final.{m}") - score(f"antialigned.{m}.top.{q}") for m in ("lora", "frozen")}
        return {"ablation_top_quarter.value": top, "ablation_top_quarter.control": random,
                "ablation_top_quarter.contrast": top - random,
                "ablation_top_minus_bottom_half.value": top - (lora - score(f"ablate.bottom.{half}")),
                "ablation_all.value": lora - score(f"ablate.bottom.{n_layers}"),
                "patch_attention_minus_mlp.value": attn_mlp["lora"],
                "patch_attention_minus_mlp.control": attn_mlp["untrained"],
                "patch_attention_minus_mlp.contrast": attn_mlp["lora"] - attn_mlp["untrained"],
                "antialigned_top.value": anti["lora"], "antialigned_top.control": anti["frozen"],
                "antialigned_top.contrast": anti["lora"] - anti["frozen"],
                "lora_minus_frozen.value": lora - frozen}

    quantities = ("ablation_top_quarter", "ablation_top_minus_bottom_half", "ablation_all",
                  "patch_attention_minus_mlp", "antialigned_top", "lora_minus_frozen")
    intervals = bootstrap_many([len(y) for y in labels], stats, n_boot=n_boot, seed=seed)
    controls = {"ablation_top_quarter": f"random {q}-layer sets ({len(randoms)})",
                "patch_attention_minus_mlp": "untrained adapter (official init), trained head",
                "antialigned_top": "frozen model"}
    rows = _triplet_rows(intervals, quantities, n_layers=n_layers, top_quarter=q, bottom_half=half,
                         n_units=len(records))
    for r in rows:
        r["control_kind"] = controls.get(r["quantity"])
    return pd.DataFrame(rows)
