"""Causal interventions on a Whisper classifier: switch LoRA's update off in chosen layers, and patch the residual
stream (or one sublayer's output) of one model with another model's activations on the same clips.

With `helpers.analysis.tracing`, the only module that touches model internals. Functions take a model and log-mel
features (N, n_mels, frames) and return numpy logits or tables; nothing here trains.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..models.pooling import model_inputs
from ..progress import progress
from ..training.metrics import uar
from .tracing import encoder_path, lora_modules, projection_module, walk

__all__ = ["PATCH_PARTS", "lora_switched_off", "predict_logits", "ablation_sets", "lora_ablation_table",
           "layer_activations", "patched_logits", "Edit", "run_edits", "patch_sweep", "edited_logits",
           "remove_antialigned"]

Part = Literal["residual", "attention", "mlp"]
PATCH_PARTS: tuple[str, ...] = ("residual", "attention", "mlp")


@contextmanager
def lora_switched_off(model, layers: Iterable[int] | None = None,
                      projections: Sequence[str] | None = None) -> Iterator[list[tuple[int, str]]]:
    """Within the block, LoRA's update (scaling x B A x) is zero in encoder `layers` (None: every layer) and
    `projections` (None: every adapted one); the modules switched off are yielded. Restored on exit, also on
    error."""
    encoder = walk(model, encoder_path(model))
    chosen = [(i, p) for i, p in lora_modules(model)
              if (layers is None or i in set(layers)) and (projections is None or p in set(projections))]
    saved = []
    try:
        for i, p in chosen:
            module = projection_module(encoder.layers[i], p)
            saved.append((module, dict(module.scaling)))
            module.scaling = {k: 0.0 for k in module.scaling}
        yield chosen
    finally:
        for module, scaling in saved:
            module.scaling = scaling


def _inputs(model, features: torch.Tensor, speech_positions, s: int, batch_size: int) -> dict:
    """The model's keyword inputs for rows s..s+batch_size (`speech_positions` (N,) for speech-pooled models)."""
    rows = None if speech_positions is None else np.asarray(speech_positions)[s:s + batch_size]
    return model_inputs(model, features[s:s + batch_size], rows)


@torch.no_grad()
def predict_logits(model, features: torch.Tensor, *, batch_size: int = 8, speech_positions=None) -> np.ndarray:
    """The model's logits (N, C) in eval mode, batch by batch."""
    device = next(model.parameters()).device
    with _eval_mode(model):
        return np.concatenate([
            model(**{k: v.to(device) for k, v in _inputs(model, features, speech_positions, s, batch_size).items()})
            .logits.float().cpu().numpy() for s in range(0, len(features), batch_size)])


def ablation_sets(n_layers: int) -> list[tuple[str, int, tuple[int, ...]]]:
    """(kind, k, layers) for every ablation: none, each single layer, the bottom k and the top k layers for
    k = 1..L (k = L is every layer)."""
    out = [("none", 0, ())]
    out += [("single", l, (l,)) for l in range(n_layers)]
    out += [("bottom", k, tuple(range(k))) for k in range(1, n_layers + 1)]
    out += [("top", k, tuple(range(n_layers - k, n_layers))) for k in range(1, n_layers + 1)]
    return out


def lora_ablation_table(model, features: torch.Tensor, labels: np.ndarray, *, batch_size: int = 8,
                        projections: Sequence[str] | None = None, speech_positions=None) -> pd.DataFrame:
    """Test UAR and accuracy (WAR) with LoRA switched off in each set of `ablation_sets`, and the change from the
    intact model (`d_uar`; negative = the ablated layers mattered)."""
    n_layers = len(walk(model, encoder_path(model)).layers)
    labels = np.asarray(labels)
    rows = []
    for kind, k, layers in ablation_sets(n_layers):
        with lora_switched_off(model, layers, projections):  # layers=() switches nothing off
            pred = predict_logits(model, features, batch_size=batch_size,
                                  speech_positions=speech_positions).argmax(-1)
        rows.append(dict(kind=kind, k=k, layers=",".join(map(str, layers)), uar=uar(labels, pred),
                         war=float((pred == labels).mean())))
    table = pd.DataFrame(rows)
    table["d_uar"] = table["uar"] - float(table.loc[table["kind"] == "none", "uar"].iloc[0])
    return table


def _site(wrapped, path: str, layer: int, part: Part, n_layers: int):
    """The envoy whose value a patch reads or writes: the input of `layer` (layer = L: the last layer's output,
    before the final LayerNorm), or that layer's attention / MLP output."""
    encoder = walk(wrapped, path)
    if part == "residual":
        return encoder.layer_norm if layer == n_layers else encoder.layers[layer]
    if layer >= n_layers:
        raise ValueError(f"layer={layer}: a sublayer patch needs a layer in 0..{n_layers - 1}")
    return encoder.layers[layer].self_attn if part == "attention" else encoder.layers[layer].fc2


@contextmanager
def _eval_mode(model):
    """Dropout off within the block, the model's own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _wrapped(model, part: str):
    """(nnsight wrapper, encoder path, number of layers) for a patch of `part`, which is checked here."""
    from nnsight import NNsight

    if part not in PATCH_PARTS:
        raise ValueError(f"part={part!r}; choose one of {PATCH_PARTS}")
    path = encoder_path(model)
    return NNsight(model), path, len(walk(model, path).layers)


@torch.no_grad()
def layer_activations(model, features: torch.Tensor, layer: int, *, part: Part = "residual",
                      batch_size: int = 8, speech_positions=None) -> torch.Tensor:
    """What `patched_logits` writes: the residual stream at the input of encoder `layer` (L = the last layer's
    output), or the attention / MLP output of `layer`, (N, T, d), in eval mode."""
    wrapped, path, n_layers = _wrapped(model, part)
    out = []
    with _eval_mode(model):
        for s in range(0, len(features), batch_size):
            with wrapped.trace(**_inputs(model, features, speech_positions, s, batch_size)):
                site = _site(wrapped, path, layer, part, n_layers)
                value = (site.input if part == "residual" else
                         site.output[0] if part == "attention" else site.output).save()
            out.append(value.detach().clone())
    return torch.cat(out)


@torch.no_grad()
def patched_logits(model, features: torch.Tensor, layer: int, replacement: torch.Tensor, *,
                   part: Part = "residual", batch_size: int = 8, speech_positions=None) -> np.ndarray:
    """Logits of `model` when the activation `layer_activations(..., layer, part=part)` names is replaced by
    `replacement` (N, T, d), e.g. another model's on the same clips; the rest of the forward pass is the model's
    own."""
    wrapped, path, n_layers = _wrapped(model, part)
    out = []
    with _eval_mode(model):
        for s in range(0, len(features), batch_size):
            new = replacement[s:s + batch_size]
            with wrapped.trace(**_inputs(model, features, speech_positions, s, batch_size)):
                site = _site(wrapped, path, layer, part, n_layers)
                if part == "residual":
                    site.input[:] = new
                elif part == "attention":
                    site.output[0][:] = new
                else:
                    site.output[:] = new
                logits = wrapped.output.logits.save()
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out)




def remove_antialigned(h: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """`update` (..., d) without its component anti-aligned with `h`: where update . h < 0, the projection of
    `update` on h is subtracted; where it is >= 0, `update` is unchanged."""
    coef = (update * h).sum(-1, keepdim=True) / (h * h).sum(-1, keepdim=True).clamp_min(1e-12)
    return update - coef.clamp(max=0.0) * h


@dataclass(frozen=True)
class Edit:
    """One intervention on a model's forward pass (fields combine; empty = the intact model):

    - `lora_off`: layers whose LoRA update is switched off (`projections`: only those types; None = all);
    - `erase`: layers skipped, their output set to their input (the official `analysis_utils.py` "residual
      erasure");
    - `antialigned`: layers whose update a + m loses its component anti-aligned with the input h
      (`remove_antialigned`);
    - `patch`: (part, layer) whose activation is replaced by the source model's on the same clip (parts as
      `patched_logits`).
    """

    lora_off: tuple[int, ...] = ()
    projections: tuple[str, ...] | None = None
    erase: tuple[int, ...] = ()
    antialigned: tuple[int, ...] = ()
    patch: tuple[str, int] | None = None

    def first_layer(self, n_layers: int) -> int:
        """The lowest layer the edit touches: every layer below runs as in the intact model."""
        touched = [*self.lora_off, *self.erase, *self.antialigned] + ([self.patch[1]] if self.patch else [])
        return min(touched, default=n_layers)


def _returns_tuple(layer, d_model: int) -> bool:
    """Whether an encoder layer returns a tuple (older transformers) or a tensor, read off a 2-position input."""
    with torch.no_grad():
        p = next(layer.parameters())
        return isinstance(layer(torch.zeros(1, 2, d_model, dtype=p.dtype, device=p.device), attention_mask=None),
                          tuple)


def _check_edits(edits: Mapping[str, Edit], n_layers: int, source) -> None:
    for name, e in edits.items():
        bad = sorted(i for i in {*e.lora_off, *e.erase, *e.antialigned} if not 0 <= i < n_layers)
        if bad:
            raise ValueError(f"edit {name!r}: layers {bad} outside 0..{n_layers - 1}")
        if set(e.erase) & set(e.antialigned):
            raise ValueError(f"edit {name!r}: layers {sorted(set(e.erase) & set(e.antialigned))} are both erased "
                             "and edited; choose one")
        if e.patch is not None:
            part, layer = e.patch
            if part not in PATCH_PARTS:
                raise ValueError(f"edit {name!r}: part={part!r}; choose one of {PATCH_PARTS}")
            if not 0 <= layer <= n_layers - (part != "residual"):
                raise ValueError(f"edit {name!r}: patch layer {layer} outside the encoder")
            if source is None:
                raise ValueError(f"edit {name!r} patches from a source model; pass source=")


def _read_sites(wrapped, path: str, n_layers: int, sites: Sequence[tuple[str, int]], saved: dict) -> None:
    """Within a trace: save the activations at `sites` into `saved` (made outside the trace, so that the values
    reach the caller), read in forward order."""
    for part, layer in sorted(set(sites), key=lambda s: (s[1], PATCH_PARTS.index(s[0]))):
        site = _site(wrapped, path, layer, part, n_layers)
        saved[part, layer] = (site.input if part == "residual" else
                              site.output[0] if part == "attention" else site.output).save()


@torch.no_grad()
def run_edits(model, features: torch.Tensor, edits: Mapping[str, Edit], *, source=None,
              batch_size: int = 8, desc: str = "interventions", speech_positions=None) -> dict[str, np.ndarray]:
    """Logits (N, C) of `model` under each edit of `edits` (in eval mode), batch by batch (`speech_positions` (N,):
    each clip's speech positions, needed by speech-pooled models).

    Per batch, one pass reads the model's residual stream; each edit then starts at the lowest layer it touches,
    the layers below skipped with their cached outputs (nnsight `skip`), so an edit of the top layer costs about
    one layer, not the whole encoder. Patches read `source` (one pass per batch over the sites needed). Edits
    that are equal are run once.
    """
    from nnsight import NNsight

    path = encoder_path(model)
    encoder = walk(model, path)
    n_layers = len(encoder.layers)
    _check_edits(edits, n_layers, source)
    as_tuple = _returns_tuple(encoder.layers[0], model.config.d_model)
    wrapped = NNsight(model)
    sites = [e.patch for e in edits.values() if e.patch is not None]
    if sites:
        src, src_path = NNsight(source), encoder_path(source)
        if len(walk(source, src_path).layers) != n_layers:
            raise ValueError("source and model encoders have different numbers of layers")
    unique = list(dict.fromkeys(edits.values()))
    out: dict[Edit, list[np.ndarray]] = {edit: [] for edit in unique}
    bar = progress(total=len(unique) * -(-len(features) // batch_size), desc=desc, unit="pass", leave=False)
    with ExitStack() as stack:
        stack.enter_context(_eval_mode(model))
        if sites:
            stack.enter_context(_eval_mode(source))
        for s in range(0, len(features), batch_size):
            inputs = _inputs(model, features, speech_positions, s, batch_size)
            stream, saved = {}, {}
            with wrapped.trace(**inputs):
                _read_sites(wrapped, path, n_layers, [("residual", l) for l in range(n_layers + 1)], stream)
            stream = {l: v.detach().clone() for (_, l), v in stream.items()}
            if sites:
                with src.trace(**_inputs(source, features, speech_positions, s, batch_size)):
                    _read_sites(src, src_path, n_layers, sites, saved)
                saved = {k: v.detach().clone() for k, v in saved.items()}
            for edit in unique:
                start = edit.first_layer(n_layers)
                with lora_switched_off(model, edit.lora_off, edit.projections) if edit.lora_off else ExitStack():
                    with wrapped.trace(**inputs):
                        layers = walk(wrapped, path).layers
                        resume = (saved["residual", start] if edit.patch and edit.patch[0] == "residual"
                                  else stream[start])
                        for j in range(start):  # below the edit: the cached stream, the layers not run
                            value = resume if j == start - 1 else stream[j + 1]
                            layers[j].skip((value,) if as_tuple else value)
                        if start == 0 and edit.patch == ("residual", 0):
                            layers[0].input[:] = saved["residual", 0]
                        for i in range(start, n_layers):
                            _edit_layer(layers[i], i, edit, saved, as_tuple)
                        logits = wrapped.output.logits.save()
                out[edit].append(logits.float().cpu().numpy())
                bar.update()
    bar.close()
    return {name: np.concatenate(out[edit]) for name, edit in edits.items()}


def _edit_layer(layer, i: int, edit: Edit, saved: dict, as_tuple: bool) -> None:
    """Within a trace: apply `edit`'s change to encoder layer `i` (an envoy), in forward order."""
    if edit.patch == ("attention", i):
        layer.self_attn.output[0][:] = saved["attention", i]
    if edit.patch == ("mlp", i):
        layer.fc2.output[:] = saved["mlp", i]
    if i in edit.erase:
        h = layer.input
        layer.skip((h,) if as_tuple else h)
    elif i in edit.antialigned:
        h = layer.input.clone()
        o = layer.output
        o = o[0] if isinstance(o, tuple) else o
        o[:] = h + remove_antialigned(h, o - h)


def patch_sweep(source, target, features: torch.Tensor, sites: Sequence[tuple[str, int]], *,
                batch_size: int = 8, speech_positions=None) -> dict[tuple[str, int], np.ndarray]:
    """Logits of `target` with one site at a time replaced by `source`'s activation there on the same clips:
    {(part, layer): (N, C)} for every (part, layer) of `sites` (parts as `patched_logits`)."""
    edits = {f"{part}.{layer}": Edit(patch=(part, layer)) for part, layer in sites}
    out = run_edits(target, features, edits, source=source, batch_size=batch_size, speech_positions=speech_positions)
    return {(part, layer): out[f"{part}.{layer}"] for part, layer in sites}


def edited_logits(model, features: torch.Tensor, *, erase: Iterable[int] = (), antialigned: Iterable[int] = (),
                  batch_size: int = 8, speech_positions=None) -> np.ndarray:
    """Logits with encoder layers edited: each layer in `erase` passes its input through unchanged (the official
    `analysis_utils.py` "residual erasure", which skips the whole layer), and each layer in `antialigned` adds its
    update a + m without the component anti-aligned with its input h (the "subtractive signal" of Fig. 1b
    switched off)."""
    edit = Edit(erase=tuple(sorted(set(erase))), antialigned=tuple(sorted(set(antialigned))))
    return run_edits(model, features, {"edit": edit}, batch_size=batch_size, speech_positions=speech_positions)["edit"]
