"""Logit lens (the paper's Fig. 2a): the trained head applied to every layer's hidden state.

Per layer l the pooled hidden state goes through the trained projector and classifier, z_l = C(P(mean_t h_l)),
optionally after the final encoder LayerNorm (which the model itself applies before its head; the official code
does not). Because the projector is linear, projecting then pooling equals pooling then projecting.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

__all__ = ["log_softmax", "kl_divergence", "lens_logits", "lens_kl_overlap", "logit_lens_table"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum_c p(c) (log p(c) - log q(c)) over the last axis, from log-probabilities; >= 0."""
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


@torch.no_grad()
def lens_logits(pooled: np.ndarray, projector, classifier) -> np.ndarray:
    """Head logits of pooled states (N, L+1, d) -> (N, L+1, C) with the model's own projector and classifier."""
    x = torch.as_tensor(pooled, dtype=torch.float32)
    device = next(projector.parameters()).device
    return classifier(projector(x.to(device))).float().cpu().numpy()


def lens_kl_overlap(logits: np.ndarray, reference: np.ndarray | None = None, *,
                    direction: Literal["paper", "official"] = "paper") -> tuple[np.ndarray, np.ndarray]:
    """Per clip and lens index: KL to the reference prediction and top-1 agreement with it, (N, L+1) each.

    `logits` (N, L+1, C); `reference` (N, C) is the model's own prediction (default: the last lens index).
    `direction="paper"` is KL(pi_l || pi_ref) as the paper writes it; `"official"` is KL(pi_ref || pi_l), what the
    official code's `kl_div(log p_layer, p_final)` computes.
    """
    if direction not in ("paper", "official"):
        raise ValueError(f"direction={direction!r}; choose 'paper' or 'official'")
    reference = logits[:, -1] if reference is None else reference
    log_p, log_ref = log_softmax(logits), log_softmax(reference)[:, None, :]
    log_ref = np.broadcast_to(log_ref, log_p.shape)
    kl = kl_divergence(log_p, log_ref) if direction == "paper" else kl_divergence(log_ref, log_p)
    overlap = (logits.argmax(-1) == reference.argmax(-1)[:, None]).astype(float)
    return kl, overlap


def logit_lens_table(logits: np.ndarray, reference: np.ndarray | None = None, *,
                     direction: Literal["paper", "official"] = "paper") -> pd.DataFrame:
    """Per lens index (0 = embeddings, L = last layer): mean KL to the reference prediction and top-1 agreement
    with it (prediction overlap); see `lens_kl_overlap`."""
    kl, overlap = lens_kl_overlap(logits, reference, direction=direction)
    n = logits.shape[1]
    return pd.DataFrame(dict(index=np.arange(n), depth=np.arange(n) / (n - 1), kl=kl.mean(0),
                             kl_std=kl.std(0), overlap=overlap.mean(0), direction=direction))
