"""Our LoRA training vs the official recipe on the same clips, model and epochs, measured in one run.

Official recipe: Hugging Face `Trainer`, every clip padded to 30 s, evaluation every epoch (as `train_lora.py`).
Ours: inputs fitted to the longest clip (`max_seconds`), features computed once, a plain AdamW loop with the same
learning-rate schedule, evaluation every epoch. Prints clips/s of each, the ratio, and the validation UAR each
reaches (a speed-up must not cost accuracy).

    python benchmarks/bench_official_recipe.py [--train 48] [--epochs 3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import torch

from helpers.config import make_config
from helpers.metrics import uar
from helpers.models import EMOTIONS, ModelSpec, build_classifier, whisper_feature_extractor
from helpers.protocols import make_folds
from helpers.reproducibility import write_benchmark
from helpers.training import compute_features, fit_max_seconds, load_corpus


class _Clips(torch.utils.data.Dataset):
    def __init__(self, features, labels):
        self.features, self.labels = features, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_features": self.features[i], "labels": int(self.labels[i])}


def _official(train_x, train_y, val_x, val_y, *, epochs, lr, batch, seed) -> tuple[float, float]:
    from transformers import Trainer, TrainingArguments

    model = build_classifier(ModelSpec(max_seconds=30), seed=seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                                 learning_rate=lr, num_train_epochs=epochs, lr_scheduler_type="linear", warmup_steps=0,
                                 eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to=[],
                                 use_cpu=not torch.cuda.is_available(), seed=seed, label_names=["labels"],
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=_Clips(train_x, train_y),
                          eval_dataset=_Clips(val_x, val_y),
                          compute_metrics=lambda p: {"uar": uar(p.label_ids, p.predictions.argmax(-1), n_classes=4)})
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        final = trainer.evaluate()["eval_uar"]
    return len(train_y) * epochs / seconds, final


def _ours(train_x, train_y, val_x, val_y, max_seconds, *, epochs, lr, batch, seed) -> tuple[float, float]:
    model = build_classifier(ModelSpec(max_seconds=max_seconds), seed=seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = math.ceil(len(train_y) / batch) * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = model(input_features=train_x[idx], labels=train_y[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():  # evaluation every epoch, as the official recipe
            pred = torch.cat([model(input_features=val_x[i:i + 16]).logits.argmax(-1) for i in range(0, len(val_y), 16)])
    seconds = time.perf_counter() - start
    return len(train_y) * epochs / seconds, uar(val_y.numpy(), pred.numpy(), n_classes=4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=48, help="training clips")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    config = make_config("demo")
    table = load_corpus(config)
    fold = make_folds(table, "speaker")[0]
    rng = np.random.default_rng(0)
    train_ids = set(rng.choice(sorted(fold.train), size=args.train, replace=False))
    train = table[table["utterance"].isin(train_ids)]
    val = table[table["utterance"].isin(set(fold.validation))]
    max_seconds = config.max_seconds or fit_max_seconds(table["duration"])  # the demo profile's input length
    labels = {name: torch.tensor([EMOTIONS.index(x) for x in part["label"]]) for name, part in (("train", train), ("val", val))}
    results = {}
    for name, seconds in (("official (30 s, HF Trainer)", 30), (f"ours ({max_seconds} s inputs)", max_seconds)):
        probe = build_classifier(ModelSpec(max_seconds=seconds, lora=None))
        extractor = whisper_feature_extractor(probe.config, seconds)
        tx, vx = compute_features(train, extractor), compute_features(val, extractor)
        if seconds == 30:
            results[name] = _official(tx, labels["train"], vx, labels["val"], epochs=args.epochs, lr=args.lr, batch=8,
                                      seed=0)
        else:
            results[name] = _ours(tx, labels["train"], vx, labels["val"], seconds, epochs=args.epochs, lr=args.lr,
                                  batch=8, seed=0)
    (base_rate, base_uar), (our_rate, our_uar) = results.values()
    lines = [f"tiny.en, LoRA r=32 on v_proj, {len(train)} training clips, {len(val)} validation clips, "
             f"{args.epochs} epochs, lr {args.lr}, batch 8, {torch.get_num_threads()} CPU threads", "",
             "| recipe | training clips/s | validation UAR |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.2f} | {score:.3f} |" for name, (rate, score) in results.items()]
    lines += [f"| ratio ours / official | {our_rate / base_rate:.1f}x | {our_uar - base_uar:+.3f} |"]
    table_md = "\n".join(lines)
    print(table_md)
    write_benchmark("official_recipe", table_md)


if __name__ == "__main__":
    main()
