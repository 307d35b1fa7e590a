"""Cross-validated runs: prepare (corpus, folds, run directory), train each fold, collect the results.

`run_cross_validation(profile, **overrides)` loads the corpus, makes the folds, trains each fold and writes tidy
results under `<cache>/runs/<mode>-<protocol>-<hash>/`, where the hash covers everything that defines the run.
Finished folds are skipped on rerun; an interrupted fold resumes from its last epoch checkpoint. A damaged result
or saved model is set aside and its fold trained again. One process at a time trains a fold (a lock file in its
folder): another process asking for the same fold waits, then reads the result. A sweep
(`helpers.training.sweep`) calls the same `prepare_run`, `train_run_fold` and `collect_run`.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig, make_config
from ..data.corpora import CorpusError, validate_corpus
from ..data.demo_corpus import DEMO_EMOTIONS, DemoCorpusSettings, load_demo_corpus
from ..data.features import compute_features, data_fingerprint, feature_key, whisper_feature_extractor
from ..data.protocols import Fold, make_folds, save_folds
from ..io import (
    CorruptCacheError,
    FileLock,
    atomic_csv,
    atomic_json,
    cache_root,
    check_tensors,
    fingerprint,
    read_json_checked,
    remove_stale_temporaries,
    set_aside,
)
from ..labels import EMOTIONS
from ..models.classifier import ModelSpec
from ..models.pooling import speech_positions
from ..models.weights import resolve_whisper_source
from ..progress import progress
from .device import TRAINING_FORMAT, library_versions, matmul_precision, pick_device, resolve_device_type
from .frozen import cached_frozen_outputs
from .loop import METRICS, train_fold
from .metrics import summarize_folds

__all__ = ["RunResults", "PreparedRun", "load_corpus", "corpus_classes", "fit_max_seconds", "cut_report",
           "run_dir_for", "prepare_run", "run_features", "run_speech_positions", "finished_result", "train_run_fold",
           "collect_run",
           "run_cross_validation"]

logger = logging.getLogger(__name__)


def load_corpus(config: RunConfig, *, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The validated corpus `config.data` names ("demo", `name:/path`, a .csv manifest or a corpus folder; see
    `helpers.data.public_corpora.read_corpus`) with `config.classes` and `config.label_map` applied.

    `table.attrs["classes"]` is the run's class list, the model's output order: the config's, or for
    `classes="all"` the reader's (classes without a clip left out and listed in `attrs["classes_without_clips"]`).
    `attrs["label_map"]` is the map the reader applied; `dropped_labels`, `malformed`, `skipped`, ... say what was
    left out; `attrs["level"]` the level normalisation the features will apply. A listed class without any clip
    is an error naming the class.
    """
    if config.data == "demo":
        emotions = DEMO_EMOTIONS if config.every_class else config.classes
        try:
            settings = DemoCorpusSettings(seed=config.demo_seed, n_speakers=config.demo_speakers,
                                          clips_per_speaker_emotion=config.demo_clips, emotions=tuple(emotions))
        except ValueError as err:
            raise CorpusError(f"classes={','.join(config.classes)} with data=demo: {err}") from None
        table = load_demo_corpus(settings, cache_dir=cache_dir)
        table.attrs.update(corpus="demo", classes=list(emotions), label_map={e: e for e in settings.emotions})
    else:
        from ..data.public_corpora import read_corpus

        label_map = dict(config.label_map) if config.label_map else None
        if config.every_class:  # the map's targets in their order, else every class the reader knows
            table = read_corpus(config.data, label_map=label_map or "all",
                                classes=tuple(dict.fromkeys(label_map.values())) if label_map else None)
        else:
            table = read_corpus(config.data, label_map=label_map, classes=config.classes)
    classes = tuple(table.attrs["classes"]) if config.every_class else tuple(config.classes)
    dropped = table.attrs.get("dropped_labels")
    if dropped:
        logger.info("%s: %d rows left out because their label is not mapped to a class: %s", config.data,
                    sum(dropped.values()), dropped)
    table, _ = validate_corpus(table, classes=classes, on_bad=config.on_bad, cache_dir=cache_dir)
    present = set(table["label"])
    empty = [c for c in classes if c not in present]
    if empty and not config.every_class:
        raise CorpusError(f"{config.data}: classes {empty} have no usable clip (labels after the map: "
                          f"{sorted(present)}); leave them out of classes, or map labels to them with label_map")
    if empty:
        logger.info("%s: classes=all leaves out %s, which have no usable clip", config.data, empty)
        classes = tuple(c for c in classes if c in present)
        if len(classes) < 2:
            raise CorpusError(f"{config.data}: only {list(classes)} have clips; a classifier needs two classes or "
                              "more (check label_map)")
    table.attrs.update(classes=list(classes), classes_without_clips=empty, level=config.level)
    return table


def corpus_classes(table: pd.DataFrame) -> tuple[str, ...]:
    """The class list `load_corpus` resolved for `table` (the model's output order)."""
    classes = table.attrs.get("classes")
    if not classes:
        raise ValueError("this table carries no class list (attrs['classes']); read it with load_corpus")
    return tuple(classes)


def fit_max_seconds(durations, *, cap: int = 30, quantile: float = 0.99) -> int:
    """Whole seconds that hold 99% of the clips (the `quantile` of `durations`, rounded up; at least 1, at most
    `cap`): one very long clip does not switch every input to 30 s, it is cut (`cut_report` says so)."""
    return int(min(cap, max(1, math.ceil(float(np.quantile(np.asarray(durations, float), quantile)) - 1e-9))))


def cut_report(durations, max_seconds: int, *, fitted: bool = False) -> str:
    """How many clips an input of `max_seconds` cuts and by how much, or "" if none: what a run logs."""
    durations = np.asarray(durations, float)
    over = durations[durations > max_seconds] - max_seconds
    if not over.size:
        return ""
    how = " (fitted: the 99th percentile of the clip lengths, rounded up)" if fitted else ""
    return (f"max_seconds={max_seconds}{how}: {over.size} of {durations.size} clips are longer and are cut at "
            f"{max_seconds} s, losing {over.min():.2f}-{over.max():.2f} s ({over.mean():.2f} s on average; the "
            f"longest clip lasts {durations.max():.1f} s)")


def run_dir_for(config: RunConfig, data_key: str, *, cache_dir: str | Path | None = None,
                device_type: str | None = None, classes: Sequence[str] | None = None,
                fitted_max_seconds: int | None = None) -> Path:
    """`<cache>/runs/<mode>-<protocol>-<hash>`: the hash covers config, data, device type and library versions
    (the precision setting as asked: the dtype it resolves to on a device is in each fold's `speed` record).

    `classes` is the resolved class list (default: `config.classes`, which must then not be "all"); it, a
    label_map, a level normalisation, a fitting cap, speech pooling and the speakers-k settings enter the hash only
    where they differ from the defaults every run had before they existed, so cached runs of the paper's four
    classes keep their directories. `max_folds` is left out: folds are independent, so runs that differ only in how
    many folds they train share one directory and reuse each other's finished folds. `fitted_max_seconds` (the input
    length `max_seconds=0` fitted, given only where it differs from the longest clip's, the fit of runs before the
    99th percentile) enters it too.
    """
    classes = tuple(config.classes if classes is None else classes)
    if config.every_class and classes == tuple(config.classes):
        raise ValueError("run_dir_for: config.classes is 'all'; pass the resolved classes (load_corpus's "
                         "attrs['classes'])")
    skip = ("profile", "allow_download", "max_folds", "device", "classes", "label_map", "folds_k",
            "validation_speakers", "level", "fit_seconds_cap", "pooling")  # device type: hashed below; see docstring
    defining = {k: v for k, v in asdict(config).items() if k not in skip}
    if classes != EMOTIONS:
        defining["classes"] = list(classes)
    if config.label_map:
        defining["label_map"] = [list(pair) for pair in config.label_map]
    if config.level != "none":
        defining["level"] = config.level
    if config.fit_seconds_cap != 30:
        defining["fit_seconds_cap"] = config.fit_seconds_cap
    if config.pooling != "mean":
        defining["pooling"] = config.pooling
    if config.protocol == "speakers-k":
        defining["speakers_k"] = dict(k=config.folds_k, n_validation=config.validation_speakers)
    if fitted_max_seconds is not None:
        defining["fitted_max_seconds"] = fitted_max_seconds
    key = fingerprint([defining, data_key, device_type or resolve_device_type(config.device), library_versions(),
                       TRAINING_FORMAT])
    return cache_root(cache_dir) / "runs" / f"{config.mode}-{config.protocol}-{key}"


@dataclass
class RunResults:
    """Per-fold rows, the across-fold summary, the classes and where the files are."""

    run_dir: Path
    config: RunConfig
    folds: pd.DataFrame
    summary: pd.DataFrame
    classes: tuple[str, ...]  # the model's output classes, in order (run.json)

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunResults":
        """Read a run directory's files: every fold finished there (its config.json is the last invocation's)."""
        run_dir = Path(run_dir)
        config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in read_json_checked(run_dir / "config.json").items()})
        return cls(run_dir, config, pd.read_csv(run_dir / "folds.csv"), pd.read_csv(run_dir / "summary.csv"),
                   _run_classes(run_dir))


def _run_classes(run_dir: str | Path) -> tuple[str, ...]:
    """The classes of the run in `run_dir`, from its run.json (a run prepared before classes were recorded there
    trained the paper's four, the only classes there were)."""
    info = read_json_checked(Path(run_dir) / "run.json")
    return tuple(info.get("classes") or EMOTIONS)


@dataclass
class PreparedRun:
    """A run's corpus, folds and directory: any of its folds can now be trained, here or in another process."""

    config: RunConfig
    run_dir: Path
    table: pd.DataFrame
    folds: list[Fold]
    max_seconds: int
    cache_dir: str | Path | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The run's classes, the model's output order (resolved from the corpus by `load_corpus`)."""
        return corpus_classes(self.table)

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
    classes = corpus_classes(table)
    max_seconds = config.max_seconds or fit_max_seconds(table["duration"], cap=config.fit_seconds_cap)
    data_key = data_fingerprint(table)
    device_type = device_type or resolve_device_type(config.device)
    longest = fit_max_seconds(table["duration"], cap=config.fit_seconds_cap, quantile=1.0)  # the fit before p99
    fitted = max_seconds if not config.max_seconds and max_seconds != longest else None
    run_dir = run_dir_for(config, data_key, cache_dir=cache_dir, device_type=device_type, classes=classes,
                          fitted_max_seconds=fitted)
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(run_dir, cache_dir)
    atomic_json(run_dir / "config.json", json.loads(config.to_json()))
    folds = make_folds(table, config.protocol, k=config.folds_k, n_validation=config.validation_speakers)
    folds = folds[:config.max_folds] if config.max_folds else folds
    save_folds(folds, run_dir / "folds.json")
    truncated = int((table["duration"] > max_seconds).sum())
    if truncated:
        logger.info(cut_report(table["duration"], max_seconds, fitted=not config.max_seconds))
    atomic_json(run_dir / "run.json", dict(data_fingerprint=data_key, max_seconds=max_seconds,
                                            clips_cut_at_max_seconds=truncated, level=config.level,
                                            pooling=config.pooling,
                                            device=device_type, n_utterances=len(table),
                                            classes=list(classes), corpus=table.attrs.get("corpus"),
                                            label_map=table.attrs.get("label_map"),
                                            validation=table.attrs.get("validation"),
                                            dropped_labels=table.attrs.get("dropped_labels", {}),
                                            platform=platform.platform(), python=platform.python_version()))
    return PreparedRun(config, run_dir, table, folds, max_seconds, cache_dir)


def _remove_temporaries(run_dir: Path, cache_dir: str | Path | None) -> None:
    """Clear what killed processes left in the caches a run writes (see `helpers.io.remove_stale_temporaries`)."""
    root = cache_root(cache_dir)
    for folder in (root / "features", root / "encoder_outputs", root / "corpora", root / "whisper", run_dir,
                   *(p for p in run_dir.iterdir() if p.is_dir())):
        remove_stale_temporaries(folder)


def finished_result(fold_dir: Path) -> dict | None:
    """The fold's result.json if the fold is finished and its result and saved model read back whole, else None.

    A damaged result or model is set aside (named in a warning) so that the fold is trained again.
    """
    path = fold_dir / "result.json"
    if not path.is_file():
        return None
    try:
        result = read_json_checked(path)
        weights = sorted((fold_dir / "model").glob("*.safetensors"))
        if not weights:
            raise CorruptCacheError(fold_dir / "model", "the fold's saved model has no weights file")
        for file in weights:
            check_tensors(file)
    except CorruptCacheError as err:
        set_aside(path, reason=f"{err.path.name}: {err.reason}; the fold is trained again")
        if err.path != path and (fold_dir / "model").exists():
            set_aside(fold_dir / "model", reason="the saved model of a fold trained again")
        return None
    return result


def run_features(run: PreparedRun, *, load: bool = True) -> tuple[torch.Tensor | None, str]:
    """Log-mel features of every clip of the run (computed once, cached) and their cache key.

    Only the model's config is read (not its weights): the extractor depends on the mel bins and the input length.
    """
    from transformers import WhisperConfig

    source = resolve_whisper_source(run.config.model, allow_download=run.config.allow_download,
                                    cache_dir=run.cache_dir)
    extractor = whisper_feature_extractor(WhisperConfig.from_pretrained(source), run.max_seconds)
    features = compute_features(run.table, extractor, level=run.config.level, cache_dir=run.cache_dir, load=load)
    return features, feature_key(run.table, extractor, run.config.level)


def run_speech_positions(run: PreparedRun) -> torch.Tensor | None:
    """Each clip's speech positions at the run's input length (rows as the corpus table), for `pooling="speech"`;
    None for the official all-positions mean."""
    if run.config.pooling != "speech":
        return None
    return torch.from_numpy(speech_positions(run.table["duration"], run.max_seconds * 50))


def train_run_fold(run: PreparedRun, fold_index: int) -> dict:
    """Train and test fold `fold_index` of a prepared run, unless its result exists: the unit a sweep schedules.

    Safe to call from another process on another machine that sees the same cache folder: everything it needs is
    read from the run directory and the caches, its result appears atomically as `<fold>/result.json`, and one
    process at a time trains the fold (the lock file `<fold>/.lock`): another one waits for it and then reads its
    result instead of training the fold again.
    """
    fold = run.folds[fold_index]
    fold_dir = run.run_dir / fold.name
    result = finished_result(fold_dir)
    if result is not None:
        return result
    fold_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(fold_dir / ".lock", what=f"fold {fold.name} of {run.run_dir.name}") as lock:
        result = finished_result(fold_dir)
        if result is not None:  # trained by the process this one waited for
            logger.info("%s: trained by another process while this one waited %.0f s; its result is used",
                        fold.name, lock.waited)
            return result
        result = _train_run_fold(run, fold_index, fold_dir)
    return result


def _train_run_fold(run: PreparedRun, fold_index: int, fold_dir: Path) -> dict:
    """Train and test one fold (the caller holds its lock) and write its result."""
    config, fold = run.config, run.folds[fold_index]
    result_path = fold_dir / "result.json"
    device = pick_device(config.device)
    with matmul_precision(device, config.tf32):
        if config.mode == "frozen":  # the frozen encoder is deterministic: run it once, not every epoch
            _, key = run_features(run, load=False)
            frozen_out = cached_frozen_outputs(config, features_key=key, load_features=lambda: run_features(run)[0],
                                               max_seconds=run.max_seconds, device=device, cache_dir=run.cache_dir,
                                               speech_positions=run_speech_positions(run))
            inputs = None  # the head trains on the cached encoder outputs alone
        else:
            (inputs, _), frozen_out = run_features(run), None
        classes = run.classes
        spec = ModelSpec(source=config.model, labels=classes, max_seconds=run.max_seconds,
                         lora=config.lora if config.mode == "lora" else None, pooling=config.pooling)
        index_of = {u: i for i, u in enumerate(run.table["utterance"])}
        labels = torch.tensor([classes.index(label) for label in run.table["label"]])
        result = train_fold(config, fold, fold_index, fold_dir, spec, index_of, labels, inputs, frozen_out, device,
                            cache_dir=run.cache_dir, speech_positions=run_speech_positions(run))
    atomic_json(result_path, result)
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
    results = [_read_result(run.run_dir / f.name) for f in run.folds]
    mixed = {(r.get("speed", {}).get("device", "?").split(":")[0], r.get("speed", {}).get("precision", "?"))
             for r in results}
    if len(mixed) > 1:  # e.g. a Ray cluster whose GPUs resolve precision="auto" differently (bf16 vs fp16)
        raise RuntimeError(f"{run.run_dir}: its folds were trained on different devices/precisions {sorted(mixed)}; "
                           "set precision explicitly (e.g. precision='bf16') so all folds compute alike")
    rows, summary = _tables(results)
    # on disk: every finished fold in this directory (runs differing only in max_folds share it)
    everything = [r for p in run.run_dir.glob("*/result.json") if (r := finished_result(p.parent)) is not None]
    all_rows, all_summary = _tables(sorted(everything, key=lambda r: r["fold_index"]))
    atomic_csv(run.run_dir / "folds.csv", all_rows)
    atomic_csv(run.run_dir / "summary.csv", all_summary)
    return RunResults(run.run_dir, run.config, rows, summary, run.classes)


def _read_result(fold_dir: Path) -> dict:
    """A finished fold's result; a damaged one is set aside and named in an error that says to rerun."""
    result = finished_result(fold_dir)
    if result is None:
        raise RuntimeError(f"{fold_dir}: the fold's result or model was damaged and is set aside; rerun the run (or "
                           "the sweep) to train the fold again")
    return result


def run_cross_validation(profile: str = "demo", *, cache_dir: str | Path | None = None,
                         **overrides) -> RunResults:
    """Train and evaluate every fold of a profile (with overrides); reuse finished folds; write tidy results."""
    run = prepare_run(make_config(profile, **overrides), cache_dir=cache_dir)
    for i, _ in enumerate(progress(run.folds, desc=f"{run.config.mode} folds", unit="fold")):
        train_run_fold(run, i)
    return collect_run(run)


def _tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    skip = ("history", "test_confusion", "speed", "classes")
    rows = pd.DataFrame([{k: v for k, v in r.items() if k not in skip} for r in results])
    summary = pd.DataFrame([dict(metric=m, **summarize_folds(rows[f"test_{m}"])) for m in METRICS])
    return rows, summary
