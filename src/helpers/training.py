"""Cross-validated training and evaluation: LoRA vs frozen encoder (the paper's Table 1).

`run_cross_validation(profile, **overrides)` loads the corpus, makes the folds, trains each fold and writes tidy
results under `<cache>/runs/<hash>/`, where the hash covers everything that defines the run. Finished folds are
skipped on rerun; an interrupted fold resumes from its last epoch checkpoint with the same RNG state, so the final
metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from .progress import progress

from . import __version__
from .config import RunConfig, make_config
from .corpora import load_audio, read_iemocap, read_manifest, validate_corpus
from .demo_corpus import DemoCorpusSettings, load_demo_corpus
from .device import autocast, pick_device, resolve_precision
from .metrics import classification_scores, summarize_folds
from .models import (EMOTIONS, ModelSpec, build_classifier, extract_features, load_whisper_classifier,
                     resolve_whisper_source, save_classifier, whisper_feature_extractor)
from .paths import cache_root
from .protocols import Fold, make_folds, save_folds

__all__ = ["RunResults", "PreparedRun", "prepare_run", "train_run_fold", "collect_run", "run_cross_validation",
           "load_corpus", "fit_max_seconds", "feature_key", "compute_features", "run_features",
           "pooled_encoder_outputs", "frozen_encoder_outputs", "head_logits", "run_dir_for", "speed_settings",
           "train_fold", "TRAINING_FORMAT"]

METRICS = ("uar", "war", "macro_f1")
TRAINING_FORMAT = 3  # bump when training code changes what a run computes, so older cached folds are not reused
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Data


def load_corpus(config: RunConfig, *, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The validated corpus `config.data` names: "demo", an IEMOCAP release folder or a CSV manifest."""
    if config.data == "demo":
        table = load_demo_corpus(DemoCorpusSettings(seed=config.demo_seed, n_speakers=config.demo_speakers,
                                                    clips_per_speaker_emotion=config.demo_clips), cache_dir=cache_dir)
    else:
        path = Path(config.data).expanduser()
        if path.suffix.lower() == ".csv":
            table = read_manifest(path)
        elif path.is_dir():
            table = read_iemocap(path)
        else:
            raise FileNotFoundError(f"data={config.data!r} is neither 'demo', an existing IEMOCAP_full_release folder "
                                    "nor a .csv manifest; pass -p data /path/to/IEMOCAP_full_release")
    dropped = table.attrs.get("dropped_labels")
    if dropped:
        logger.info("%s: %d rows left out because their label is not mapped to a class: %s", config.data,
                    sum(dropped.values()), dropped)
    table, _ = validate_corpus(table, classes=EMOTIONS, on_bad=config.on_bad)
    return table


def fit_max_seconds(durations, *, cap: int = 30) -> int:
    """Whole seconds that hold the longest clip (at least 1, at most `cap`)."""
    return int(min(cap, max(1, math.ceil(float(np.max(durations)) - 1e-9))))


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(table: pd.DataFrame) -> str:
    """A hash of the corpus content: ids, labels, speakers, groups, file sizes and durations."""
    sizes = [os.path.getsize(p) for p in table["path"]]
    cols = table[["utterance", "label", "speaker", "session", "dialog"]].astype(str).values.tolist()
    return _fingerprint([cols, sizes, np.round(table["duration"].to_numpy(), 4).tolist()])


def feature_key(table: pd.DataFrame, extractor) -> str:
    """What the log-mel features of `table` depend on: the corpus content and the extractor's settings."""
    return _fingerprint([data_fingerprint(table), extractor.to_dict()])


def compute_features(table: pd.DataFrame, extractor, *, cache_dir: str | Path | None = None,
                     load: bool = True) -> torch.Tensor | None:
    """Log-mel features of every utterance, (N, n_mels, frames), computed once and cached as safetensors.

    `load=False` only makes sure the cache file exists (a sweep driver prepares it for its workers).
    """
    path = cache_root(cache_dir) / "features" / f"{feature_key(table, extractor)}.safetensors"
    if path.is_file():
        return load_file(path)["features"] if load else None
    chunks = []
    for start in progress(range(0, len(table), 32), desc="features", unit="batch", leave=False):
        waves = [load_audio(p) for p in table["path"].iloc[start:start + 32]]
        chunks.append(extract_features(waves, extractor))
    features = torch.cat(chunks)
    _atomic_tensors(path, {"features": features.contiguous()})
    return features


@torch.no_grad()
def pooled_encoder_outputs(encoder, features: torch.Tensor, *, device: torch.device, batch_size: int = 16,
                           precision: str = "auto") -> torch.Tensor:
    """Time-mean of the final encoder states (after its LayerNorm), (N, d), of a frozen encoder in eval mode.

    The projector is linear, so projector(h).mean(time) == projector(h.mean(time)): the head needs only this mean,
    which is T times smaller than the states themselves (28 MB instead of 42 GB for large-v2 on IEMOCAP).
    """
    encoder.eval().to(device)
    out = []
    for start in progress(range(0, len(features), batch_size), desc="frozen encoder", unit="batch", leave=False):
        with autocast(device, precision):
            hidden = encoder(features[start:start + batch_size].to(device)).last_hidden_state
        out.append(hidden.float().mean(dim=1).cpu())
    return torch.cat(out)


def head_logits(projector, classifier, pooled: torch.Tensor) -> torch.Tensor:
    """What `WhisperForAudioClassification` does after the encoder, from time-pooled states (B, d): (B, C)."""
    return classifier(projector(pooled))


# ----------------------------------------------------------------------------------------------------------------
# One fold


def _device_type(requested: str) -> str:
    """"cuda", "mps" or "cpu": what `requested` means here ("auto" looks), without requiring that device to exist."""
    return pick_device("auto").type if requested in ("auto", None) else torch.device(requested).type


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return dict(helpers=__version__, torch=torch.__version__, transformers=transformers.__version__,
                peft=peft.__version__)


def run_dir_for(config: RunConfig, fingerprint: str, *, cache_dir: str | Path | None = None,
                device_type: str | None = None) -> Path:
    """`<cache>/runs/<mode>-<protocol>-<hash>`: the hash covers config, data, device type and library versions
    (the precision setting as asked: the dtype it resolves to on a device is in each fold's `speed` record).

    `max_folds` is left out: folds are independent, so runs that differ only in how many folds they train share
    one directory and reuse each other's finished folds.
    """
    defining = {k: v for k, v in asdict(config).items()
                if k not in ("profile", "allow_download", "max_folds", "device")}  # the device type is hashed below
    key = _fingerprint([defining, fingerprint, device_type or _device_type(config.device), _versions(),
                        TRAINING_FORMAT])
    return cache_root(cache_dir) / "runs" / f"{config.mode}-{config.protocol}-{key}"


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def _tmp_for(path: Path) -> Path:
    """A temporary sibling unique to this write: concurrent sweep tasks, on any host, never share one."""
    return path.with_name(f".{path.name}.{platform.node()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic_json(path: Path, obj, *, default=float) -> None:
    tmp = _tmp_for(path)
    tmp.write_text(json.dumps(obj, indent=2, default=default))  # numpy scalars become plain numbers
    os.replace(tmp, path)


def _atomic_csv(path: Path, frame: pd.DataFrame) -> None:
    tmp = _tmp_for(path)
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _atomic_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    save_file(tensors, tmp)
    os.replace(tmp, path)


class _FoldTrainer:
    """Trains one fold: the trainable module, its batches and evaluation differ by mode."""

    def __init__(self, config: RunConfig, fold_index: int, spec: ModelSpec, device: torch.device,
                 inputs: torch.Tensor | None, frozen_encoder_out: torch.Tensor | None,
                 cache_dir: str | Path | None = None):
        self.config, self.device, self.inputs = config, device, inputs
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
        # compiled forward shares the module's parameters: checkpoints and saving still use self.model
        self.forward = torch.compile(self.model) if config.compile and self.hidden is None else self.model

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        if self.hidden is not None:
            return head_logits(self.head["projector"], self.head["classifier"],
                               self.hidden[idx].to(self.device, non_blocking=True))
        batch = self.inputs[idx]
        if self.device.type == "cuda":  # a page-locked batch copies to the GPU asynchronously
            batch = batch.pin_memory()
        return self.forward(input_features=batch.to(self.device, non_blocking=True)).logits

    @torch.no_grad()
    def predict(self, idx: torch.Tensor) -> np.ndarray:
        self.trainable.eval()
        preds = []
        for start in range(0, len(idx), self.config.batch_size * 2):
            with autocast(self.device, self.config.precision):
                preds.append(self.logits(idx[start:start + self.config.batch_size * 2]).float().argmax(-1).cpu())
        return torch.cat(preds).numpy()


_CHECKPOINT_FILES = ("state.pt", "trainable.safetensors", "best.safetensors")


def _complete_checkpoint(fold_dir: Path) -> Path | None:
    """The fold's last complete epoch checkpoint (`checkpoint/`, else a set-aside `checkpoint.old/`), or None."""
    for name in ("checkpoint", "checkpoint.old"):
        folder = fold_dir / name
        if all((folder / f).is_file() for f in _CHECKPOINT_FILES):
            return folder
    return None


def train_fold(config: RunConfig, fold: Fold, fold_index: int, fold_dir: Path, spec: ModelSpec,
               index_of: dict[str, int], labels: torch.Tensor, inputs: torch.Tensor | None,
               frozen_out: torch.Tensor | None, device: torch.device, *, cache_dir: str | Path | None = None) -> dict:
    """Train one fold in `fold_dir` (resuming its checkpoint), pick the epoch on validation UAR, test it: a result.

    `inputs` are the log-mel features of every clip in the corpus, rows indexed by `index_of[utterance]`;
    `frozen_out` their pooled frozen-encoder outputs in frozen mode (None for LoRA).
    """
    n_classes = len(EMOTIONS)
    trainer = _FoldTrainer(config, fold_index, spec, device, inputs, frozen_out, cache_dir)
    params = [p for p in trainer.trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    train_idx = torch.tensor([index_of[u] for u in fold.train])
    val_idx = torch.tensor([index_of[u] for u in fold.validation])
    test_idx = torch.tensor([index_of[u] for u in fold.test])
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total_steps))
    # fp16 autocast needs loss scaling against gradient underflow; bf16 and fp32 do not (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(device, config.precision) == torch.float16)
    generator = torch.Generator().manual_seed(config.seed + fold_index)
    torch.manual_seed(config.seed + fold_index)  # LoRA dropout draws from the global RNG
    history, best, start_epoch, train_seconds = [], None, 0, 0.0

    ckpt = _complete_checkpoint(fold_dir)
    if ckpt is not None:  # resume an interrupted fold where its last finished epoch left it
        state = torch.load(ckpt / "state.pt", weights_only=True)
        _load_trainable(trainer.trainable, load_file(ckpt / "trainable.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, start_epoch, train_seconds = json.loads(state["history"]), int(state["epoch"]), float(state["seconds"])
        best = json.loads(state["best"])
        if ckpt.name != "checkpoint":  # killed between the two renames of a swap: the set-aside one is complete
            shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
            os.replace(ckpt, fold_dir / "checkpoint")
    ckpt = fold_dir / "checkpoint"
    for epoch in progress(range(start_epoch, config.epochs), desc=f"{fold.name} epochs", leave=False,
                          initial=start_epoch, total=config.epochs):
        trainer.trainable.train()
        start = time.perf_counter()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        losses = []
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            try:
                with autocast(device, config.precision):
                    logits = trainer.logits(batch)
                loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"fold {fold.name}, epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()}. Lower lr "
                        f"(now {config.lr}) or use precision='fp32'.")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.max_grad_norm:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
            except torch.cuda.OutOfMemoryError as err:
                raise RuntimeError(f"fold {fold.name}: out of GPU memory at batch_size={config.batch_size}, "
                                   f"max_seconds={spec.max_seconds}. Lower batch_size or max_seconds, or use "
                                   "precision='bf16'.") from err
            losses.append(loss.item())
        train_seconds += time.perf_counter() - start
        val_scores = classification_scores(labels[val_idx].numpy(), trainer.predict(val_idx), n_classes=n_classes)
        history.append(dict(epoch=epoch + 1, train_loss=float(np.mean(losses)),
                            **{f"val_{m}": val_scores[m] for m in METRICS}))
        # the epoch's checkpoint is written whole into a new folder, then swapped in: weights, optimizer, RNG and
        # the best-so-far weights always belong to the same epoch
        new = fold_dir / "checkpoint.new"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        improved = best is None or val_scores["uar"] > best["uar"]  # ties keep the earlier epoch
        if improved:
            best = dict(epoch=epoch + 1, uar=val_scores["uar"])
            save_file(_trainable_state(trainer.trainable), new / "best.safetensors")
        else:
            shutil.copy2(ckpt / "best.safetensors", new / "best.safetensors")
        save_file(_trainable_state(trainer.trainable), new / "trainable.safetensors")
        torch.save(dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                        generator=generator.get_state(), torch_rng=torch.get_rng_state(),
                        cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                        epoch=epoch + 1, seconds=train_seconds, history=json.dumps(history), best=json.dumps(best)),
                   new / "state.pt")
        # never a moment without a complete checkpoint on disk: the old one is set aside, not deleted, until the
        # new one is in place (a killed task resumes from whichever is complete)
        old = fold_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            os.replace(ckpt, old)
        os.replace(new, ckpt)
        shutil.rmtree(old, ignore_errors=True)

    _load_trainable(trainer.trainable, load_file(ckpt / "best.safetensors"))
    test_scores = classification_scores(labels[test_idx].numpy(), trainer.predict(test_idx), n_classes=n_classes)
    save_classifier(trainer.model.cpu(), spec, fold_dir / "model")
    return dict(fold=fold.name, fold_index=fold_index, mode=config.mode, protocol=config.protocol,
                chosen_epoch=best["epoch"], selection_on_test=fold.selection_on_test,
                n_train=len(train_idx), n_validation=len(val_idx), n_test=len(test_idx),
                speed=speed_settings(config, device, spec.max_seconds),
                train_seconds=train_seconds,
                examples_per_second=len(train_idx) * config.epochs / max(train_seconds, 1e-9),
                **{f"test_{k}": v for k, v in test_scores.items()},
                history=history)


# ----------------------------------------------------------------------------------------------------------------
# Cross-validation


@dataclass
class RunResults:
    """Per-fold rows, the across-fold summary and where the files are."""

    run_dir: Path
    config: RunConfig
    folds: pd.DataFrame
    summary: pd.DataFrame

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunResults":
        """Read a run directory's files: every fold finished there (its config.json is the last invocation's)."""
        run_dir = Path(run_dir)
        config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in json.loads((run_dir / "config.json").read_text()).items()})
        return cls(run_dir, config, pd.read_csv(run_dir / "folds.csv"), pd.read_csv(run_dir / "summary.csv"))


def speed_settings(config: RunConfig, device: torch.device, max_seconds: int) -> dict:
    """What made this run fast or slow, as it actually took effect on `device` (saved with every fold's result)."""
    cuda, dtype = device.type == "cuda", resolve_precision(device, config.precision)
    return dict(device=str(device), precision=str(dtype).replace("torch.", ""), loss_scaling=dtype == torch.float16,
                attention=config.attention, compile=config.compile and config.mode == "lora",
                tf32=config.tf32 if cuda else "n/a (not CUDA)", pinned_memory=cuda, input_seconds=max_seconds,
                batches="fixed length: every clip padded or cut to input_seconds (Whisper's encoder takes one length)",
                features="log-mel computed once and cached",
                frozen_encoder="time-mean of outputs computed once" if config.mode == "frozen" else "n/a (LoRA)")


@contextlib.contextmanager
def _matmul_precision(device: torch.device, tf32: bool):
    """TF32 for fp32 matmuls and convolutions on CUDA while the block runs (the caller's settings come back)."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


@dataclass
class PreparedRun:
    """A run's corpus, folds and directory: any of its folds can now be trained, here or in another process."""

    config: RunConfig
    run_dir: Path
    table: pd.DataFrame
    folds: list[Fold]
    max_seconds: int
    cache_dir: str | Path | None = None

    def fold_done(self, fold_index: int) -> bool:
        return (self.run_dir / self.folds[fold_index].name / "result.json").is_file()

    def missing_folds(self) -> list[str]:
        """Names of the folds without a result yet."""
        return [f.name for i, f in enumerate(self.folds) if not self.fold_done(i)]


def prepare_run(config: RunConfig, *, cache_dir: str | Path | None = None,
                device_type: str | None = None) -> PreparedRun:
    """Load and validate the corpus, make the folds, and write the run's config, folds and run.json.

    `device_type` names the device the folds will train on when that is not this machine's (a sweep driver without
    the cluster's GPUs); by default it is what `config.device` means here.
    """
    table = load_corpus(config, cache_dir=cache_dir)
    max_seconds = config.max_seconds or fit_max_seconds(table["duration"])
    fingerprint = data_fingerprint(table)
    device_type = device_type or _device_type(config.device)
    run_dir = run_dir_for(config, fingerprint, cache_dir=cache_dir, device_type=device_type)
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_json(run_dir / "config.json", json.loads(config.to_json()))
    folds = make_folds(table, config.protocol)
    folds = folds[:config.max_folds] if config.max_folds else folds
    save_folds(folds, run_dir / "folds.json")
    truncated = int((table["duration"] > max_seconds).sum())
    if truncated:
        logger.info("max_seconds=%d: %d of %d clips are longer and are cut at that length", max_seconds, truncated,
                    len(table))
    _atomic_json(run_dir / "run.json", dict(data_fingerprint=fingerprint, max_seconds=max_seconds,
                                            clips_cut_at_max_seconds=truncated,
                                            device=device_type, n_utterances=len(table),
                                            validation=table.attrs.get("validation"),
                                            dropped_labels=table.attrs.get("dropped_labels", {}),
                                            platform=platform.platform(), python=platform.python_version()))
    return PreparedRun(config, run_dir, table, folds, max_seconds, cache_dir)


def run_features(run: PreparedRun, *, load: bool = True) -> tuple[torch.Tensor | None, str]:
    """Log-mel features of every clip of the run (computed once, cached) and their cache key.

    Only the model's config is read (not its weights): the extractor depends on the mel bins and the input length.
    """
    from transformers import WhisperConfig

    source = resolve_whisper_source(run.config.model, allow_download=run.config.allow_download,
                                    cache_dir=run.cache_dir)
    extractor = whisper_feature_extractor(WhisperConfig.from_pretrained(source), run.max_seconds)
    features = compute_features(run.table, extractor, cache_dir=run.cache_dir, load=load)
    return features, feature_key(run.table, extractor)


def frozen_encoder_outputs(run: PreparedRun, device: torch.device) -> torch.Tensor:
    """`pooled_encoder_outputs` of the frozen pretrained encoder for every clip of the run, cached on disk (the
    features are loaded only when the outputs are not cached yet).

    The key covers what the numbers depend on: the features, the model's files, the input length, the device type,
    the dtype autocast resolves to there, TF32, the attention kernel, and the library versions.
    """
    config, cache_dir = run.config, run.cache_dir
    _, features_key = run_features(run, load=False)
    source = resolve_whisper_source(config.model, allow_download=config.allow_download, cache_dir=cache_dir)
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(source).glob("*.safetensors"))
    key = _fingerprint([features_key, str(source), weights, run.max_seconds, device.type,
                        str(resolve_precision(device, config.precision)), config.tf32 and device.type == "cuda",
                        config.attention, _versions(), TRAINING_FORMAT])
    path = cache_root(cache_dir) / "encoder_outputs" / f"{key}.safetensors"
    if path.is_file():
        return load_file(path)["pooled"]
    probe = load_whisper_classifier(config.model, max_seconds=run.max_seconds, allow_download=config.allow_download,
                                    attention=config.attention, cache_dir=cache_dir)
    inputs, _ = run_features(run)
    pooled = pooled_encoder_outputs(probe.encoder, inputs, device=device, precision=config.precision)
    _atomic_tensors(path, {"pooled": pooled.contiguous()})
    return pooled


def train_run_fold(run: PreparedRun, fold_index: int) -> dict:
    """Train and test fold `fold_index` of a prepared run, unless its result exists: the unit a sweep schedules.

    Safe to call from another process on another machine that sees the same cache folder: everything it needs is
    read from the run directory and the caches, and its result appears atomically as `<fold>/result.json`.
    """
    config, fold = run.config, run.folds[fold_index]
    fold_dir = run.run_dir / fold.name
    result_path = fold_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    device = pick_device(config.device)
    with _matmul_precision(device, config.tf32):
        if config.mode == "frozen":  # the frozen encoder is deterministic: run it once, not every epoch
            inputs, frozen_out = None, frozen_encoder_outputs(run, device)  # the head trains on these alone
        else:
            (inputs, _), frozen_out = run_features(run), None
        spec = ModelSpec(source=config.model, labels=EMOTIONS, max_seconds=run.max_seconds,
                         lora=config.lora if config.mode == "lora" else None)
        index_of = {u: i for i, u in enumerate(run.table["utterance"])}
        labels = torch.tensor([EMOTIONS.index(label) for label in run.table["label"]])
        fold_dir.mkdir(exist_ok=True)
        result = train_fold(config, fold, fold_index, fold_dir, spec, index_of, labels, inputs, frozen_out, device,
                            cache_dir=run.cache_dir)
    _atomic_json(result_path, result)
    shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
    logger.info("%s: UAR %.3f WAR %.3f F1 %.3f (epoch %d, %.1f clips/s)", fold.name, result["test_uar"],
                result["test_war"], result["test_macro_f1"], result["chosen_epoch"], result["examples_per_second"])
    return result


def collect_run(run: PreparedRun) -> RunResults:
    """Results of the run's folds (all must be finished), and folds.csv/summary.csv over every finished fold."""
    missing = run.missing_folds()
    if missing:
        raise RuntimeError(f"{run.run_dir}: folds {missing} have no result.json yet; train them first "
                           "(run_cross_validation or a sweep)")
    results = [json.loads((run.run_dir / f.name / "result.json").read_text()) for f in run.folds]
    mixed = {(r.get("speed", {}).get("device", "?").split(":")[0], r.get("speed", {}).get("precision", "?"))
             for r in results}
    if len(mixed) > 1:  # e.g. a Ray cluster whose GPUs resolve precision="auto" differently (bf16 vs fp16)
        raise RuntimeError(f"{run.run_dir}: its folds were trained on different devices/precisions {sorted(mixed)}; "
                           "set precision explicitly (e.g. precision='bf16') so all folds compute alike")
    rows, summary = _tables(results)
    # on disk: every finished fold in this directory (runs differing only in max_folds share it)
    everything = [json.loads(p.read_text()) for p in run.run_dir.glob("*/result.json")]
    all_rows, all_summary = _tables(sorted(everything, key=lambda r: r["fold_index"]))
    _atomic_csv(run.run_dir / "folds.csv", all_rows)
    _atomic_csv(run.run_dir / "summary.csv", all_summary)
    return RunResults(run.run_dir, run.config, rows, summary)


def run_cross_validation(profile: str = "demo", *, cache_dir: str | Path | None = None,
                         **overrides) -> RunResults:
    """Train and evaluate every fold of a profile (with overrides); reuse finished folds; write tidy results."""
    run = prepare_run(make_config(profile, **overrides), cache_dir=cache_dir)
    for i, _ in enumerate(progress(run.folds, desc=f"{run.config.mode} folds", unit="fold")):
        train_run_fold(run, i)
    return collect_run(run)


def _tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    skip = ("history", "test_confusion", "speed")
    rows = pd.DataFrame([{k: v for k, v in r.items() if k not in skip} for r in results])
    summary = pd.DataFrame([dict(metric=m, **summarize_folds(rows[f"test_{m}"])) for m in METRICS])
    return rows, summary
