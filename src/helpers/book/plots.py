"""Matplotlib figures for the chapters; each takes the tidy tables of the analysis modules and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot  # noqa: F401  (in a notebook this activates the inline backend's figure formatters)
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, StrMethodFormatter

from ..labels import EMOTIONS

__all__ = ["class_colors", "protocol_figure", "contribution_figure", "logit_lens_figure", "tsne_figure",
           "separability_figure", "spectra_figure",
           "cka_figure", "metric_bars_figure", "clip_figure", "ablation_figure", "patching_figure",
           "probe_figure", "erasure_figure", "spectrogram_grid_figure", "prosody_figure"]

COLORS = {"attention": "tab:blue", "mlp": "tab:orange", "attention+mlp": "tab:green", "lora": "tab:red",
          "frozen": "tab:gray"}
# the paper's four classes keep their colours in every run; other classes take the remaining tab10 colours in order
CLASS_COLORS = dict(zip(EMOTIONS, ("tab:red", "tab:orange", "tab:gray", "tab:blue")))
_OTHER_COLORS = ("tab:purple", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def class_colors(classes) -> dict[str, str]:
    """A colour per class name: the paper's four as always, the others from the unused tab10 colours (repeating
    after six), so a class keeps its colour across the figures of one run."""
    others = [c for c in classes if c not in CLASS_COLORS]
    return {c: CLASS_COLORS.get(c) or _OTHER_COLORS[others.index(c) % len(_OTHER_COLORS)] for c in classes}


def _chance(ax, n_classes: int, **style) -> None:
    """The chance level 1 / n_classes as a dotted line (UAR and accuracy of a constant guess)."""
    if n_classes < 2:
        raise ValueError(f"n_classes={n_classes}: a classifier has at least two classes")
    ax.axhline(1 / n_classes, color="black", ls=":", lw=style.pop("lw", 0.8), **style)


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """A Figure not registered with pyplot: it is shown once where it is displayed, never again at cell end."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def protocol_figure(table, *, metric: str = "uar", n_classes: int) -> Figure:
    """Mean +/- std of `metric` per protocol, one line per mode (the protocol comparison); chance 1 / n_classes."""
    fig, ax = _subplots(figsize=(7, 3.2))
    for mode, part in table.groupby("mode"):
        ax.errorbar(part["protocol"], part[f"{metric}_mean"], yerr=part[f"{metric}_std"], marker="o", capsize=3,
                    label=mode, color=COLORS.get(mode))
    _chance(ax, n_classes, label="chance")
    ax.set(ylabel=metric.upper(), ylim=(0, 1), xlabel="protocol")
    ax.legend()
    return fig


def contribution_figure(diff: pd.DataFrame, *, what: str = "difference") -> Figure:
    """Fig. 1: per layer, (a) relative contribution and (b) cosine with the residual, LoRA minus frozen
    (`what="difference"`) or both models side by side (`what="both"`)."""
    fig, axes = _subplots(1, 2, figsize=(10, 3.6))
    for ax, (col, title) in zip(axes, (("ratio", "(a) relative contribution ||x|| / ||h||"),
                                        ("cosine", "(b) cosine(x, h)"))):
        for component, part in diff.groupby("component", sort=False):
            if what == "difference":
                ax.plot(part["layer"], part[f"d_{col}"], marker="o", color=COLORS[component], label=component)
            else:
                ax.plot(part["layer"], part[f"{col}_lora"], marker="o", color=COLORS[component],
                        label=f"{component}, LoRA")
                ax.plot(part["layer"], part[f"{col}_frozen"], marker="x", ls="--", color=COLORS[component],
                        label=f"{component}, frozen")
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xlabel="encoder layer", title=title, ylabel="LoRA - frozen" if what == "difference" else col)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    return fig


def logit_lens_figure(table: pd.DataFrame) -> Figure:
    """Fig. 2a: per lens index, KL to the model's own prediction and top-1 agreement with it, LoRA vs frozen.

    The reference (the model's prediction) is drawn as its own line: KL 0 and agreement 1. The raw lens at the
    last index is the last layer's output without the final LayerNorm, so it need not touch that line."""
    fig, axes = _subplots(1, 2, figsize=(10, 3.6))
    for model, part in table.groupby("model"):
        axes[0].plot(part["index"], part["kl"], marker="o", color=COLORS.get(model), label=model)
        axes[1].plot(part["index"], part["overlap"], marker="o", color=COLORS.get(model), label=model)
    axes[0].axhline(0, color="black", ls="--", lw=0.8, label="model's own prediction")
    axes[1].axhline(1, color="black", ls="--", lw=0.8)
    last = int(table["index"].max())
    for ax in axes:
        ax.set_xticks(range(last + 1))
        ax.set_xlabel(f"lens index (0 = embeddings, i = output of layer i, {last} = last layer's output)")
    axes[0].set(ylabel="mean KL", title="(a) KL to the model's prediction")
    axes[1].set(ylabel="top-1 agreement", title="(b) prediction overlap", ylim=(0, 1.05))
    axes[0].legend(fontsize=8)
    return fig


def tsne_figure(embeddings: dict, labels: np.ndarray, classes) -> Figure:
    """Fig. 2b: t-SNE maps, rows = ranks, columns = layers; `embeddings[(rank, layer)]` is (N, 2), `labels` (N,)
    index `classes` (the run's class names)."""
    ranks = sorted({r for r, _ in embeddings})
    layers = sorted({l for _, l in embeddings})
    fig, axes = _subplots(len(ranks), len(layers), figsize=(2.6 * len(layers), 2.5 * len(ranks)), squeeze=False)
    names = np.asarray(classes)[labels]
    colors = class_colors(classes)
    for i, r in enumerate(ranks):
        for j, l in enumerate(layers):
            ax = axes[i, j]
            xy = embeddings[(r, l)]
            for c in classes:
                sel = names == c
                ax.scatter(xy[sel, 0], xy[sel, 1], s=9, color=colors[c], label=c)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"state {l}")
            if j == 0:
                ax.set_ylabel(f"r = {r}")
    axes[0, -1].legend(fontsize=7, loc="best")
    return fig


def separability_figure(table: pd.DataFrame, *, n_classes: int) -> Figure:
    """Silhouette and kNN UAR per state (layer index), one line per rank; kNN chance 1 / n_classes."""
    fig, axes = _subplots(1, 2, figsize=(10, 3.4))
    x = "state" if "state" in table else "index"
    for rank, part in table.groupby("rank"):
        axes[0].plot(part[x], part["silhouette_all"], marker="o", label=f"r = {rank}")
        axes[1].plot(part[x], part["knn_uar"], marker="o", label=f"r = {rank}")
    what = {"lora_a": "encoder layer (LoRA-A output)", "pooled": "residual state (0 = embeddings)"}
    xlabel = what.get(str(table["definition"].iloc[0]), "state") if "definition" in table else "state"
    axes[0].set(xlabel=xlabel, ylabel="silhouette", title="(a) silhouette (all classes)")
    axes[1].set(xlabel=xlabel, ylabel="kNN UAR", title="(b) kNN UAR (5-fold)")
    _chance(axes[1], n_classes, lw=0.6)
    axes[0].legend()
    return fig


def spectra_figure(spectra: pd.DataFrame, summary: pd.DataFrame, *, layer: int | None = None,
                   scale: str = "energy") -> Figure:
    """Fig. 3a-d, trained vs the control, mean over modules (or one layer): `scale="energy"` (default, as the
    official figure) plots the cumulative energy fraction E(k) = sum_{i<=k} sv_i^2 / sum sv^2 against k (log axis)
    with the 90% line, so k90 is where a curve crosses it; `"spectrum"` plots sv / sum(sv) on a log axis."""
    if scale not in ("energy", "spectrum"):
        raise ValueError(f"scale={scale!r}; choose 'energy' or 'spectrum'")
    kinds = ("A", "A_grad", "B", "B_grad")
    titles = {"A": "(a) LoRA_A activations", "A_grad": "(b) LoRA_A gradients", "B": "(c) LoRA_B activations",
              "B_grad": "(d) LoRA_B gradients"}
    fig, axes = _subplots(2, 2, figsize=(10, 6.4))
    for ax, kind in zip(axes.ravel(), kinds):
        part = spectra[spectra["kind"] == kind]
        if layer is not None:
            part = part[part["layer"] == layer]
        for model, rows in part.groupby("model", sort=False):
            n = min(len(s) for s in rows["spectrum"])
            color = "tab:blue" if model == "trained" else "tab:orange"
            label = f"{model} (k90 {rows['k'].mean():.1f})"
            if scale == "energy":
                power = [np.asarray(s[:n], dtype=float) ** 2 for s in rows["spectrum"]]
                curves = [np.cumsum(p) / p.sum() for p in power if p.sum() > 0]
                if curves:
                    ax.semilogx(np.arange(1, n + 1), np.mean(curves, axis=0), color=color, label=label)
            else:
                mean = np.mean([s[:n] for s in rows["spectrum"]], axis=0)
                ax.semilogy(np.arange(1, n + 1), np.maximum(mean, 1e-12), color=color, label=label)
        if scale == "energy":
            ax.axhline(0.9, color="black", lw=0.6, ls=":")
            ax.set(ylim=(0, 1.02), ylabel="energy fraction E(k)")
        else:
            ax.set(ylabel="sv / sum(sv)")
        ax.set(title=titles[kind], xlabel="k (singular directions)")
        if scale == "energy":
            widths = [len(s) for s in part["spectrum"]]
            if widths and max(widths) <= 64:  # a short axis (k up to r): ticks at powers of 2
                ax.set_xticks([2 ** i for i in range(int(np.log2(max(widths))) + 1)])
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())  # no 2x10^0 labels
        ax.legend(fontsize=7, loc="lower right" if scale == "energy" else "best")
    return fig


def cka_figure(table: pd.DataFrame) -> Figure:
    """Fig. 3e-f: CKA between A and B per module, forward (activations) and backward (gradients), with the 95th
    percentile of the permutation null as a shaded band."""
    fig, axes = _subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, direction, title in zip(axes, ("forward", "backward"), ("(e) activations", "(f) gradients")):
        part = table[table["direction"] == direction].reset_index(drop=True)
        x = np.arange(len(part))
        ax.bar(x, part["cka"], color="tab:purple")
        ax.plot(x, part["null_q95"], color="black", ls="--", marker="_", label="permutation null, 95th pct")
        ax.set_xticks(x, [m.removeprefix("lora.") for m in part["module"]], rotation=60, fontsize=7)
        ax.set(title=title, ylabel="CKA")
        ax.axhline(0, color="black", lw=0.6)
    axes[0].legend(fontsize=8)
    return fig


def metric_bars_figure(table: pd.DataFrame, *, n_classes: int) -> Figure:
    """Mean +/- std of UAR and WAR per mode (and protocol, when present); chance 1 / n_classes."""
    fig, ax = _subplots(figsize=(7, 3.2))
    labels = [f"{r.mode}\n{r.protocol}" for r in table.itertuples()]
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["uar_mean"], 0.4, yerr=table["uar_std"], label="UAR", color="tab:blue")
    ax.bar(x + 0.2, table["war_mean"], 0.4, yerr=table["war_std"], label="WAR", color="tab:cyan")
    _chance(ax, n_classes, label="chance")
    ax.set_xticks(x, labels)
    ax.set(ylim=(0, 1), ylabel="score")
    ax.legend()
    return fig


def clip_figure(wave: np.ndarray, features: np.ndarray, title: str) -> Figure:
    """A clip's waveform and log-mel features."""
    fig, axes = _subplots(2, 1, figsize=(8, 3.6))
    axes[0].plot(np.arange(len(wave)) / 16000, wave, lw=0.5)
    axes[0].set(title=title, xlabel="s")
    axes[1].imshow(features, origin="lower", aspect="auto", cmap="magma")
    axes[1].set(xlabel="frame (10 ms)", ylabel="mel bin")
    return fig


def spectrogram_grid_figure(spectrograms: dict[str, np.ndarray], *, title: str = "") -> Figure:
    """Log-mel features (n_mels, frames) of one clip per class, side by side on one colour scale."""
    fig, axes = _subplots(1, len(spectrograms), figsize=(2.6 * len(spectrograms), 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    low = min(float(np.min(x)) for x in spectrograms.values())
    high = max(float(np.max(x)) for x in spectrograms.values())
    for ax, (label, features) in zip(axes, spectrograms.items()):
        image = ax.imshow(features, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high,
                          extent=(0, features.shape[1] / 100, 0, features.shape[0]))
        ax.set(title=label, xlabel="s")
    axes[0].set_ylabel("mel bin")
    fig.colorbar(image, ax=axes, shrink=0.8, label="log-mel (Whisper scale)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def prosody_figure(table: pd.DataFrame, features: dict[str, str], *, classes=None) -> Figure:
    """One panel per prosody feature: its distribution per class (box) with every clip as a dot, female speakers
    (speaker ids ending in F) as circles and male as crosses. `classes`: their order (default: the run's,
    `table.attrs["classes"]`, else sorted); classes without a clip in `table` are left out of the axis."""
    fig, axes = _subplots(1, len(features), figsize=(max(2.3, 0.45 * len(set(table["label"]))) * len(features),
                                                     3.0))
    order = classes if classes is not None else table.attrs.get("classes") or sorted(table["label"].unique())
    classes = [c for c in order if c in set(table["label"])]
    colors = class_colors(order)
    rng = np.random.default_rng(0)
    for ax, (column, meaning) in zip(np.atleast_1d(axes), features.items()):
        values = [table.loc[table["label"] == c, column].dropna().to_numpy() for c in classes]
        ax.boxplot(values, showfliers=False, widths=0.55, medianprops=dict(color="black"))
        for k, c in enumerate(classes):
            part = table[(table["label"] == c)].dropna(subset=[column])
            female = part["speaker"].astype(str).str.endswith("F").to_numpy()
            x = k + 1 + rng.uniform(-0.18, 0.18, len(part))
            ax.scatter(x[female], part[column].to_numpy()[female], s=8, color=colors[c], alpha=0.6,
                       marker="o", lw=0)
            ax.scatter(x[~female], part[column].to_numpy()[~female], s=10, color=colors[c], alpha=0.6,
                       marker="x", lw=0.8)
        ax.set_xticks(range(1, len(classes) + 1), [c[:4] for c in classes])
        ax.set_title(meaning, fontsize=9)
    return fig


def _band(ax, x, part: pd.DataFrame, col: str, **style) -> None:
    """A line of `col` with its interval (`col_low`, `col_high`) shaded."""
    line, = ax.plot(x, part[col], marker="o", **style)
    ax.fill_between(x, part[f"{col}_low"], part[f"{col}_high"], color=line.get_color(), alpha=0.15, lw=0)


def _rows(curves: pd.DataFrame, experiment: str, model: str, kind: str) -> pd.DataFrame:
    part = curves[(curves["experiment"] == experiment) & (curves["model"] == model) & (curves["kind"] == kind)]
    return part.assign(at=part["where"].astype(int)).sort_values("at")


def ablation_figure(curves: pd.DataFrame, *, top_quarter: int, metric: str = "d_uar") -> Figure:
    """LoRA switched off by depth: (a) the bottom k / top k layers, with the random sets' mean as the control;
    (b) each single layer. `metric` is the change in UAR from the intact model (or uar, war)."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 3.6))
    for kind, color in (("bottom", "tab:blue"), ("top", "tab:red")):
        part = _rows(curves, "ablate", "lora", kind)
        _band(left, part["at"], part, metric, color=color, label=f"{kind} k layers off")
    randoms = curves[(curves["experiment"] == "ablate") & (curves["kind"] == "random")]
    if len(randoms):
        left.plot([top_quarter], [randoms[metric].mean()], marker="X", ms=9, ls="", color="black",
                  label=f"{top_quarter} random layers (mean of {len(randoms)} sets)")
    left.set(xlabel="k (layers with LoRA switched off)", ylabel=metric, title="(a) bottom k vs top k layers")
    single = _rows(curves, "ablate", "lora", "single")
    right.bar(single["at"], single[metric], yerr=[single[metric] - single[f"{metric}_low"],
                                                  single[f"{metric}_high"] - single[metric]],
              color="tab:purple", capsize=3)
    right.set(xlabel="encoder layer with LoRA switched off", ylabel=metric, title="(b) one layer at a time")
    for ax in (left, right):
        ax.axhline(0, color="black", lw=0.6)
        ax.xaxis.get_major_locator().set_params(integer=True)
    left.legend(fontsize=8)
    return fig


def patching_figure(curves: pd.DataFrame, *, metric: str = "uar") -> Figure:
    """Activation patching between the frozen and the LoRA model: (a) the residual stream at each layer's input,
    both directions, with each model's intact score as a reference line; (b) attention vs MLP output patched from
    the frozen model into the LoRA model, per layer."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 3.6))
    for direction, color in (("frozen>lora", "tab:red"), ("lora>frozen", "tab:gray")):
        part = _rows(curves, "patch", direction, "residual")
        source, target = direction.split(">")
        _band(left, part["at"], part, metric, color=color, label=f"{target} model, {source}'s residual patched in")
    for model in ("lora", "frozen"):
        intact = curves[(curves["experiment"] == "final") & (curves["model"] == model)][metric].iloc[0]
        left.axhline(intact, color=COLORS[model], ls=":", lw=1, label=f"{model} intact")
    left.set(xlabel="layer whose input is patched (L = before the final LayerNorm)", ylabel=metric.upper(),
             title="(a) residual stream")
    width = 0.38
    for offset, part_name in ((-width / 2, "attention"), (width / 2, "mlp")):
        part = _rows(curves, "patch", "frozen>lora", part_name)
        right.bar(part["at"] + offset, part["d_uar"], width, color=COLORS[part_name], label=part_name,
                  yerr=[part["d_uar"] - part["d_uar_low"], part["d_uar_high"] - part["d_uar"]], capsize=2)
    right.axhline(0, color="black", lw=0.6)
    right.set(xlabel="encoder layer", ylabel="UAR change of the LoRA model",
              title="(b) frozen sublayer output patched into LoRA")
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    return fig


def probe_figure(curves: pd.DataFrame, *, metric: str = "uar", n_classes: int) -> Figure:
    """Per layer: a linear probe trained on the layer's pooled state, the tuned lens and the raw logit lens, for
    the LoRA (solid) and the frozen model (dashed); chance 1 / n_classes."""
    fig, ax = _subplots(figsize=(7.5, 3.8))
    for experiment, color, name in (("probe", "tab:green", "linear probe"), ("tuned", "tab:blue", "tuned lens"),
                                    ("lens", "tab:orange", "raw logit lens")):
        for model, ls in (("lora", "-"), ("frozen", "--")):
            part = _rows(curves, experiment, model, "layer")
            _band(ax, part["at"], part, metric, color=color, ls=ls, label=f"{name}, {model}")
    _chance(ax, n_classes, label="chance")
    ax.set(xlabel="layer (0 = input of layer 0, L = last layer's output)", ylabel=f"test {metric.upper()}",
           ylim=(0, 1))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, ncol=2)
    return fig


def erasure_figure(curves: pd.DataFrame, *, metric: str = "d_uar") -> Figure:
    """The official residual erasure (a layer's output set to its input): (a) one layer at a time, (b) the bottom
    k and the top k layers erased, LoRA vs frozen."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 3.6))
    for model in ("lora", "frozen"):
        part = _rows(curves, "erase", model, "single")
        _band(left, part["at"], part, metric, color=COLORS[model], label=model)
        for kind, ls in (("bottom", "-"), ("top", "--")):
            part = _rows(curves, "erase", model, kind)
            _band(right, part["at"], part, metric, color=COLORS[model], ls=ls, label=f"{model}, {kind} k erased")
    left.set(xlabel="erased layer", ylabel=metric, title="(a) one layer erased")
    right.set(xlabel="k (layers erased)", ylabel=metric, title="(b) progressive erasure")
    for ax in (left, right):
        ax.axhline(0, color="black", lw=0.6)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    return fig
