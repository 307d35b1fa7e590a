"""Traces of a fold's models, cached: trained runs -> analysis set -> one tracing pass per model -> safetensors.

For one fold of a LoRA run (and the matching frozen run) this picks the analysis set, traces each model once
(`helpers.analysis.tracing`), adds logit-lens logits, and caches every trace inside the fold's folder, keyed by the
analysis settings and the fold's result. Nothing here trains except `rank_runs`, which asks
`run_cross_validation` for the other ranks (cached like any run).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.features import compute_features, whisper_feature_extractor
from ..io import file_sha256
from ..labels import EMOTIONS
from ..models.classifier import load_classifier
from ..models.lora import redraw_lora
from ..training.runs import RunResults, run_cross_validation
from .logit_lens import lens_logits
from .sets import AnalysisSettings, analysis_set, speech_frames
from .tracing import Trace, trace_model

__all__ = ["fold_traces", "rank_runs"]


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
    table, fold_name = analysis_set(lora_run, fold_index, settings, cache_dir)
    run_info = json.loads((lora_run.run_dir / "run.json").read_text())
    labels = torch.tensor([EMOTIONS.index(x) for x in table["label"]])
    out: dict = {"analysis_set": table}
    features = None
    for kind in kinds:
        run = frozen_run if kind == "frozen" else lora_run
        if run is None:
            continue
        # keyed by the settings and by the fold's result, so a retrained fold never meets an older trace
        result = file_sha256(run.run_dir / fold_name / "result.json")[:8]
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


def rank_runs(profile: str, ranks=(8, 32, 64), **overrides) -> dict[int, RunResults]:
    """LoRA runs at each rank (alpha = 2 x rank, as r=32/alpha=64), trained once and cached."""
    return {r: run_cross_validation(profile, mode="lora", rank=r, alpha=2 * r, **overrides) for r in ranks}
