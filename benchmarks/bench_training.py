"""Training throughput on the demo corpus, measured in one run:

1. LoRA training clips/s (forward + backward + AdamW on tiny.en, inputs fitted to the clips);
2. frozen mode: head trained on encoder outputs cached once vs the frozen encoder run again every epoch (ratio).

    python benchmarks/bench_training.py [--clips 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from helpers.config import make_config
from helpers.models import EMOTIONS, ModelSpec, build_classifier, load_whisper_classifier, whisper_feature_extractor
from helpers.reproducibility import write_benchmark
from helpers.training import compute_features, fit_max_seconds, head_logits, load_corpus, pooled_encoder_outputs


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20, help="head epochs (the paper trains 20)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = make_config("demo")
    table = load_corpus(config).iloc[: args.clips]
    max_seconds = fit_max_seconds(table["duration"])
    labels = torch.tensor([EMOTIONS.index(label) for label in table["label"]])
    model = load_whisper_classifier("tiny.en", max_seconds=max_seconds, seed=0)
    features = compute_features(table, whisper_feature_extractor(model.config, max_seconds))
    cpu = torch.device("cpu")

    lora = build_classifier(ModelSpec(max_seconds=max_seconds), seed=0).train()
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=5e-4)
    start = time.perf_counter()
    for i in range(0, len(labels), args.batch_size):
        loss = lora(input_features=features[i:i + args.batch_size], labels=labels[i:i + args.batch_size]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lora_seconds = time.perf_counter() - start

    start = time.perf_counter()
    cached = pooled_encoder_outputs(model.encoder, features, device=cpu)
    cache_seconds = time.perf_counter() - start
    cached_total = cache_seconds + _head_epochs(model, lambda: cached, labels, args.epochs, args.batch_size)
    every_epoch_total = _head_epochs(model, lambda: pooled_encoder_outputs(model.encoder, features, device=cpu), labels,
                                     args.epochs, args.batch_size)
    n = len(labels)
    table = "\n".join([
        f"tiny.en, {n} demo clips, max_seconds={max_seconds}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} CPU threads", "",
        "| measure | value |", "|---|---|",
        f"| LoRA (r=32, v_proj) training clips/s | {n / lora_seconds:.1f} |",
        f"| frozen, encoder every epoch: clips/s over {args.epochs} epochs | {n * args.epochs / every_epoch_total:.1f} |",
        f"| frozen, encoder cached once: clips/s over {args.epochs} epochs | {n * args.epochs / cached_total:.1f} |",
        f"| frozen speed-up from caching (ratio) | {every_epoch_total / cached_total:.1f}x |"])
    print(table)
    write_benchmark("training", table)


if __name__ == "__main__":
    main()
