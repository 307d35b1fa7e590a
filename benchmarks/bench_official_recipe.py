"""Our LoRA training vs the official recipe on the same clips, model and epochs, measured in one run.

Official recipe: Hugging Face `Trainer`, every clip padded to 30 s, evaluation every epoch (as `train_lora.py`).
Ours: `helpers.training`'s own fold trainer (inputs of the demo profile's length, features computed once, AdamW
with the same linear schedule, evaluation and a checkpoint every epoch), over several seeds. Prints clips/s of
each, the ratio, and the validation UAR each reaches (a speed-up must not cost accuracy). Both run on the same
device. Our wall time includes what the Trainer's `train()` does not (building the model, a checkpoint every
epoch, a final test pass, saving the adapter), so the ratio is, if anything, an underestimate. One official seed
(the default) makes the UAR comparison noisy: `--official-seeds 3` (about 15 more minutes) gives a fairer one.

    python benchmarks/bench_official_recipe.py [--train 96] [--epochs 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from helpers.book.reproducibility import write_benchmark
from helpers.config import make_config
from helpers.data.features import compute_features, whisper_feature_extractor
from helpers.data.protocols import Fold, make_folds
from helpers.models.classifier import ModelSpec, build_classifier
from helpers.training.device import pick_device
from helpers.training.loop import train_fold
from helpers.training.metrics import uar
from helpers.training.runs import corpus_classes, fit_max_seconds, load_corpus


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
                          compute_metrics=lambda p: {"uar": uar(p.label_ids, p.predictions.argmax(-1))})
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        final = trainer.evaluate()["eval_uar"]
    return len(train_y) * epochs / seconds, final


def _ours(table, train, val, max_seconds, *, epochs, lr, batch, seed, workdir) -> tuple[float, float]:
    """Our training code itself (`helpers.training`) on one fold made of these clips; wall time includes evaluation."""
    config = make_config("demo", epochs=epochs, lr=lr, batch_size=batch, seed=seed, max_seconds=max_seconds)
    fold = Fold(name=f"bench-seed{seed}", protocol="speaker", test_groups=(), validation_speakers=(),
                train=tuple(train["utterance"]), validation=tuple(val["utterance"]), test=tuple(val["utterance"]))
    classes = corpus_classes(table)
    spec = ModelSpec(labels=classes, max_seconds=max_seconds, lora=config.lora)
    probe = build_classifier(ModelSpec(max_seconds=max_seconds, lora=None))
    inputs = compute_features(table, whisper_feature_extractor(probe.config, max_seconds))
    labels = torch.tensor([classes.index(x) for x in table["label"]])
    index_of = {u: i for i, u in enumerate(table["utterance"])}
    fold_dir = Path(workdir) / fold.name
    fold_dir.mkdir()
    start = time.perf_counter()
    result = train_fold(config, fold, 0, fold_dir, spec, index_of, labels, inputs, None, pick_device("auto"))
    seconds = time.perf_counter() - start
    return len(train) * epochs / seconds, result["history"][-1]["val_uar"]  # the last epoch, as the Trainer's


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=96, help="training clips")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4, help="both recipes (the demo profile's rate)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of our recipe")
    parser.add_argument("--official-seeds", type=int, default=1,
                        help="seeds of the official recipe (about 5 min each)")
    args = parser.parse_args()
    config = make_config("demo")
    table = load_corpus(config)
    fold = make_folds(table, "speaker")[0]
    rng = np.random.default_rng(0)
    train_ids = set(rng.choice(sorted(fold.train), size=args.train, replace=False))
    train = table[table["utterance"].isin(train_ids)]
    # evaluation clips: the fold's validation and test speakers (nothing is selected on them here: both recipes
    # report their last epoch), 48 clips instead of one speaker's 24 to make the UAR less noisy
    val = table[table["utterance"].isin(set(fold.validation) | set(fold.test))]
    max_seconds = config.max_seconds or fit_max_seconds(table["duration"])  # the demo profile's input length
    classes = corpus_classes(table)
    val_y = torch.tensor([classes.index(x) for x in val["label"]])
    train_y = torch.tensor([classes.index(x) for x in train["label"]])
    probe = build_classifier(ModelSpec(max_seconds=30, lora=None))
    extractor = whisper_feature_extractor(probe.config, 30)
    official = []
    for seed in range(args.official_seeds):
        official.append(_official(compute_features(train, extractor), train_y, compute_features(val, extractor),
                                  val_y, epochs=args.epochs, lr=args.lr, batch=8, seed=seed))
        print(f"official, seed {seed}: {official[-1][0]:.2f} clips/s, UAR {official[-1][1]:.3f}", flush=True)
    base_rate = float(np.mean([r for r, _ in official]))
    base_uars = [u for _, u in official]
    base_uar = float(np.mean(base_uars))
    ours = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.seeds):
            ours.append(_ours(table, train, val, max_seconds, epochs=args.epochs, lr=args.lr, batch=8, seed=seed,
                              workdir=workdir))
            print(f"ours, seed {seed}: {ours[-1][0]:.2f} clips/s, UAR {ours[-1][1]:.3f}", flush=True)
    our_rate = float(np.mean([r for r, _ in ours]))
    our_uars = [u for _, u in ours]
    lines = [f"tiny.en, LoRA r=32 on v_proj, {len(train)} training clips (demo fold 1), {len(val)} evaluation clips "
             f"(2 held-out speakers), {args.epochs} epochs, lr {args.lr}, batch 8, fp32, {torch.get_num_threads()} "
             "CPU threads; UAR of the last epoch; clips/s over the whole run, evaluation included", "",
             "| recipe | training clips/s | validation UAR |", "|---|---|---|"]
    lines += [f"| official (HF Trainer, 30 s inputs, seed {seed}) | {rate:.2f} | {score:.3f} |"
              for seed, (rate, score) in enumerate(official)]
    if len(official) > 1:
        lines += [f"| official, mean of {len(official)} seeds | {base_rate:.2f} | {base_uar:.3f} "
                  f"(range {min(base_uars):.3f}-{max(base_uars):.3f}) |"]
    lines += [f"| ours ({max_seconds} s inputs, seed {seed}) | {rate:.2f} | {score:.3f} |"
              for seed, (rate, score) in enumerate(ours)]
    lines += [f"| ours, mean of {len(ours)} seeds | {our_rate:.2f} | {np.mean(our_uars):.3f} "
              f"(range {min(our_uars):.3f}-{max(our_uars):.3f}) |",
              f"| ratio ours / official (UAR: difference of the means) | {our_rate / base_rate:.1f}x | "
              f"{np.mean(our_uars) - base_uar:+.3f} |"]
    write_benchmark("official_recipe", lines)


if __name__ == "__main__":
    main()
