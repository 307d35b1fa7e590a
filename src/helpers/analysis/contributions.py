"""Layer contributions (the paper's Fig. 1): how much self-attention and MLP add to the residual stream, per layer.

For layer l with input h, attention output a and MLP output m (layer output = h + a + m), per frame:
||a||/||h||, ||m||/||h||, ||a+m||/||h|| and cos(a, h), cos(m, h), cos(a+m, h); averaged over the selected frames of
all clips. The paper's Fig. 1 plots LoRA minus frozen.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
import pandas as pd

__all__ = ["COMPONENTS", "frame_mean", "relative_contributions", "contribution_difference"]

Frames = Literal["all", "speech"]
# component -> (norm key, cosine key) in a trace
COMPONENTS: dict[str, tuple[str, str]] = {"attention": ("a_norm", "cos_ah"), "mlp": ("m_norm", "cos_mh"),
                                          "attention+mlp": ("am_norm", "cos_amh")}


def frame_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over clips and frames of values (N, L, T) where mask (N, T) is true: shape (L,)."""
    if values.ndim != 3 or mask.shape != (values.shape[0], values.shape[2]):
        raise ValueError(f"values {values.shape} must be (N, L, T) and mask {mask.shape} (N, T)")
    if not mask.any():
        raise ValueError("the frame mask selects no frame")
    return (values * mask[:, None, :]).sum(axis=(0, 2)) / mask.sum()


def relative_contributions(trace: Mapping[str, np.ndarray], *, frames: Frames = "all") -> pd.DataFrame:
    """Tidy table: layer, component, ratio (mean ||x||/||h||), cosine (mean cos(x, h)), frames."""
    if frames not in ("all", "speech"):
        raise ValueError(f"frames={frames!r}; choose 'all' (padding included, as the official code) or 'speech'")
    h = trace["h_norm"]
    mask = np.ones((h.shape[0], h.shape[2]), bool) if frames == "all" else trace["speech_mask"]
    rows = []
    for component, (norm_key, cos_key) in COMPONENTS.items():
        ratio = frame_mean(trace[norm_key] / np.maximum(h, 1e-12), mask)
        cosine = frame_mean(trace[cos_key], mask)
        rows += [dict(layer=l, component=component, ratio=float(ratio[l]), cosine=float(cosine[l]), frames=frames)
                 for l in range(h.shape[1])]
    return pd.DataFrame(rows)


def contribution_difference(lora: pd.DataFrame, frozen: pd.DataFrame) -> pd.DataFrame:
    """LoRA minus frozen per layer and component (columns d_ratio, d_cosine), with relative depth (layer+1)/L."""
    merged = lora.merge(frozen, on=["layer", "component", "frames"], suffixes=("_lora", "_frozen"))
    merged["d_ratio"] = merged["ratio_lora"] - merged["ratio_frozen"]
    merged["d_cosine"] = merged["cosine_lora"] - merged["cosine_frozen"]
    merged["depth"] = (merged["layer"] + 1) / (merged["layer"].max() + 1)
    return merged
