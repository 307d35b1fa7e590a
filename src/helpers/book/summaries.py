"""Each chapter's "What this run shows": Markdown whose every number is read from the run's own tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["data_summary"]


def data_summary(prosody: pd.DataFrame, baseline: np.ndarray, *, features, fold_names, n_classes: int) -> str:
    """The data chapter's reading of its prosody measurements and the prosody-only classifier's test UAR per fold.

    `baseline` holds that classifier's test UAR per fold (`helpers.data.acoustics.prosody_baseline`) on the
    prosody columns `features`.
    """
    baseline = np.asarray(baseline, dtype=float)
    chance = 1 / n_classes
    per_fold = ", ".join(f"{name} {u:.2f}" for name, u in zip(fold_names, baseline))
    spread = prosody.groupby("label")[["f0_range_st"]].median()["f0_range_st"]
    widest, narrowest = spread.idxmax(), spread.idxmin()
    unvoiced = int(prosody["f0_median_hz"].isna().sum())
    text = (f"A logistic regression on the {len(features)} "
            f"prosody numbers of each clip, trained on each fold's training speakers and tested on its held-out "
            f"speaker, reaches a mean test UAR of **{baseline.mean():.2f}** (chance {chance:.2f}; per fold: "
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
