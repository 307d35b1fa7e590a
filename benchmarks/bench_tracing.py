"""Analyses: one shared tracing pass vs a separate pass per analysis, time and peak memory, measured in one run.

The book traces each model once (`helpers.tracing.trace_model` keeps residual-stream statistics, pooled states and
LoRA matrices with their gradients) and every analysis reads that trace. The baseline traces once per analysis,
keeping only what that analysis reads: layer contributions (residual statistics), logit lens (pooled states), SVD
and CKA (LoRA matrices and their gradients, one backward pass each); a stricter baseline lets SVD and CKA share.
Each variant runs in a fresh process, so its peak resident memory is its own.

    python benchmarks/bench_tracing.py [--clips 48] [--rank 32]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

ANALYSES = {  # analysis: (parts it reads, whether it needs gradients)
    "layer contributions": (("residual",), False),
    "logit lens": (("pooled",), False),
    "SVD": (("lora",), True),
    "CKA": (("lora",), True),
}
# a stricter baseline: one pass per distinct need (SVD and CKA read the same LoRA matrices and gradients)
DISTINCT = [(("residual",), False), (("pooled",), False), (("lora",), True)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_variant(variant: str, clips: int, rank: int) -> dict:
    """Trace the demo analysis set with a LoRA model; return seconds, peak RSS and kept bytes."""
    from helpers.analysis.sets import select_analysis_set
    from helpers.analysis.tracing import TRACE_PARTS, trace_model
    from helpers.config import make_config
    from helpers.data.features import compute_features, whisper_feature_extractor
    from helpers.data.protocols import make_folds
    from helpers.models.classifier import ModelSpec, build_classifier
    from helpers.models.lora import LoraSettings, redraw_lora
    from helpers.models.pooling import speech_positions
    from helpers.training.runs import corpus_classes, load_corpus

    config = make_config("demo")
    table = load_corpus(config)
    fold = make_folds(table, "speaker")[0]
    heldout = sorted(set(fold.validation) | set(fold.test))
    classes = corpus_classes(table)
    subset = select_analysis_set(table, heldout, per_class=max(1, clips // len(classes)))  # class-balanced
    model = build_classifier(ModelSpec(max_seconds=config.max_seconds, lora=LoraSettings(rank=rank, alpha=2 * rank)),
                             seed=0)
    redraw_lora(model, init="official", seed=1)  # non-zero B, as a trained model, so gradients flow through A
    features = compute_features(subset, whisper_feature_extractor(model.config, config.max_seconds))
    labels = torch.tensor([classes.index(x) for x in subset["label"]])
    n_speech = speech_positions(subset["duration"], features.shape[-1] // 2)
    before = _peak_rss_mb()
    passes = {"shared": [(TRACE_PARTS, True)], "per-analysis": list(ANALYSES.values()), "per-need": DISTINCT}[variant]
    start, kept = time.perf_counter(), 0
    for parts, gradients in passes:
        trace = trace_model(model, features, labels, n_speech, parts=parts, with_gradients=gradients)
        kept = max(kept, sum(v.nbytes for v in trace.arrays.values()))
        del trace  # an analysis reads its trace, then lets it go
    return dict(variant=variant, passes=len(passes), seconds=time.perf_counter() - start, clips=len(subset),
                rss_before_mb=before, peak_rss_mb=_peak_rss_mb(), kept_mb=kept / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--variant", choices=("shared", "per-analysis", "per-need"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.clips, args.rank)))
        return
    from helpers.book.reproducibility import write_benchmark

    results = {}
    for variant in ("per-analysis", "per-need", "shared"):
        child = subprocess.run([sys.executable, __file__, "--variant", variant, "--clips", str(args.clips),
                                "--rank", str(args.rank)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
        print(results[variant], flush=True)
    shared = results["shared"]
    lines = [f"tiny.en + LoRA r={args.rank} on v_proj, {shared['clips']} demo clips of 4 s, batch 8, "
             f"{torch.get_num_threads()} CPU threads; analyses: {', '.join(ANALYSES)}", "",
             "| tracing | passes | seconds | peak RSS MB (before tracing) | largest trace kept MB |",
             "|---|---|---|---|---|"]
    names = {"per-analysis": "one pass per analysis (baseline)",
             "per-need": "one pass per distinct need (SVD and CKA share one)", "shared": "one shared pass (the book)"}
    for variant, name in names.items():
        r = results[variant]
        lines.append(f"| {name} | {r['passes']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} "
                     f"({r['rss_before_mb']:.0f}) | {r['kept_mb']:.1f} |")
    for variant in ("per-analysis", "per-need"):
        r = results[variant]
        lines.append(f"| ratio {variant} / shared | | {r['seconds'] / shared['seconds']:.1f}x | "
                     f"{r['peak_rss_mb'] / shared['peak_rss_mb']:.2f}x | |")
    write_benchmark("tracing", lines)


if __name__ == "__main__":
    main()
