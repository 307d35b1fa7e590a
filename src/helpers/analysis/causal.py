"""The causal experiments of one fold, cached: every intervention's logits on the fold's test clips.

For one fold of the main LoRA run and the matching frozen run this loads both models, the fold's test clips (and
its training clips for the probes and tuned lenses), runs every experiment of the causal chapter and caches the
logits in the fold's folder, keyed by the settings and both folds' results (`fold_interventions`). Scores (UAR,
WAR, loss, confidence) are computed from the cached logits by `helpers.analysis.evidence`, so a verdict's
bootstrap can resample clips. Nothing here trains a Whisper model.

Experiments (keys of the returned arrays, each (N, C) logits unless noted):
- `final.<lora|frozen|untrained>`: the intact models; `untrained` is the LoRA model with its adapters redrawn
  from the official N(0, 0.02) init under the trained head (the control of the attention-vs-MLP claim);
- `ablate.<name>`: LoRA switched off in a set of layers (`meta["ablations"]`: single layers, bottom k, top k,
  per projection type, and random sets of the top quarter's size, the control of the depth claim);
- `patch.<source>><target>.<part>.<layer>`: `target` with one site replaced by `source`'s activation on the same
  clip (parts: residual = the layer's input, attention, mlp);
- `erase.<model>.<single|bottom|top>.<k>`: the official "residual erasure" (a layer's output set to its input);
- `antialigned.<model>.<single|top>.<k>`: the layer update without its component anti-aligned with h;
- `probe.<model>`, `tuned.<model>`, `lens.<model>`: (N, L+1, C) per-layer probe, tuned-lens and raw-lens logits.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.features import compute_features, whisper_feature_extractor
from ..data.protocols import Fold, load_folds
from ..io import file_sha256, fingerprint, read_cached, remove_stale_temporaries
from ..models.classifier import load_classifier
from ..models.lora import redraw_lora
from ..models.pooling import speech_positions
from ..progress import progress
from ..training.runs import RunResults, load_corpus
from .interventions import Edit, run_edits
from .probes import layer_probe_logits, layer_tuned_lens_logits
from .sets import select_analysis_set
from .tracing import Trace, lora_modules, trace_model

__all__ = ["CAUSAL_FORMAT", "CausalSettings", "top_quarter", "bottom_half", "swept_layers", "swept_depths",
           "random_layer_sets", "ablation_plan", "patch_sites", "head_affine", "fold_interventions"]

CAUSAL_FORMAT = 1  # bump when what a record holds changes


@dataclass(frozen=True)
class CausalSettings:
    """How the causal experiments are run. Interventions are scored on the fold's test split; probes and tuned
    lenses are trained on its training split (`probe_per_class` clips per class at most, 0 = all). The per-layer
    sweeps (single layers, bottom and top k, patch sites) visit every `layer_step`-th layer (`swept_layers`,
    `swept_depths`); the verdicts' sets (the top quarter, the bottom half, every layer) are always run."""

    split: str = "test"
    batch_size: int = 8
    random_sets: int = 20        # control of the depth claim: random layer sets of the top quarter's size
    probe_c: float = 1.0         # inverse L2 strength of the logistic-regression probes
    lens_ridge: float = 1e-2     # ridge towards the raw lens of the tuned lens
    probe_per_class: int = 0
    seed: int = 0
    layer_step: int = 1          # the per-layer sweeps visit every layer_step-th layer (1 = every layer)

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("random_sets", 1), ("probe_per_class", 0), ("seed", 0),
                          ("layer_step", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"CausalSettings.{name}={value!r}: give a whole number of at least {low}")

    def key(self) -> str:
        """The settings' cache key; `layer_step` 1 (every layer) is left out, so records cached before the setting
        existed keep their key."""
        values = asdict(self)
        if values["layer_step"] == 1:
            del values["layer_step"]
        return fingerprint({**values, "format": CAUSAL_FORMAT}, length=12)


def top_quarter(n_layers: int) -> int:
    """How many layers "the top quarter" is: L/4 rounded, at least one (1 of tiny's 4, 8 of large-v2's 32)."""
    return max(1, round(n_layers / 4))


def bottom_half(n_layers: int) -> int:
    return max(1, n_layers // 2)


def swept_layers(n_layers: int, step: int = 1) -> tuple[int, ...]:
    """The layers a per-layer sweep visits: every `step`-th counted down from the top layer (always included), in
    ascending order; step 1 is every layer (32 layers, step 4: 3, 7, ..., 31)."""
    if step < 1:
        raise ValueError(f"step={step}: give a whole number of at least 1")
    return tuple(range(n_layers - 1, -1, -step))[::-1]


def swept_depths(n_layers: int, step: int = 1) -> tuple[int, ...]:
    """The k of the bottom-k and top-k sweeps: every `step`-th k up to L, with the top quarter, the bottom half and
    L always included (the verdicts read those); step 1 is 1..L."""
    if step < 1:
        raise ValueError(f"step={step}: give a whole number of at least 1")
    return tuple(sorted({*range(step, n_layers + 1, step), top_quarter(n_layers), bottom_half(n_layers), n_layers}))


def random_layer_sets(n_layers: int, size: int, n: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Layer sets of `size` for the random-layer control: every one when there are at most `n`, else `n` distinct
    sets drawn with `seed`."""
    every = list(itertools.combinations(range(n_layers), size))
    if len(every) <= n:
        return every
    rng = np.random.default_rng(seed)
    picked: set[tuple[int, ...]] = set()
    while len(picked) < n:
        picked.add(tuple(sorted(rng.choice(n_layers, size, replace=False).tolist())))
    return sorted(picked)


def ablation_plan(n_layers: int, projections: list[str], *, random_sets: int = 20, seed: int = 0,
                  layer_step: int = 1) -> dict[str, dict]:
    """{name: {"layers": [...], "projections": [...] or None}} of every LoRA ablation: each single layer, the
    bottom and top k for k = 1..L (with `layer_step` > 1: `swept_layers` and `swept_depths`), every layer for one
    projection type, and the random sets."""
    plan = {f"single.{l}": dict(layers=[l], projections=None) for l in swept_layers(n_layers, layer_step)}
    for k in swept_depths(n_layers, layer_step):
        plan[f"bottom.{k}"] = dict(layers=list(range(k)), projections=None)
        plan[f"top.{k}"] = dict(layers=list(range(n_layers - k, n_layers)), projections=None)
    if len(projections) > 1:
        plan.update({f"proj.{p}": dict(layers=list(range(n_layers)), projections=[p]) for p in projections})
    for j, layers in enumerate(random_layer_sets(n_layers, top_quarter(n_layers), random_sets, seed)):
        plan[f"random.{j}"] = dict(layers=list(layers), projections=None)
    return plan


def patch_sites(n_layers: int, layer_step: int = 1) -> list[tuple[str, int]]:
    """Where activations are patched: the residual stream at the input of layers 1..L-1 and before the final
    LayerNorm (the input of layer 0 comes from the frozen front end both models share, so patching it is a no-op,
    which the tests check), and every layer's attention and MLP output; with `layer_step` > 1, at the outputs and
    sublayers of `swept_layers` only."""
    layers = swept_layers(n_layers, layer_step)
    return [("residual", l + 1) for l in layers] + [(p, l) for p in ("attention", "mlp") for l in layers]


def head_affine(model) -> tuple[np.ndarray, np.ndarray]:
    """The classifier head as an affine map of the pooled encoder output: (W (C, d), c (C,)), logits = W x + c."""
    from .logit_lens import lens_logits

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    d = base.config.d_model
    points = np.concatenate([np.zeros((1, d)), np.eye(d)])[:, None, :].astype(np.float32)
    out = lens_logits(points, base.projector, base.classifier)[:, 0].astype(np.float64)
    return np.ascontiguousarray((out[1:] - out[0]).T), out[0]


def _split_table(run: RunResults, fold, split: str, per_class: int = 0, seed: int = 0):
    ids = {"test": fold.test, "validation": fold.validation, "train": fold.train}
    if split not in ids:
        raise ValueError(f"CausalSettings.split={split!r}; choose one of {sorted(ids)}")
    table = load_corpus(run.config)
    if per_class:
        return select_analysis_set(table, ids[split], per_class=per_class, seed=seed)
    return table[table["utterance"].isin(set(ids[split]))].sort_values(["label", "utterance"]).reset_index(drop=True)


def _pooled(model, features, table, batch_size: int, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(pooled states after the final LayerNorm (N, L+1, d) over the frames the model pools (all; its speech for
    `pooling="speech"`), the model's logits (N, C))."""
    labels = torch.tensor([classes.index(x) for x in table["label"]])
    n_speech = speech_positions(table["duration"], features.shape[-1] // 2)
    trace = trace_model(model, features, labels, n_speech, batch_size=batch_size, with_gradients=False,
                        parts=("pooled",))  # a speech-pooled model runs on its speech positions
    return trace[f"pooled_ln_{'speech' if trace.meta['pooling'] == 'speech' else 'all'}"], trace["logits"]


def fold_interventions(lora_run: RunResults, frozen_run: RunResults, *, fold_index: int = 0,
                       settings: CausalSettings = CausalSettings()) -> Trace:
    """Every causal experiment on fold `fold_index` (see the module docstring), cached in the LoRA fold's folder
    under `causal/`, keyed by `settings` and both folds' results."""
    fold = load_folds(lora_run.run_dir / "folds.json")[fold_index]
    hashes = [file_sha256(r.run_dir / fold.name / "result.json")[:8] for r in (lora_run, frozen_run)]
    path = lora_run.run_dir / fold.name / "causal" / f"{settings.key()}-{hashes[0]}-{hashes[1]}.safetensors"
    remove_stale_temporaries(path.parent)
    return read_cached(path, Trace.load,  # a damaged file is set aside and computed again
                       lambda: _fold_interventions(lora_run, frozen_run, fold, fold_index, settings, path))


def _fold_interventions(lora_run: RunResults, frozen_run: RunResults, fold: Fold, fold_index: int,
                        settings: CausalSettings, path: Path) -> Trace:
    """Run every causal experiment of `fold_interventions` and cache the record at `path`."""
    lora, spec = load_classifier(lora_run.run_dir / fold.name / "model", allow_download=lora_run.config.allow_download)
    frozen, _ = load_classifier(frozen_run.run_dir / fold.name / "model",
                                allow_download=frozen_run.config.allow_download)
    untrained, _ = load_classifier(lora_run.run_dir / fold.name / "model",
                                   allow_download=lora_run.config.allow_download)
    redraw_lora(untrained, init="official", seed=settings.seed + fold_index)
    extractor = whisper_feature_extractor(lora.config, spec.max_seconds)
    classes = lora_run.classes
    test = _split_table(lora_run, fold, settings.split)
    train = _split_table(lora_run, fold, "train", settings.probe_per_class, settings.seed)
    level = lora_run.config.level
    x, x_train = compute_features(test, extractor, level=level), compute_features(train, extractor, level=level)
    bs = settings.batch_size
    n_layers = lora.config.encoder_layers
    q = top_quarter(n_layers)
    models = {"lora": lora, "frozen": frozen}
    arrays: dict[str, np.ndarray] = {"labels": np.array([classes.index(x) for x in test["label"]], np.int64)}
    projections = sorted({p for _, p in lora_modules(lora)})
    plan = ablation_plan(n_layers, projections, random_sets=settings.random_sets, seed=settings.seed,
                         layer_step=settings.layer_step)
    layers, depths = swept_layers(n_layers, settings.layer_step), swept_depths(n_layers, settings.layer_step)
    sites = patch_sites(n_layers, settings.layer_step)

    def model_edits(name: str) -> dict[str, Edit]:
        """Every edit of one model: intact, erasures, anti-aligned removals, patches from the other model, and
        (LoRA model) the ablations."""
        edits = {f"final.{name}": Edit()}
        for l in layers:
            edits[f"erase.{name}.single.{l}"] = Edit(erase=(l,))
            edits[f"antialigned.{name}.single.{l}"] = Edit(antialigned=(l,))
        for k in depths:
            edits[f"erase.{name}.bottom.{k}"] = Edit(erase=tuple(range(k)))
            edits[f"erase.{name}.top.{k}"] = Edit(erase=tuple(range(n_layers - k, n_layers)))
        edits[f"antialigned.{name}.top.{q}"] = Edit(antialigned=tuple(range(n_layers - q, n_layers)))
        other = "frozen" if name == "lora" else "lora"
        for part, layer in sites:
            edits[f"patch.{other}>{name}.{part}.{layer}"] = Edit(patch=(part, layer))
        if name == "lora":
            for key, item in plan.items():
                edits[f"ablate.{key}"] = Edit(lora_off=tuple(item["layers"]),
                                              projections=tuple(item["projections"]) if item["projections"] else None)
        return edits

    speech = speech_positions(test["duration"], x.shape[-1] // 2)  # read by speech-pooled models only
    arrays.update(run_edits(lora, x, model_edits("lora"), source=frozen, batch_size=bs, desc="LoRA model",
                            speech_positions=speech))
    arrays.update(run_edits(frozen, x, model_edits("frozen"), source=lora, batch_size=bs, desc="frozen model",
                            speech_positions=speech))
    control = {"final.untrained": Edit()}
    control.update({f"patch.frozen>untrained.{part}.{layer}": Edit(patch=(part, layer))
                    for part, layer in sites if part != "residual"})
    arrays.update(run_edits(untrained, x, control, source=frozen, batch_size=bs, desc="untrained adapter",
                            speech_positions=speech))

    train_y = np.array([classes.index(v) for v in train["label"]])
    for name, model in progress(models.items(), desc="probes and tuned lenses", unit="model", leave=False):
        states_train, final_train = _pooled(model, x_train, train, bs, classes)
        states_test, _ = _pooled(model, x, test, bs, classes)
        w, c = head_affine(model)
        arrays[f"lens.{name}"] = (states_test @ w.T + c).astype(np.float32)
        arrays[f"probe.{name}"] = layer_probe_logits(states_train, train_y, states_test, c=settings.probe_c,
                                                     n_classes=len(classes))
        arrays[f"tuned.{name}"] = layer_tuned_lens_logits(states_train, final_train, states_test, w, c,
                                                          ridge=settings.lens_ridge)

    meta = dict(fold=fold.name, fold_index=fold_index, n_layers=n_layers, top_quarter=q, n_test=len(test),
                bottom_half=bottom_half(n_layers), swept_layers=list(layers), swept_depths=list(depths),
                ablations=plan, projections=projections,
                settings=asdict(settings), seed=lora_run.config.seed, n_train=len(train), classes=list(classes),
                lora_run=str(lora_run.run_dir), frozen_run=str(frozen_run.run_dir),
                states=f"pooled over {'speech' if spec.pooling == 'speech' else 'all'} frames after the final "
                       "LayerNorm")
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    record = Trace(arrays, json.loads(json.dumps(meta)))
    path.parent.mkdir(parents=True, exist_ok=True)
    record.save(path)
    return record
