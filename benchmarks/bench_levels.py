"""What clip level normalisation (the `level` setting) does to the demo LoRA model's test UAR, measured in one run.

For each of `none` (clips as recorded), `peak` and `loudness`, the demo profile's main LoRA run is trained on the
same speaker-independent folds and seeds as the book's verdicts (seed 42 on every fold, seeds 43 and 44 on the
first two; runs the book already trained are read from the cache). Prints each setting's test UAR and its paired
difference from `none` per fold run, with a 95% bootstrap interval over fold runs, and the spread of clip levels
before and after normalising. On the demo corpus loudness is one of the prosody settings that make the emotions
(anger loud, sadness quiet), so normalising removes a designed cue; on a real corpus it also removes recording
gain differences that carry no emotion.

    python benchmarks/bench_levels.py [--seeds 42,43,44] [--seed-folds 2]
"""

from __future__ import annotations

import argparse

import numpy as np

from helpers.analysis.uncertainty import bootstrap
from helpers.book.reproducibility import write_benchmark
from helpers.config import make_config
from helpers.data.corpora import load_audio
from helpers.data.levels import LEVEL_METHODS, active_rms_dbfs, normalise_level, peak_dbfs
from helpers.training.runs import collect_run, load_corpus, prepare_run, train_run_fold


def fold_uars(level: str, seeds: list[int], seed_folds: int) -> dict[tuple[int, str], float]:
    """Test UAR of each (seed, fold) unit of the demo LoRA run with clip level `level`."""
    out = {}
    for i, seed in enumerate(seeds):
        run = prepare_run(make_config("demo", level=level, seed=seed, max_folds=seed_folds if i else None))
        folds = range(len(run.folds))
        for f in folds:
            train_run_fold(run, f)
        rows = collect_run(run).folds
        for f in folds:
            name = run.folds[f].name
            out[(seed, name)] = float(rows.loc[rows["fold"] == name, "test_uar"].iloc[0])
        print(f"level={level} seed={seed}: {[round(out[(seed, run.folds[f].name)], 3) for f in folds]}", flush=True)
    return out


def level_spread(level: str, paths, measure) -> str:
    """5th-95th percentile span (dB) of `measure` over the clips after normalising by `level`."""
    values = np.array([measure(normalise_level(load_audio(p), level)) for p in paths])
    low, high = np.percentile(values, [5, 95])
    return f"{high - low:.1f} dB ({low:.1f} to {high:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--seed-folds", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table = load_corpus(make_config("demo"))
    paths = table.sample(n=min(len(table), 120), random_state=0)["path"].tolist()
    by_class = table.groupby("label")["path"].apply(
        lambda p: np.mean([active_rms_dbfs(load_audio(x)) for x in p[:12]]))
    uars = {level: fold_uars(level, seeds, args.seed_folds) for level in LEVEL_METHODS}
    units = sorted(uars["none"])
    lines = [f"demo LoRA run (tiny.en, {make_config('demo').max_seconds} s inputs), {len(units)} fold runs "
             f"(seed {seeds[0]} every fold, seeds {', '.join(map(str, seeds[1:])) or '-'} the first "
             f"{args.seed_folds}); intervals: 95% bootstrap over fold runs", "",
             "| level | test UAR (mean over fold runs) | difference from none [95% CI] | fold runs higher / lower "
             "| clip peak spread, 5th-95th pct (dBFS) | active-speech level spread (dBFS) |",
             "|---|---|---|---|---|---|"]
    for level in LEVEL_METHODS:
        values = np.array([uars[level][u] for u in units])
        diff = values - np.array([uars["none"][u] for u in units])
        ci = bootstrap([1] * len(units), lambda u, idx, d=diff: float(d[u]), resample_clips=False, n_boot=2000)
        diff_cell = "(reference)" if level == "none" else ci.format(3, signed=True)
        counts = "" if level == "none" else f"{int((diff > 0).sum())} / {int((diff < 0).sum())}"
        lines.append(f"| {level} | {values.mean():.3f} | {diff_cell} | {counts} | "
                     f"{level_spread(level, paths, peak_dbfs)} | {level_spread(level, paths, active_rms_dbfs)} |")
    lines += ["", "Active-speech level by class as synthesised (dBFS, 12 clips each): "
              + ", ".join(f"{c} {v:.1f}" for c, v in by_class.items())]
    write_benchmark("levels", lines)


if __name__ == "__main__":
    main()
