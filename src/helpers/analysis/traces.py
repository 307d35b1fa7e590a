"""Traces of a fold's models, cached: trained runs -> analysis set -> one tracing pass per model -> safetensors.

For one fold of a LoRA run (and the matching frozen run) this picks the analysis set, traces each model once
(`helpers.analysis.tracing`), adds logit-lens logits, and caches every trace inside the fold's folder, keyed by the
analysis settings and the fold's result. Nothing here trains except `rank_runs`, which asks
`run_cross_validation` for the other ranks (cached like any run).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..data.features import compute_features, whisper_feature_extractor
from ..io import file_sha256, read_cached, read_json_checked, remove_stale_temporaries
from ..models.classifier import build_classifier, load_classifier, read_spec
from ..models.lora import redraw_lora
from ..models.pooling import speech_positions
from ..training.runs import RunResults, run_cross_validation
from .logit_lens import lens_logits
from .sets import AnalysisSettings, analysis_set
from .tracing import Trace, trace_model

__all__ = ["TRACE_KINDS", "UNIT_KINDS", "fold_traces", "rank_runs"]

# what each kind of model is traced for: the untrained controls feed the contribution, SVD and CKA controls
TRACE_KINDS: dict[str, tuple[str, ...]] = {"lora": ("residual", "pooled", "lora"), "frozen": ("residual", "pooled"),
                                           "untrained-official": ("residual", "lora"), "untrained-peft": ("lora",)}
UNIT_KINDS = tuple(TRACE_KINDS)


def _add_lens(trace: Trace, model) -> Trace:
    """Logit-lens logits `lens.<frames>.<raw|ln>` (N, L+1, C): the trained head on every pooled hidden state, the
    last layer's included, and `lens.<frames>.reference` (N, C): the model's own prediction for those frames.

    Nothing is overwritten: the raw lens at the top is the last layer's output without the final LayerNorm, so it
    can differ from the prediction (the official code's last row does too). The reference for the frames the model
    pools (all; speech for `pooling="speech"`) is the model's logits; for the other frames it is the head on the
    final LayerNorm of their pooled last state.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper or plain model
    for frames in ("all", "speech"):
        for norm in ("raw", "ln"):
            pooled = trace[f"pooled_{'ln_' if norm == 'ln' else ''}{frames}"]
            trace.arrays[f"lens.{frames}.{norm}"] = lens_logits(pooled, base.projector, base.classifier)
        own = "speech" if trace.meta.get("pooling") == "speech" else "all"  # the frames the model itself pools
        trace.arrays[f"lens.{frames}.reference"] = (trace["logits"] if frames == own
                                                    else trace.arrays[f"lens.{frames}.ln"][:, -1].copy())
    return trace


def _untrained(run: RunResults, fold_name: str, fold_index: int, kind: str, settings: AnalysisSettings):
    """An untrained LoRA classifier of the run's shape: the base checkpoint with a fresh head, LoRA as the run's,
    initialised as `kind` says (`untrained-official`: A, B ~ N(0, 0.02), the official code's control;
    `untrained-peft`: peft's init with B = 0, the model every LoRA run starts from). Each fold draws its own
    (seed = analysis seed + fold index), so the spread over folds includes the spread over random draws."""
    spec = read_spec(run.run_dir / fold_name / "model")
    seed = settings.seed + fold_index
    model = build_classifier(spec, allow_download=run.config.allow_download, seed=seed)
    if kind == "untrained-official":
        redraw_lora(model, init="official", seed=seed)
    return model, spec


def fold_traces(lora_run: RunResults, frozen_run: RunResults | None = None, *, fold_index: int = 0,
                settings: AnalysisSettings = AnalysisSettings(), kinds: tuple[str, ...] = UNIT_KINDS,
                cache_dir: str | Path | None = None) -> dict:
    """Traces of the fold's trained LoRA model, frozen model and untrained LoRA controls (cached).

    Returns {kind: Trace, "analysis_set": table, "classes": the run's classes (what `labels` index)}. Every kind
    is traced with LoRA dropout off, as the trained model is, unless `settings.untrained_dropout` switches it on for
    `untrained-official` (the official variant).
    """
    unknown = sorted(set(kinds) - set(TRACE_KINDS))
    if unknown:
        raise ValueError(f"kinds={kinds}: {unknown} unknown; choose from {TRACE_KINDS}")
    table, fold_name = analysis_set(lora_run, fold_index, settings, cache_dir)
    run_info = read_json_checked(lora_run.run_dir / "run.json")
    classes = lora_run.classes
    labels = torch.tensor([classes.index(x) for x in table["label"]])
    out: dict = {"analysis_set": table, "classes": classes}
    features = None

    def trace_kind(kind: str, run: RunResults, path: Path) -> Trace:
        """Trace one kind of model afresh and cache it at `path` (the features are computed once for all kinds)."""
        nonlocal features
        if kind.startswith("untrained-"):
            model, spec = _untrained(run, fold_name, fold_index, kind, settings)
        else:
            model, spec = load_classifier(run.run_dir / fold_name / "model", allow_download=run.config.allow_download)
        if features is None:
            extractor = whisper_feature_extractor(model.config, spec.max_seconds)
            features = compute_features(table, extractor, level=lora_run.config.level, cache_dir=cache_dir)
        dropout = settings.untrained_dropout and kind == "untrained-official"
        n_speech = speech_positions(table["duration"], features.shape[-1] // 2)
        trace = trace_model(model, features, labels, n_speech, batch_size=settings.batch_size,
                            lora_frames=settings.lora_frames, dropout_active=dropout, seed=settings.seed,
                            parts=TRACE_KINDS[kind])
        trace.meta.update(kind=kind, fold=fold_name, settings=asdict(settings), run=str(run.run_dir),
                          max_seconds=run_info["max_seconds"], seed=run.config.seed, classes=list(classes))
        if "pooled" in TRACE_KINDS[kind]:
            _add_lens(trace, model)
        trace.save(path)
        return trace

    for kind in kinds:
        run = frozen_run if kind == "frozen" else lora_run
        if run is None:
            continue
        # keyed by the settings and by the fold's result, so a retrained fold never meets an older trace
        result = file_sha256(run.run_dir / fold_name / "result.json")[:8]
        path = run.run_dir / fold_name / "traces" / f"{kind}-{settings.key()}-{result}.safetensors"
        remove_stale_temporaries(path.parent)
        # a damaged trace file is set aside (named in a warning) and traced again
        out[kind] = read_cached(path, Trace.load, lambda kind=kind, run=run, path=path: trace_kind(kind, run, path))
        out[kind].meta.setdefault("classes", list(classes))  # traces cached before classes were recorded
    return out


def rank_runs(profile: str, ranks=(8, 32, 64), *, alpha_rule: str = "scaled", **overrides) -> dict[int, RunResults]:
    """LoRA runs at each rank, trained once and cached. `alpha_rule="scaled"` (ours): alpha = 2 x rank, so the
    update's scale alpha / r stays that of r=32/alpha=64 and only the rank changes; `"official"`: alpha = 64 for
    every rank, as the official ablation did (the scale then falls from 8 at r=8 to 1 at r=64)."""
    if alpha_rule not in ("scaled", "official"):
        raise ValueError(f"alpha_rule={alpha_rule!r}; choose 'scaled' (alpha = 2 x rank) or 'official' (alpha = 64)")
    return {r: run_cross_validation(profile, mode="lora", rank=r, alpha=2 * r if alpha_rule == "scaled" else 64,
                                    **overrides) for r in ranks}
