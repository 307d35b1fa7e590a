"""Speech pooling with length-bucketed batches against the official layout, at IEMOCAP-like clip lengths (issue 18).

1. Speed: LoRA training steps (tiny.en, r=32 on v_proj, batch 8, fp32, forward + backward + clipping + AdamW) over
   clips whose lengths follow an IEMOCAP-like distribution, for
   (a) the official layout: every clip padded to 30 s, the mean over all 1500 positions;
   (b) speech pooling: batches bucketed by length, each cut to its longest clip, padding keys masked;
   (c) (b) with the input capped at the 99th length percentile (`max_seconds=0`'s fit; longer clips are cut).
   The lengths are drawn from a log-normal with median 3.4 s and mean 4.5 s, clipped to 0.6-35 s: an assumed
   stand-in for IEMOCAP's four-class utterances (mean about 4.5 s, a long tail past 30 s), not their real list.
   The features are random log-mels of those lengths: the cost of a step does not depend on what the frames hold.
2. Accuracy: the demo book's runs at 30 s inputs, (a) and (b), the first speaker fold, over 3 training seeds, so
   the speed-up is read at equal UAR (or not).

    python benchmarks/bench_pooling.py [--clips 160] [--seeds 42,43,44] [--folds 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from helpers.book.reproducibility import write_benchmark
from helpers.data.rehearsal import iemocap_like_durations
from helpers.models.classifier import ModelSpec, build_classifier
from helpers.models.pooling import batch_to_speech, speech_positions
from helpers.training.batches import length_bucketed_batches, shuffled_batches
from helpers.training.runs import fit_max_seconds, run_cross_validation


def training_rate(durations: np.ndarray, *, pooling: str, max_seconds: int, batch_size: int = 8,
                  max_steps: int = 0) -> tuple[float, float]:
    """(clips/s, padding fraction) of LoRA training steps over clips of `durations` at `max_seconds` inputs: one
    epoch of bucketed batches for speech pooling; `max_steps` shuffled batches (each costs the same) for the mean."""
    torch.manual_seed(0)
    model = build_classifier(ModelSpec(max_seconds=max_seconds, pooling=pooling), seed=0).train()
    positions = torch.from_numpy(speech_positions(durations, max_seconds * 50))
    features = torch.randn(len(durations), 80, max_seconds * 100)
    labels = torch.arange(len(durations)) % 4
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(len(durations))
    batches = (length_bucketed_batches(idx, positions, batch_size, generator) if pooling == "speech"
               else shuffled_batches(idx, batch_size, generator))
    batches = batches[:max_steps + 1] if max_steps else batches

    def step(batch: torch.Tensor) -> int:
        if pooling == "speech":
            x = batch_to_speech(features[batch], positions[batch])
            logits = model(input_features=x, speech_positions=positions[batch]).logits
        else:
            x = features[batch]
            logits = model(input_features=x).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return len(batch) * x.shape[-1] // 2

    step(batches[0])  # warm-up, not timed
    start, clips, computed = time.perf_counter(), 0, 0
    for batch in batches[1:]:
        computed += step(batch)
        clips += len(batch)
    seconds = time.perf_counter() - start
    speech = int(sum(int(positions[b].sum()) for b in batches[1:]))
    return clips / seconds, 1 - speech / computed


def demo_uar(pooling: str, seeds: tuple[int, ...], folds: int) -> list[float]:
    """Test UAR of the demo profile's LoRA runs at 30 s inputs with `pooling`, one value per seed and fold."""
    out = []
    for seed in seeds:
        run = run_cross_validation("demo", max_seconds=30, pooling=pooling, seed=seed, max_folds=folds)
        out += run.folds["test_uar"].tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=160, help="IEMOCAP-like clips in the speed rows")
    parser.add_argument("--steps", type=int, default=4, help="timed steps of the fixed-length layout (a)")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--folds", type=int, default=1, help="demo folds per seed in the UAR comparison")
    parser.add_argument("--skip-uar", action="store_true")
    args = parser.parse_args()
    durations = iemocap_like_durations(args.clips)
    cap = fit_max_seconds(durations)
    rows = [("(a) official: 30 s inputs, mean over all positions", *training_rate(
                durations, pooling="mean", max_seconds=30, max_steps=args.steps)),
            ("(b) speech pooling, length-bucketed batches, 30 s inputs", *training_rate(
                durations, pooling="speech", max_seconds=30)),
            (f"(c) (b) with inputs capped at the 99th percentile ({cap} s)", *training_rate(
                durations, pooling="speech", max_seconds=cap))]
    base = rows[0][1]
    for name, rate, padding in rows:
        print(f"{name}: {rate:.2f} clips/s ({rate / base:.1f}x), {100 * padding:.0f}% padding", flush=True)
    cut = int((durations > cap).sum())
    lines = [f"tiny.en, LoRA r=32 on v_proj, batch 8, fp32, {torch.get_num_threads()} CPU threads; {args.clips} "
             f"clips of IEMOCAP-like lengths (log-normal, median {np.median(durations):.1f} s, mean "
             f"{durations.mean():.1f} s, longest {durations.max():.1f} s; {cut} longer than {cap} s); (a) timed "
             f"over {args.steps} steps after a warm-up step, (b) and (c) over one epoch of bucketed batches", "",
             "| LoRA training | clips/s | ratio to (a) | padding computed |", "|---|---|---|---|"]
    lines += [f"| {name} | {rate:.2f} | {rate / base:.1f}x | {100 * padding:.0f}% |" for name, rate, padding in rows]
    if not args.skip_uar:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        uars = {p: demo_uar(p, seeds, args.folds) for p in ("mean", "speech")}
        lines += ["", f"Demo corpus, the demo profile at 30 s inputs, first {args.folds} speaker fold(s), seeds "
                  f"{args.seeds}: test UAR per run, mean and range over the runs", "",
                  "| classifier | test UAR per run | mean | range |", "|---|---|---|---|"]
        for name, pooling in (("(a) official mean over all positions", "mean"),
                              ("(b) speech pooling, length-bucketed", "speech")):
            values = uars[pooling]
            lines.append(f"| {name} | {', '.join(f'{v:.3f}' for v in values)} | {np.mean(values):.3f} "
                         f"| {min(values):.3f}-{max(values):.3f} |")
            print(f"{name}: UAR {values}", flush=True)
        gap = np.mean(uars["speech"]) - np.mean(uars["mean"])
        spread = max(np.ptp(uars["speech"]), np.ptp(uars["mean"]))
        paired = ", ".join(f"{b - a:+.3f}" for a, b in zip(uars["mean"], uars["speech"]))
        lines += ["", f"(b) - (a) per run (same seed and fold): {paired}; mean {gap:+.3f}. Issue 18's criterion, "
                  f"|mean difference| within the larger seed range ({spread:.3f}): "
                  f"{'met' if abs(gap) <= spread else 'not met'}; {len(uars['mean'])} runs of "
                  "each cannot show the two equal, only whether a gap larger than the seed spread appears."]
    write_benchmark("pooling", lines)


if __name__ == "__main__":
    main()
