"""Training speed levers on the demo corpus, each measured against a baseline in the same run:

1. LoRA training steps (forward + backward + AdamW, tiny.en, r=32 on v_proj) at 30 s inputs (what stock Whisper
   takes) and at inputs fitted to the corpus, with each attention kernel and with `torch.compile`; plus, as a
   ceiling for length-bucketed batches, a step at the corpus's median clip length (the official classifier takes
   one input length; `pooling=speech` buckets by length, measured by `bench_pooling.py`);
2. frozen mode: the head trained on encoder outputs cached once vs the frozen encoder run again every epoch.

    python benchmarks/bench_training.py [--clips 64] [--epochs 20] [--steps 4]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from helpers.book.reproducibility import write_benchmark
from helpers.config import make_config
from helpers.data.features import compute_features, whisper_feature_extractor
from helpers.models.classifier import ModelSpec, build_classifier, load_whisper_classifier
from helpers.training.frozen import head_logits, pooled_encoder_outputs
from helpers.training.runs import corpus_classes, fit_max_seconds, load_corpus


def _head_epochs(model, hidden_for_epoch, labels, epochs: int, batch_size: int) -> float:
    """Train projector+classifier for `epochs`; `hidden_for_epoch()` supplies the encoder outputs each epoch."""
    head = torch.nn.ModuleList([model.projector, model.classifier])
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        hidden = hidden_for_epoch()
        for i in range(0, len(labels), batch_size):
            loss = torch.nn.functional.cross_entropy(
                head_logits(model.projector, model.classifier, hidden[i:i + batch_size]), labels[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def lora_clips_per_second(table, labels, seconds: int, *, attention: str = "sdpa", compile: bool = False,
                          batch_size: int = 8, steps: int = 4) -> tuple[float, float]:
    """Clips/s of LoRA training steps at `seconds` of input (after warm-up steps), and the warm-up seconds."""
    model = build_classifier(ModelSpec(max_seconds=seconds), seed=0, attention=attention).train()
    features = compute_features(table, whisper_feature_extractor(model.config, seconds))
    forward = torch.compile(model) if compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    warmup = 2
    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            warm_seconds, start = time.perf_counter() - start, time.perf_counter()
        idx = torch.arange(step * batch_size, (step + 1) * batch_size) % len(labels)
        loss = torch.nn.functional.cross_entropy(forward(input_features=features[idx]).logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # as helpers.training does (max_grad_norm=1)
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start), warm_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="head epochs (the paper trains 20)")
    parser.add_argument("--steps", type=int, default=4, help="timed LoRA steps per setting (after 2 warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = make_config("demo")
    corpus = load_corpus(config)
    table = corpus.iloc[: args.clips]
    fitted = config.max_seconds or fit_max_seconds(corpus["duration"])
    median = max(1, math.ceil(float(np.median(corpus["duration"]))))
    labels = torch.tensor([corpus_classes(corpus).index(label) for label in table["label"]])
    kw = dict(batch_size=args.batch_size, steps=args.steps)

    settings = [("30 s inputs, sdpa (baseline)", 30, "sdpa", False),
                ("30 s inputs, eager attention", 30, "eager", False),
                (f"{fitted} s inputs (the demo profile), eager attention", fitted, "eager", False),
                (f"{fitted} s inputs, sdpa (the default)", fitted, "sdpa", False),
                (f"{fitted} s inputs, sdpa, torch.compile", fitted, "sdpa", True),
                (f"ceiling of length bucketing: {median} s, the median clip", median, "sdpa", False)]
    rows = []
    for name, seconds, attention, compiled in settings:
        rate, warm = lora_clips_per_second(table, labels, seconds, attention=attention, compile=compiled, **kw)
        rows.append((name, rate, warm))
        print(f"{name}: {rate:.2f} clips/s", flush=True)
    base = rows[0][1]

    model = load_whisper_classifier("tiny.en", max_seconds=fitted, seed=0)
    features = compute_features(table, whisper_feature_extractor(model.config, fitted))
    cpu = torch.device("cpu")
    start = time.perf_counter()
    cached = pooled_encoder_outputs(model.encoder, features, device=cpu)
    cache_seconds = time.perf_counter() - start
    cached_total = cache_seconds + _head_epochs(model, lambda: cached, labels, args.epochs, args.batch_size)
    every_epoch = lambda: pooled_encoder_outputs(model.encoder, features, device=cpu)  # noqa: E731
    every_epoch_total = _head_epochs(model, every_epoch, labels, args.epochs, args.batch_size)
    n = len(labels)
    lines = [f"tiny.en, demo corpus ({n} clips), LoRA r=32 on v_proj, batch {args.batch_size}, fp32, "
             f"{torch.get_num_threads()} CPU threads; {args.steps} timed steps per row after 2 warm-up steps", "",
             "| LoRA training | clips/s | ratio to baseline | warm-up s |", "|---|---|---|---|"]
    lines += [f"| {name} | {rate:.2f} | {rate / base:.1f}x | {warm:.1f} |" for name, rate, warm in rows]
    lines += ["", "| frozen mode, head only | value |", "|---|---|",
              f"| encoder run every epoch: clips/s over {args.epochs} epochs "
              f"| {n * args.epochs / every_epoch_total:.1f} |",
              f"| encoder outputs cached once: clips/s over {args.epochs} epochs "
              f"| {n * args.epochs / cached_total:.1f} |",
              f"| speed-up from caching (ratio) | {every_epoch_total / cached_total:.1f}x |"]
    write_benchmark("training", lines)


if __name__ == "__main__":
    main()
