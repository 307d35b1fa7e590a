"""Analysis sets: which clips of a fold the analyses look at (class-stratified, as the paper's 25 per class), and
which encoder positions of each clip hold speech."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.protocols import load_folds
from ..io import fingerprint
from ..training.runs import RunResults, corpus_classes, load_corpus

__all__ = ["TRACE_FORMAT", "AnalysisSettings", "select_analysis_set", "analysis_set"]

TRACE_FORMAT = 4  # bump when what a trace holds changes, so cached traces of an older format are not reused


@dataclass(frozen=True)
class AnalysisSettings:
    """Which utterances are analysed and how. The paper: 25 per class from a validation set; the official SVD/CKA
    code: 10 per class from training. `heldout` = validation + test speakers of the fold."""

    split: str = "heldout"
    per_class: int = 25
    seed: int = 0
    batch_size: int = 8
    lora_frames: int = 0             # LoRA matrices: frames kept per clip (0 = all)
    untrained_dropout: bool = False  # True: the official-init control traced with LoRA dropout on (an option)

    def key(self) -> str:
        return fingerprint({**asdict(self), "format": TRACE_FORMAT}, length=12)


def analysis_set(run: RunResults, fold_index: int, settings: AnalysisSettings,
                 cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """The analysis set of fold `fold_index` of `run` under `settings`, and the fold's name."""
    fold = load_folds(run.run_dir / "folds.json")[fold_index]
    splits = {"validation": fold.validation, "test": fold.test, "train": fold.train,
              "heldout": tuple(sorted(set(fold.validation) | set(fold.test)))}
    if settings.split not in splits:
        raise ValueError(f"AnalysisSettings.split={settings.split!r}; choose one of {sorted(splits)}")
    table = load_corpus(run.config, cache_dir=cache_dir)
    return select_analysis_set(table, splits[settings.split], per_class=settings.per_class,
                               seed=settings.seed), fold.name


def select_analysis_set(table: pd.DataFrame, utterances, *, per_class: int = 25, seed: int = 0,
                        classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A class-stratified sample of `utterances` (ids): up to `per_class` of each class, drawn with `seed`.

    `classes` (default: the run's, `table.attrs["classes"]` as `load_corpus` sets it) are drawn in that order. The
    paper draws 25 per class from a validation set; fewer are taken where a class has fewer, and the returned
    table's `attrs["shortfall"]` says by how many per class.
    """
    classes = corpus_classes(table) if classes is None else tuple(classes)
    pool = table[table["utterance"].isin(set(utterances))]
    rng = np.random.default_rng(seed)
    picked, shortfall = [], {}
    for label in classes:
        ids = sorted(pool.loc[pool["label"] == label, "utterance"])
        take = min(per_class, len(ids))
        if take < per_class:
            shortfall[label] = per_class - take
        picked += list(rng.choice(ids, size=take, replace=False)) if take else []
    chosen = table[table["utterance"].isin(set(picked))].sort_values(["label", "utterance"]).reset_index(drop=True)
    chosen.attrs["shortfall"] = shortfall
    return chosen


