"""What the paper reports, as data: the reference every chapter and the scorecard compare against.

These are the paper's published values (Table 1, Sections 3.2-3.6), not results of this code.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["TABLE1", "K90", "LAYERS", "table1_frame"]

# Table 1: IEMOCAP 4-class, the paper's "speaker-independent 10-fold" (the official code's dialog-prefix folds).
TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "tiny": dict(lora_uar=(0.670, 0.026), lora_war=(0.664, 0.028),
                 frozen_uar=(0.485, 0.033), frozen_war=(0.502, 0.028)),
    "base": dict(lora_uar=(0.702, 0.025), lora_war=(0.692, 0.025),
                 frozen_uar=(0.517, 0.036), frozen_war=(0.530, 0.029)),
    "small": dict(lora_uar=(0.728, 0.034), lora_war=(0.723, 0.036),
                  frozen_uar=(0.545, 0.036), frozen_war=(0.558, 0.036)),
    "medium": dict(lora_uar=(0.758, 0.030), lora_war=(0.756, 0.031),
                   frozen_uar=(0.638, 0.037), frozen_war=(0.641, 0.032)),
    "large-v2": dict(lora_uar=(0.774, 0.026), lora_war=(0.768, 0.035),
                     frozen_uar=(0.582, 0.044), frozen_war=(0.588, 0.041)),
    "large-v3": dict(lora_uar=(0.767, 0.034), lora_war=(0.763, 0.036),
                     frozen_uar=(0.433, 0.031), frozen_war=(0.459, 0.036)),
}
# Section 3.5: k90 improvement factors, untrained / trained.
K90: dict[str, float] = {"A": 5.5, "A_grad": 1.7, "B": 10.4, "B_grad": 0.4}
# Section 3.3: large-v2 has 32 encoder layers; the frozen KL minimum is near layer 27, LoRA's overlap rises at 27.
LAYERS = 32
FROZEN_KL_MIN_LAYER = 27


def table1_frame() -> pd.DataFrame:
    """Table 1 as rows: model, mode, uar, uar_std, war, war_std."""
    rows = []
    for size, v in TABLE1.items():
        for mode in ("lora", "frozen"):
            rows.append(dict(model=size, mode=mode, uar=v[f"{mode}_uar"][0], uar_std=v[f"{mode}_uar"][1],
                             war=v[f"{mode}_war"][0], war_std=v[f"{mode}_war"][1]))
    return pd.DataFrame(rows)
