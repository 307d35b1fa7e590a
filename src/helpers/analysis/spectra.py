"""SVD of LoRA activations and gradients (the paper's Fig. 3a-d) and the k90 effective dimension.

A matrix is (frames, dim): rows are frames of the analysis set, not centred (as the official code). k90 is the
number of leading singular values that hold 90% of the energy (sum of squared singular values).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["singular_values", "k_energy", "lora_matrix", "spectrum_table", "k90_summary"]


def singular_values(matrix: np.ndarray) -> np.ndarray:
    """Singular values of (rows, dim), descending, in float64."""
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


def k_energy(sv: np.ndarray, energy: float = 0.9) -> float:
    """Smallest k whose top-k singular values hold `energy` of sum(sv**2); NaN for an all-zero matrix."""
    power = np.asarray(sv, dtype=np.float64) ** 2
    total = power.sum()
    if total <= 0:
        return float("nan")
    return float(np.searchsorted(np.cumsum(power) / total, energy - 1e-12) + 1)


def lora_matrix(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, T, dim) -> (frames, dim), keeping the frames where mask (N, T) is true (all frames when None)."""
    return values.reshape(-1, values.shape[-1]) if mask is None else values[mask]


def spectrum_table(trace, kind: str, *, frames: str = "all", energy: float = 0.9,
                   centred: bool = False) -> pd.DataFrame:
    """Per LoRA module: k (e.g. k90) and the normalised spectrum (sv / sv.sum()) of `kind` in A, B, A_grad, B_grad.

    `centred=False` is the official code's (rows not centred, so a shared mean direction counts as one dimension);
    `centred=True` subtracts each column's mean over the selected frames first (a PCA spectrum)."""
    if kind not in ("A", "B", "A_grad", "B_grad"):
        raise ValueError(f"kind={kind!r}; choose A, B, A_grad or B_grad")
    mask = None
    if frames == "speech":
        keep = trace["lora_frames"]
        mask = trace["speech_mask"][:, keep]
    rows = []
    for name in trace.lora_names:
        matrix = lora_matrix(trace[f"{name}.{kind}"], mask)
        sv = singular_values(matrix - matrix.mean(0) if centred else matrix)
        layer, proj = name.split(".")[1:]
        total = sv.sum()
        rows.append(dict(module=name, layer=int(layer), projection=proj, kind=kind, k=k_energy(sv, energy),
                         spectrum=(sv / total if total > 0 else sv), frames=frames, centred=centred))
    return pd.DataFrame(rows)


def k90_summary(trained: pd.DataFrame, untrained: pd.DataFrame) -> dict:
    """Mean k over modules for trained and untrained, and the ratio untrained/trained (the paper's 'x-fold').

    A baseline whose quantity is identically zero (peft's B = 0 makes B outputs and A gradients vanish) has no k;
    the ratio is then NaN and `degenerate` says so rather than dividing zeros.
    """
    k_t, k_u = trained["k"].mean(), untrained["k"].mean()
    degenerate = bool(untrained["k"].isna().all() or trained["k"].isna().all())
    return dict(kind=trained["kind"].iloc[0], k_trained=k_t, k_untrained=k_u,
                ratio=(k_u / k_t) if not degenerate else float("nan"), degenerate=degenerate)
