"""Result tables read from run files: Table 1 (ours beside the paper's) and the protocol comparison."""

from __future__ import annotations

import json
import re

import pandas as pd

from ..training.runs import RunResults
from .paper_reference import table1_frame

__all__ = ["model_size", "summary_row", "results_table", "per_unit_results", "table1_comparison", "speed_table"]


def model_size(model: str) -> str:
    """The Whisper size name of a model id: 'tiny.en' -> 'tiny', 'openai/whisper-large-v2' -> 'large-v2'."""
    name = str(model).rstrip("/").split("/")[-1].removeprefix("whisper-")
    return re.sub(r"\.en$", "", name)


def summary_row(run: RunResults) -> dict:
    """One line per run: model, mode, protocol, folds, mean/std of UAR, WAR, macro-F1, the UAR interval."""
    s = run.summary.set_index("metric")
    return dict(model=run.config.model, size=model_size(run.config.model), mode=run.config.mode,
                protocol=run.config.protocol, targets=",".join(run.config.target_modules), rank=run.config.rank,
                n_folds=int(s.loc["uar", "n"]),
                uar_mean=s.loc["uar", "mean"], uar_std=s.loc["uar", "std"], war_mean=s.loc["war", "mean"],
                war_std=s.loc["war", "std"], f1_mean=s.loc["macro_f1", "mean"], f1_std=s.loc["macro_f1", "std"],
                uar_ci_low=s.loc["uar", "ci_low"], uar_ci_high=s.loc["uar", "ci_high"],
                chosen_epochs=",".join(str(e) for e in run.folds["chosen_epoch"]), run=run.run_dir.name)


def results_table(runs) -> pd.DataFrame:
    """`summary_row` for each run."""
    return pd.DataFrame([summary_row(r) for r in runs])


def per_unit_results(runs) -> pd.DataFrame:
    """One row per fold of each run: size, mode, seed, fold and its test UAR, WAR and macro-F1 (the units the
    performance intervals resample)."""
    rows = []
    for run in runs:
        for r in run.folds.itertuples():
            rows.append(dict(size=model_size(run.config.model), mode=run.config.mode, seed=run.config.seed,
                             protocol=run.config.protocol, fold=r.fold, uar=r.test_uar, war=r.test_war,
                             macro_f1=r.test_macro_f1))
    return pd.DataFrame(rows)


def table1_comparison(ours: pd.DataFrame) -> pd.DataFrame:
    """Our UAR/WAR (mean +/- std) beside the paper's for the same size and mode (NaN where the paper has none)."""
    paper = table1_frame().rename(columns={"model": "size", "uar": "paper_uar", "uar_std": "paper_uar_std",
                                           "war": "paper_war", "war_std": "paper_war_std"})
    return ours.merge(paper, on=["size", "mode"], how="left")


def speed_table(runs) -> pd.DataFrame:
    """Per run: training throughput (clips/s, mean over folds), training minutes, and the speed settings in effect."""
    rows = []
    for run in runs:
        first = run.run_dir / str(run.folds["fold"].iloc[0]) / "result.json"
        speed = json.loads(first.read_text()).get("speed", {})  # what took effect where the folds trained
        rows.append(dict(mode=run.config.mode, protocol=run.config.protocol, pooling=run.config.pooling,
                         n_folds=len(run.folds),
                         clips_per_second=run.folds["examples_per_second"].mean(),
                         train_minutes=run.folds["train_seconds"].sum() / 60,
                         **{k: v for k, v in speed.items() if k not in ("batches", "features")}))
    return pd.DataFrame(rows)
