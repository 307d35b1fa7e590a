"""Analysis driver: trained runs -> cached traces -> the tidy tables the chapters show.

For one fold of a LoRA run (and the matching frozen run) this picks the analysis set, traces each model once
(`helpers.tracing`), adds logit-lens logits, and caches every trace as safetensors inside the fold's folder, keyed
by the analysis settings. Chapters call the table functions; nothing here trains except `rank_runs`, which asks
`run_cross_validation` for the other ranks (cached like any run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cka import cka, cka_permutation_null
from .layer_contributions import contribution_difference, relative_contributions
from .logit_lens import lens_logits, logit_lens_table
from .models import EMOTIONS, load_classifier, whisper_feature_extractor
from .protocols import load_folds
from .representations import separability_table
from .spectra import k90_summary, spectrum_table
from .tracing import Trace, redraw_lora, select_analysis_set, speech_frames, trace_model
from .training import RunResults, compute_features, load_corpus, run_cross_validation

__all__ = ["AnalysisSettings", "fold_traces", "contribution_tables", "logit_lens_tables", "rank_runs",
           "rank_separability", "svd_tables", "cka_tables"]

TRACE_FORMAT = 3  # bump when what a trace holds changes, so cached traces of an older format are not reused


@dataclass(frozen=True)
class AnalysisSettings:
    """Which utterances are analysed and how. The paper: 25 per class from a validation set; the official SVD/CKA
    code: 10 per class from training. `heldout` = validation + test speakers of the fold."""

    split: str = "heldout"
    per_class: int = 25
    seed: int = 0
    batch_size: int = 8
    lora_frames: int = 0             # LoRA matrices: frames kept per clip (0 = all)
    untrained_dropout: bool = True   # the official untrained baseline ran with LoRA dropout on

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "format": TRACE_FORMAT}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _analysis_table(run: RunResults, fold_index: int, settings: AnalysisSettings,
                    cache_dir: str | Path | None) -> tuple[pd.DataFrame, str]:
    fold = load_folds(run.run_dir / "folds.json")[fold_index]
    splits = {"validation": fold.validation, "test": fold.test, "train": fold.train,
              "heldout": tuple(sorted(set(fold.validation) | set(fold.test)))}
    if settings.split not in splits:
        raise ValueError(f"AnalysisSettings.split={settings.split!r}; choose one of {sorted(splits)}")
    table = load_corpus(run.config, cache_dir=cache_dir)
    return select_analysis_set(table, splits[settings.split], per_class=settings.per_class,
                               seed=settings.seed), fold.name


def _add_lens(trace: Trace, model) -> Trace:
    """Logit-lens logits `lens.<frames>.<raw|ln>` (N, L+1, C): the trained head on each pooled hidden state.

    The last index is always the model's own output (final LayerNorm, all frames pooled), the "final prediction"
    pi_L every layer is compared with, as in the official code, whose last hidden state carries the LayerNorm.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper or plain model
    for frames in ("all", "speech"):
        for norm in ("raw", "ln"):
            pooled = trace[f"pooled_{'ln_' if norm == 'ln' else ''}{frames}"]
            lens = lens_logits(pooled, base.projector, base.classifier)
            lens[:, -1] = trace["logits"]
            trace.arrays[f"lens.{frames}.{norm}"] = lens
    return trace


def fold_traces(lora_run: RunResults, frozen_run: RunResults | None = None, *, fold_index: int = 0,
                settings: AnalysisSettings = AnalysisSettings(),
                kinds: tuple[str, ...] = ("lora", "frozen", "untrained-official", "untrained-peft"),
                cache_dir: str | Path | None = None) -> dict:
    """Traces of the fold's trained LoRA model, frozen model and untrained LoRA baselines (cached).

    Returns {kind: Trace, "analysis_set": table}. Untrained baselines keep the trained head and re-draw LoRA A and B
    (`official`: both N(0, 0.02); `peft`: peft's init with B = 0).
    """
    table, fold_name = _analysis_table(lora_run, fold_index, settings, cache_dir)
    run_info = json.loads((lora_run.run_dir / "run.json").read_text())
    labels = torch.tensor([EMOTIONS.index(x) for x in table["label"]])
    out: dict = {"analysis_set": table}
    features = None
    for kind in kinds:
        run = frozen_run if kind == "frozen" else lora_run
        if run is None:
            continue
        # keyed by the settings and by the fold's result, so a retrained fold never meets an older trace
        result = hashlib.sha256((run.run_dir / fold_name / "result.json").read_bytes()).hexdigest()[:8]
        path = run.run_dir / fold_name / "traces" / f"{kind}-{settings.key()}-{result}.safetensors"
        if path.is_file():
            out[kind] = Trace.load(path)
            continue
        model, spec = load_classifier(run.run_dir / fold_name / "model", allow_download=run.config.allow_download)
        if features is None:
            extractor = whisper_feature_extractor(model.config, spec.max_seconds)
            features = compute_features(table, extractor, cache_dir=cache_dir)
        dropout = False
        if kind.startswith("untrained-"):
            redraw_lora(model, init=kind.split("-", 1)[1], seed=settings.seed)
            dropout = settings.untrained_dropout and kind == "untrained-official"
        n_speech = speech_frames(table["duration"], features.shape[-1] // 2)
        trace = trace_model(model, features, labels, n_speech, batch_size=settings.batch_size,
                            lora_frames=settings.lora_frames, dropout_active=dropout, seed=settings.seed)
        trace.meta.update(kind=kind, fold=fold_name, settings=asdict(settings), run=str(run.run_dir),
                          max_seconds=run_info["max_seconds"])
        _add_lens(trace, model).save(path)
        out[kind] = trace
    return out


# ----------------------------------------------------------------------------------------------------------------
# Tables


def contribution_tables(traces: dict, *, frames: str = "all") -> pd.DataFrame:
    """Fig. 1: per layer and component, LoRA and frozen ratios/cosines and their difference."""
    return contribution_difference(relative_contributions(traces["lora"].arrays, frames=frames),
                                   relative_contributions(traces["frozen"].arrays, frames=frames))


def logit_lens_tables(traces: dict, *, frames: str = "all", final_norm: bool = False,
                      direction: str = "paper") -> pd.DataFrame:
    """Fig. 2a: KL to the final prediction and top-1 overlap per layer index, for LoRA and frozen."""
    key = f"lens.{frames}.{'ln' if final_norm else 'raw'}"
    parts = [logit_lens_table(traces[m][key], direction=direction).assign(model=m, frames=frames,
                                                                           final_norm=final_norm)
             for m in ("lora", "frozen") if m in traces]
    return pd.concat(parts, ignore_index=True)


def rank_runs(profile: str, ranks=(8, 32, 64), **overrides) -> dict[int, RunResults]:
    """LoRA runs at each rank (alpha = 2 x rank, as r=32/alpha=64), trained once and cached."""
    return {r: run_cross_validation(profile, mode="lora", rank=r, alpha=2 * r, **overrides) for r in ranks}


def rank_separability(rank_traces: dict[int, Trace], *, frames: str = "speech", final_norm: bool = False,
                      seed: int = 0) -> pd.DataFrame:
    """Fig. 2b's numbers: silhouette (overall and per class) and kNN UAR per rank and layer index."""
    key = f"pooled_{'ln_' if final_norm else ''}{frames}"
    return pd.concat([separability_table(t[key], t["labels"], EMOTIONS, rank=r, seed=seed)
                      for r, t in rank_traces.items()], ignore_index=True)


def svd_tables(traces: dict, *, frames: str = "all", baseline: str = "untrained-official",
               energy: float = 0.9) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3a-d: per-module spectra and k90 (trained and `baseline`), and the k90 summary with ratios."""
    spectra, summary = [], []
    for kind in ("A", "B", "A_grad", "B_grad"):
        trained = spectrum_table(traces["lora"], kind, frames=frames, energy=energy).assign(model="trained")
        untrained = spectrum_table(traces[baseline], kind, frames=frames, energy=energy).assign(model=baseline)
        spectra += [trained, untrained]
        summary.append(dict(k90_summary(trained, untrained), baseline=baseline, frames=frames))
    return pd.concat(spectra, ignore_index=True), pd.DataFrame(summary)


def _utterance_rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(N, T, d) -> (N, T*d), padding frames zeroed when a speech mask is given (rows = clips, as the official)."""
    if mask is not None:
        values = values * mask[:, :, None]
    return values.reshape(len(values), -1)


def cka_tables(trace: Trace, *, kernel: str = "linear", debiased: bool = False, frames: str = "all",
               n_permutations: int = 100, seed: int = 0) -> pd.DataFrame:
    """Fig. 3e-f: CKA between each module's A and B activations (forward) and their gradients (backward), with
    the 95th percentile of a permutation null for each value."""
    mask = trace["speech_mask"][:, trace["lora_frames"]] if frames == "speech" else None
    rows = []
    for name in trace.lora_names:
        layer, proj = name.split(".")[1:]
        for direction, (a, b) in (("forward", ("A", "B")), ("backward", ("A_grad", "B_grad"))):
            x = _utterance_rows(trace[f"{name}.{a}"], mask)
            y = _utterance_rows(trace[f"{name}.{b}"], mask)
            null = cka_permutation_null(x, y, kernel=kernel, debiased=debiased, n_permutations=n_permutations,
                                        seed=seed)
            rows.append(dict(module=name, layer=int(layer), projection=proj, direction=direction,
                             cka=cka(x, y, kernel=kernel, debiased=debiased), null_q95=float(np.quantile(null, 0.95)),
                             null_mean=float(null.mean()), kernel=kernel, debiased=debiased, frames=frames))
    return pd.DataFrame(rows)
