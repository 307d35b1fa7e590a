"""Causal interventions on a Whisper classifier: switch LoRA's update off in chosen layers, and patch the residual
stream (or one sublayer's output) of one model with another model's activations on the same clips.

With `helpers.analysis.tracing`, the only module that touches model internals. Functions take a model and log-mel
features (N, n_mels, frames) and return numpy logits or tables; nothing here trains.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from ..training.metrics import uar
from .tracing import encoder_path, lora_modules, projection_module, walk

__all__ = ["PATCH_PARTS", "lora_switched_off", "predict_logits", "ablation_sets", "lora_ablation_table",
           "layer_activations", "patched_logits"]

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


@torch.no_grad()
def predict_logits(model, features: torch.Tensor, *, batch_size: int = 8) -> np.ndarray:
    """The model's logits (N, C) in eval mode, batch by batch."""
    device = next(model.parameters()).device
    with _eval_mode(model):
        return np.concatenate([model(input_features=features[s:s + batch_size].to(device)).logits.float().cpu().numpy()
                               for s in range(0, len(features), batch_size)])


def ablation_sets(n_layers: int) -> list[tuple[str, int, tuple[int, ...]]]:
    """(kind, k, layers) for every ablation: none, each single layer, the bottom k and the top k layers for
    k = 1..L (k = L is every layer)."""
    out = [("none", 0, ())]
    out += [("single", l, (l,)) for l in range(n_layers)]
    out += [("bottom", k, tuple(range(k))) for k in range(1, n_layers + 1)]
    out += [("top", k, tuple(range(n_layers - k, n_layers))) for k in range(1, n_layers + 1)]
    return out


def lora_ablation_table(model, features: torch.Tensor, labels: np.ndarray, *, batch_size: int = 8,
                        projections: Sequence[str] | None = None) -> pd.DataFrame:
    """Test UAR and accuracy (WAR) with LoRA switched off in each set of `ablation_sets`, and the change from the
    intact model (`d_uar`; negative = the ablated layers mattered)."""
    n_layers = len(walk(model, encoder_path(model)).layers)
    labels = np.asarray(labels)
    rows = []
    for kind, k, layers in ablation_sets(n_layers):
        with lora_switched_off(model, layers, projections):  # layers=() switches nothing off
            pred = predict_logits(model, features, batch_size=batch_size).argmax(-1)
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
                      batch_size: int = 8) -> torch.Tensor:
    """What `patched_logits` writes: the residual stream at the input of encoder `layer` (L = the last layer's
    output), or the attention / MLP output of `layer`, (N, T, d), in eval mode."""
    wrapped, path, n_layers = _wrapped(model, part)
    out = []
    with _eval_mode(model):
        for s in range(0, len(features), batch_size):
            with wrapped.trace(input_features=features[s:s + batch_size]):
                site = _site(wrapped, path, layer, part, n_layers)
                value = (site.input if part == "residual" else
                         site.output[0] if part == "attention" else site.output).save()
            out.append(value.detach().clone())
    return torch.cat(out)


@torch.no_grad()
def patched_logits(model, features: torch.Tensor, layer: int, replacement: torch.Tensor, *,
                   part: Part = "residual", batch_size: int = 8) -> np.ndarray:
    """Logits of `model` when the activation `layer_activations(..., layer, part=part)` names is replaced by
    `replacement` (N, T, d), e.g. another model's on the same clips; the rest of the forward pass is the model's
    own."""
    wrapped, path, n_layers = _wrapped(model, part)
    out = []
    with _eval_mode(model):
        for s in range(0, len(features), batch_size):
            new = replacement[s:s + batch_size]
            with wrapped.trace(input_features=features[s:s + batch_size]):
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
