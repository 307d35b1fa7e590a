"""Rank analysis (the paper's Fig. 2b): how well emotions cluster in pooled representations, per layer and rank.

The paper shows t-SNE plots only; here each picture comes with numbers: silhouette score (overall and per class,
in the standardised space, not the t-SNE one) and a cross-validated kNN UAR.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_samples
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..training.metrics import uar

__all__ = ["RANK_DEFINITIONS", "rank_features", "rank_states", "standardize", "tsne_2d", "evenly_spaced", "tsne_maps",
           "rank_tsne_maps",
           "silhouette_by_class", "knn_uar", "separability_table"]


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature (constant features left at 0), as the official t-SNE code did."""
    return StandardScaler().fit_transform(x)


def tsne_2d(x: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of standardised x (N, d); perplexity is capped below N as t-SNE requires. (N, 2)"""
    perplexity = min(perplexity, max(2.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(standardize(x))


def evenly_spaced(n: int, k: int = 5) -> list[int]:
    """Up to k evenly spaced indices of range(n), first and last included (large-v2's 33 states: 0, 8, 16, 24,
    32)."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


RANK_DEFINITIONS = ("lora_a", "pooled")


def rank_features(trace, state: int, *, definition: str = "lora_a", frames: str = "all") -> np.ndarray:
    """Per clip, the representation Fig. 2b clusters, (N, p).

    `"lora_a"` (the official code): the LoRA-A output of the first adapted projection in encoder layer `state`,
    flattened over time (padding frames zeroed when `frames="speech"`). `"pooled"` (ours): the residual state
    `state` (0 = embeddings, L = last layer's output) averaged over the selected frames, which does not depend on
    where LoRA sits or on clip length.
    """
    if definition == "pooled":
        return trace[f"pooled_{frames}"][:, state]
    if definition != "lora_a":
        raise ValueError(f"definition={definition!r}; choose one of {RANK_DEFINITIONS}")
    name = next((n for n in trace.lora_names if int(n.split(".")[1]) == state), None)
    if name is None:
        raise ValueError(f"layer {state} has no LoRA module; adapted: {trace.lora_names}")
    a = trace[f"{name}.A"]
    if frames == "speech":
        a = a * trace["speech_mask"][:, trace["lora_frames"]][:, :, None]
    return a.reshape(len(a), -1)


def rank_states(trace, definition: str = "lora_a") -> list[int]:
    """The states `rank_features` accepts: encoder layers with LoRA (`lora_a`) or residual states 0..L (`pooled`)."""
    if definition == "pooled":
        return list(range(trace["pooled_all"].shape[1]))
    return sorted({int(n.split(".")[1]) for n in trace.lora_names})


def tsne_maps(pooled_by_rank: dict, layers, *, seed: int = 0) -> dict:
    """t-SNE maps {(rank, layer): (N, 2)} of pooled states {rank: (N, L+1, d)} at the given layer indices."""
    return {(r, l): tsne_2d(pooled[:, l], seed=seed) for r, pooled in pooled_by_rank.items() for l in layers}


def rank_tsne_maps(rank_traces: dict, states, *, definition: str = "lora_a", frames: str = "all",
                   seed: int = 0) -> dict:
    """t-SNE maps {(rank, state): (N, 2)} of `rank_features` for each rank's trace at each state."""
    return {(r, s): tsne_2d(rank_features(t, s, definition=definition, frames=frames), seed=seed)
            for r, t in rank_traces.items() for s in states}


def silhouette_by_class(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean silhouette (Euclidean, standardised x) overall (`"all"`) and per class label; in [-1, 1]. NaN where it
    is undefined: fewer than two classes, or no class with two clips (an analysis set of one clip per class, as a
    rehearsal's small folds give), as `knn_uar` is NaN where it cannot cross-validate."""
    classes = np.unique(labels)
    if not 1 < len(classes) < len(labels):
        return {"all": float("nan"), **{str(c): float("nan") for c in classes}}
    s = silhouette_samples(standardize(x), labels)
    out = {"all": float(s.mean())}
    out.update({str(c): float(s[labels == c].mean()) for c in np.unique(labels)})
    return out


def knn_uar(x: np.ndarray, labels: np.ndarray, *, k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """UAR of a k-nearest-neighbour classifier under stratified cross-validation on standardised x."""
    n_splits = min(folds, np.bincount(np.unique(labels, return_inverse=True)[1]).min())
    if n_splits < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(k, len(x) - 1)))
    pred = cross_val_predict(model, x, labels, cv=StratifiedKFold(n_splits, shuffle=True, random_state=seed))
    return uar(labels, pred)


def separability_table(pooled: np.ndarray, labels: np.ndarray, class_names, *, rank: int,
                       seed: int = 0) -> pd.DataFrame:
    """Per layer index of pooled (N, L+1, d): silhouette overall and per class, and kNN UAR, tagged with `rank`."""
    rows = []
    n = pooled.shape[1]
    names = np.asarray(class_names)[labels]
    for i in range(n):
        sil = silhouette_by_class(pooled[:, i], names)
        rows.append(dict(rank=rank, index=i, depth=i / (n - 1), knn_uar=knn_uar(pooled[:, i], labels, seed=seed),
                         **{f"silhouette_{k}": v for k, v in sil.items()}))
    return pd.DataFrame(rows)
