"""One fold's training loop, read top to bottom: build the trainable model, resume, train epochs with a whole
checkpoint after each, choose the epoch on validation UAR (ties broken by validation loss), test it, save the model.

An interrupted fold resumes from its last complete epoch checkpoint with the same optimizer, scheduler, scaler and
RNG states, so its final metrics equal those of an uninterrupted run. Every checkpoint file is checked after it is
written and when it is read back; a damaged checkpoint is set aside (named in a warning) and the fold resumes from
the one before it or starts again. The best weights so far live in memory and are written from there, so a damaged
`best.safetensors` is never copied forward.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.protocols import Fold
from ..io import CorruptCacheError, atomic_tensors, check_tensors, load_tensors_checked, load_torch_checked, set_aside
from ..models.classifier import ModelSpec, build_classifier, save_classifier
from ..models.pooling import batch_to_speech
from ..progress import progress
from .batches import length_bucketed_batches, shuffled_batches
from .device import autocast, resolve_precision
from .frozen import head_logits
from .metrics import classification_scores

__all__ = ["METRICS", "improves", "train_fold", "speed_settings"]

METRICS = ("uar", "war", "macro_f1")
_CHECKPOINT_FILES = ("state.pt", "trainable.safetensors", "best.safetensors")
_STATE_KEYS = ("optimizer", "scheduler", "scaler", "generator", "torch_rng", "epoch", "seconds", "history", "best")


def improves(score: float, loss: float, best: dict | None, *, metric: str, break_ties_by_loss: bool) -> bool:
    """Whether an epoch with validation `metric` = `score` and cross-entropy `loss` replaces the best so far.

    A higher score wins. On a tie (frequent when a small validation speaker is classified perfectly) the lower
    validation loss wins with `break_ties_by_loss`, else the earlier epoch stays, as the HF Trainer of the official
    code keeps it (used where that code is replicated).
    """
    if best is None or score > best[metric]:
        return True
    return break_ties_by_loss and score == best[metric] and loss < best.get("loss", float("inf"))


class _FoldTrainer:
    """The trainable module, its batches and its predictions, which differ by mode."""

    def __init__(self, config, fold_index: int, spec: ModelSpec, device: torch.device,
                 inputs: torch.Tensor | None, frozen_encoder_out: torch.Tensor | None,
                 cache_dir: str | Path | None = None, speech_positions: torch.Tensor | None = None):
        self.config, self.device, self.inputs = config, device, inputs
        # speech pooling through the encoder: batches cut to their longest clip, so they are bucketed by length
        through_encoder = spec.pooling == "speech" and frozen_encoder_out is None
        if through_encoder and speech_positions is None:
            raise ValueError("pooling='speech' needs each clip's speech_positions")
        self.positions = speech_positions if through_encoder else None
        self.model = build_classifier(spec, seed=config.seed + fold_index, allow_download=config.allow_download,
                                      attention=config.attention, cache_dir=cache_dir)
        if config.mode == "frozen":
            self.model.requires_grad_(False)
            self.head = torch.nn.ModuleDict(dict(projector=self.model.projector, classifier=self.model.classifier))
            self.head.requires_grad_(True)
            self.trainable, self.hidden = self.head, frozen_encoder_out
        else:
            self.trainable, self.hidden = self.model, None
        self.trainable.to(device)
        self.params = [p for p in self.trainable.parameters() if p.requires_grad]
        # compiled forward shares the module's parameters: checkpoints and saving still use self.model
        self.forward = torch.compile(self.model) if config.compile and self.hidden is None else self.model

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        if self.hidden is not None:
            return head_logits(self.head["projector"], self.head["classifier"],
                               self.hidden[idx].to(self.device, non_blocking=True))
        batch, extra = self.inputs[idx], {}
        if self.positions is not None:
            batch = batch_to_speech(batch, self.positions[idx])
            extra["speech_positions"] = self.positions[idx].to(self.device)
        if self.device.type == "cuda":  # a page-locked batch copies to the GPU asynchronously
            batch = batch.pin_memory()
        return self.forward(input_features=batch.to(self.device, non_blocking=True), **extra).logits

    def batches(self, idx: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
        """`idx` cut into batches: length-bucketed where batches cost their longest clip, else shuffled with
        `generator` (kept in order without one)."""
        if self.positions is not None:
            return length_bucketed_batches(idx, self.positions, batch_size, generator)
        return shuffled_batches(idx, batch_size, generator) if generator is not None else list(idx.split(batch_size))

    @torch.no_grad()
    def predict_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Float logits (len(idx), C) on the CPU, in evaluation mode."""
        self.trainable.eval()
        batches, out = self.batches(idx, self.config.batch_size * 2, None), []
        for batch in batches:
            with autocast(self.device, self.config.precision):
                out.append(self.logits(batch).float().cpu())
        logits = torch.cat(out)
        return logits[_rows_of(torch.cat(batches), idx)]  # back in the order of idx

    def predict(self, idx: torch.Tensor) -> np.ndarray:
        return self.predict_logits(idx).argmax(-1).numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.trainable.named_parameters() if p.requires_grad}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.trainable.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def _rows_of(idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Where each of `values` sits in `idx` (distinct row numbers that hold all of them)."""
    sorter = idx.argsort()
    return sorter[torch.searchsorted(idx[sorter], values)]


@dataclass
class _Optimisation:
    """Everything that evolves while training, and is saved in each epoch checkpoint."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    epoch: int = 0
    seconds: float = 0.0


def _optimisation(config, params, steps_per_epoch: int, device: torch.device, seed: int) -> _Optimisation:
    """AdamW with linear decay to zero and no warm-up (the official Trainer's), loss scaling for fp16."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total))
    # fp16 autocast needs loss scaling against gradient underflow; bf16 and fp32 do not (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(device, config.precision) == torch.float16)
    torch.manual_seed(seed)  # LoRA dropout draws from the global RNG
    return _Optimisation(optimizer, scheduler, scaler, torch.Generator().manual_seed(seed))


def _complete_checkpoint(fold_dir: Path) -> Path | None:
    """The fold's last complete epoch checkpoint (`checkpoint/`, else a set-aside `checkpoint.old/`), or None."""
    for name in ("checkpoint", "checkpoint.old"):
        folder = fold_dir / name
        if all((folder / f).is_file() for f in _CHECKPOINT_FILES):
            return folder
    return None


def _read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The state record, trainable weights and best weights of a checkpoint folder, each read back whole
    (`CorruptCacheError` naming the damaged file otherwise); nothing is applied yet."""
    state = load_torch_checked(folder / "state.pt")
    missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CorruptCacheError(folder / "state.pt", f"the checkpoint record lacks {missing}")
    return (state, load_tensors_checked(folder / "trainable.safetensors"),
            load_tensors_checked(folder / "best.safetensors"))


def _resume(fold_dir: Path, trainer: _FoldTrainer, opt: _Optimisation,
            device: torch.device) -> dict[str, torch.Tensor] | None:
    """Restore the last complete checkpoint that reads back whole, if any, into `trainer` and `opt` (RNG states
    included) and return its best weights so far (None: nothing to resume, the fold starts from epoch 0).

    A damaged checkpoint is set aside as `checkpoint.corrupt-<time>` with a warning naming the file, and the one
    before it (a set-aside `checkpoint.old`) is tried, else the fold starts again: both give the metrics of an
    uninterrupted run.
    """
    while (ckpt := _complete_checkpoint(fold_dir)) is not None:
        try:
            state, weights, best = _read_checkpoint(ckpt)
            break
        except CorruptCacheError as err:
            set_aside(ckpt, reason=f"{err.path.name}: {err.reason}; the fold resumes from the checkpoint before it, "
                                   "or starts again")
    else:
        return None
    trainer.load_state(weights)
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    opt.generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng"):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    opt.history, opt.best = json.loads(state["history"]), json.loads(state["best"])
    opt.epoch, opt.seconds = int(state["epoch"]), float(state["seconds"])
    if ckpt.name != "checkpoint":  # killed between the two renames of a swap: the set-aside one is complete
        shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
        os.replace(ckpt, fold_dir / "checkpoint")
    return best


def _train_epoch(trainer: _FoldTrainer, opt: _Optimisation, train_idx: torch.Tensor, labels: torch.Tensor,
                 fold_name: str) -> float:
    """One pass over the training clips in a seeded random order; returns the mean loss."""
    config, device = trainer.config, trainer.device
    trainer.trainable.train()
    losses = []
    for step, batch in enumerate(trainer.batches(train_idx, config.batch_size, opt.generator)):
        try:
            with autocast(device, config.precision):
                logits = trainer.logits(batch)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"fold {fold_name}, epoch {opt.epoch + 1}, step {step + 1}: the loss is {loss.item()}. Lower lr "
                    f"(now {config.lr}) or use precision='fp32'.")
            opt.optimizer.zero_grad(set_to_none=True)
            opt.scaler.scale(loss).backward()
            if config.max_grad_norm:
                opt.scaler.unscale_(opt.optimizer)  # clip the true gradients, not the loss-scaled ones
                torch.nn.utils.clip_grad_norm_(trainer.params, config.max_grad_norm)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.scheduler.step()
        except torch.cuda.OutOfMemoryError as err:
            raise RuntimeError(f"fold {fold_name}: out of GPU memory at batch_size={config.batch_size}. Lower "
                               "batch_size or max_seconds, or use precision='bf16'.") from err
        losses.append(loss.item())
    return float(np.mean(losses))


def _save_checkpoint(fold_dir: Path, trainer: _FoldTrainer, opt: _Optimisation,
                     best: dict[str, torch.Tensor]) -> None:
    """Write the epoch's checkpoint whole into a new folder, check every file reads back, then swap it in: weights,
    optimizer, RNG and the best-so-far weights (`best`, kept in memory) always belong to the same epoch, there is
    never a moment without a complete one, and a file damaged on its way to disk stops the fold before the swap."""
    ckpt, new, old = fold_dir / "checkpoint", fold_dir / "checkpoint.new", fold_dir / "checkpoint.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    atomic_tensors(new / "best.safetensors", best)
    atomic_tensors(new / "trainable.safetensors", trainer.state())
    device = trainer.device
    torch.save(dict(optimizer=opt.optimizer.state_dict(), scheduler=opt.scheduler.state_dict(),
                    scaler=opt.scaler.state_dict(), generator=opt.generator.get_state(),
                    torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                    epoch=opt.epoch, seconds=opt.seconds, history=json.dumps(opt.history), best=json.dumps(opt.best)),
               new / "state.pt")
    check_tensors(new / "best.safetensors")
    check_tensors(new / "trainable.safetensors")
    load_torch_checked(new / "state.pt")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():  # set aside, not deleted, until the new one is in place
        os.replace(ckpt, old)
    os.replace(new, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def train_fold(config, fold: Fold, fold_index: int, fold_dir: Path, spec: ModelSpec, index_of: dict[str, int],
               labels: torch.Tensor, inputs: torch.Tensor | None, frozen_out: torch.Tensor | None,
               device: torch.device, *, cache_dir: str | Path | None = None,
               speech_positions: torch.Tensor | None = None) -> dict:
    """Train one fold in `fold_dir` (resuming its checkpoint), pick the epoch on validation `select_by`, test it.

    `inputs` are the log-mel features of every clip in the corpus, rows indexed by `index_of[utterance]`;
    `frozen_out` their pooled frozen-encoder outputs in frozen mode (None for LoRA); `labels` index `spec.labels`,
    the run's classes (their number sizes the head and the confusion matrices); `speech_positions` (N,) each
    clip's speech positions, needed where `spec.pooling` is "speech".
    """
    n_classes = len(spec.labels)
    trainer = _FoldTrainer(config, fold_index, spec, device, inputs, frozen_out, cache_dir, speech_positions)
    train_idx, val_idx, test_idx = (torch.tensor([index_of[u] for u in ids])
                                    for ids in (fold.train, fold.validation, fold.test))
    opt = _optimisation(config, trainer.params, math.ceil(len(train_idx) / config.batch_size), device,
                        seed=config.seed + fold_index)
    best_weights = _resume(fold_dir, trainer, opt, device)  # the best weights so far, in memory

    for epoch in progress(range(opt.epoch, config.epochs), desc=f"{fold.name} epochs", leave=False,
                          initial=opt.epoch, total=config.epochs):
        start = time.perf_counter()
        train_loss = _train_epoch(trainer, opt, train_idx, labels, fold.name)
        opt.seconds += time.perf_counter() - start
        val_logits = trainer.predict_logits(val_idx)
        val_loss = float(torch.nn.functional.cross_entropy(val_logits, labels[val_idx]))
        val = classification_scores(labels[val_idx].numpy(), val_logits.argmax(-1).numpy(), n_classes=n_classes)
        opt.history.append(dict(epoch=epoch + 1, train_loss=train_loss, val_loss=val_loss,
                                **{f"val_{m}": val[m] for m in METRICS}))
        metric = config.select_by  # uar (ours) or war (accuracy, what the official Trainer picked by)
        improved = improves(val[metric], val_loss, opt.best, metric=metric,
                            break_ties_by_loss=not fold.selection_on_test)
        if improved:
            opt.best = dict(epoch=epoch + 1, loss=val_loss, **{metric: val[metric]})
            best_weights = trainer.state()
        opt.epoch = epoch + 1
        _save_checkpoint(fold_dir, trainer, opt, best_weights)

    if best_weights is None:
        raise RuntimeError(f"fold {fold.name}: no epoch was trained (epochs={config.epochs}) and no checkpoint holds "
                           "best weights; give epochs >= 1")
    trainer.load_state(best_weights)
    test = classification_scores(labels[test_idx].numpy(), trainer.predict(test_idx), n_classes=n_classes)
    save_classifier(trainer.model.cpu(), spec, fold_dir / "model")
    return dict(fold=fold.name, fold_index=fold_index, mode=config.mode, protocol=config.protocol,
                classes=list(spec.labels), chosen_epoch=opt.best["epoch"], selected_by=config.select_by,
                selection_on_test=fold.selection_on_test,
                n_train=len(train_idx), n_validation=len(val_idx), n_test=len(test_idx),
                pooling=spec.pooling, speed=speed_settings(config, device, spec.max_seconds),
                train_seconds=opt.seconds,
                examples_per_second=len(train_idx) * config.epochs / max(opt.seconds, 1e-9),
                **{f"test_{k}": v for k, v in test.items()}, history=opt.history)


def speed_settings(config, device: torch.device, max_seconds: int) -> dict:
    """What made this run fast or slow, as it actually took effect on `device` (saved with every fold's result)."""
    cuda, dtype = device.type == "cuda", resolve_precision(device, config.precision)
    speech = config.pooling == "speech"
    fixed = "fixed length: every clip padded or cut to input_seconds (Whisper's encoder takes one length)"
    return dict(device=str(device), precision=str(dtype).replace("torch.", ""), loss_scaling=dtype == torch.float16,
                attention=config.attention, compile=config.compile and config.mode == "lora",
                tf32=config.tf32 if cuda else "n/a (not CUDA)", pinned_memory=cuda, input_seconds=max_seconds,
                batches=("length-bucketed: each batch cut to its longest clip, padding keys masked"
                         if speech and config.mode == "lora" else fixed),
                features="log-mel computed once and cached",
                frozen_encoder=(f"time-mean over {'speech' if speech else 'all'} positions of outputs computed once"
                                if config.mode == "frozen" else "n/a (LoRA)"))
