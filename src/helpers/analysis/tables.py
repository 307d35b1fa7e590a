"""The tidy tables the chapters show, computed from traces by the analysis modules (one per figure of the paper)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import EMOTIONS
from .cka import cka, cka_permutation_null
from .contributions import contribution_difference, relative_contributions
from .logit_lens import logit_lens_table
from .separability import separability_table
from .spectra import k90_summary, spectrum_table
from .tracing import Trace

__all__ = ["contribution_tables", "logit_lens_tables", "rank_separability", "svd_tables", "cka_tables"]


def contribution_tables(traces: dict, *, frames: str = "all") -> pd.DataFrame:
    """Fig. 1: per layer and component, LoRA and frozen ratios/cosines and their difference."""
    return contribution_difference(relative_contributions(traces["lora"].arrays, frames=frames),
                                   relative_contributions(traces["frozen"].arrays, frames=frames))


def logit_lens_tables(traces: dict, *, frames: str = "all", final_norm: bool = False,
                      direction: str = "paper") -> pd.DataFrame:
    """Fig. 2a: KL to the final prediction and top-1 overlap per layer index, for LoRA and frozen."""
    key = f"lens.{frames}.{'ln' if final_norm else 'raw'}"
    parts = [logit_lens_table(traces[m][key], direction=direction).assign(model=m, frames=frames,
                                                                           final_norm=final_norm)
             for m in ("lora", "frozen") if m in traces]
    return pd.concat(parts, ignore_index=True)


def rank_separability(rank_traces: dict[int, Trace], *, frames: str = "speech", final_norm: bool = False,
                      seed: int = 0) -> pd.DataFrame:
    """Fig. 2b's numbers: silhouette (overall and per class) and kNN UAR per rank and layer index."""
    key = f"pooled_{'ln_' if final_norm else ''}{frames}"
    return pd.concat([separability_table(t[key], t["labels"], EMOTIONS, rank=r, seed=seed)
                      for r, t in rank_traces.items()], ignore_index=True)


def svd_tables(traces: dict, *, frames: str = "all", baseline: str = "untrained-official",
               energy: float = 0.9) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3a-d: per-module spectra and k90 (trained and `baseline`), and the k90 summary with ratios."""
    spectra, summary = [], []
    for kind in ("A", "B", "A_grad", "B_grad"):
        trained = spectrum_table(traces["lora"], kind, frames=frames, energy=energy).assign(model="trained")
        untrained = spectrum_table(traces[baseline], kind, frames=frames, energy=energy).assign(model=baseline)
        spectra += [trained, untrained]
        summary.append(dict(k90_summary(trained, untrained), baseline=baseline, frames=frames))
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
