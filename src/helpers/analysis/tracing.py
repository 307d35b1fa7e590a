"""One nnsight tracing pass over an analysis set: everything the paper's analyses read, in one place.

This is the only module that touches model internals. For every encoder layer it captures the layer input h, the
self-attention output a, the MLP output m and the layer output (asserting output = h + a + m), and for every LoRA
module its A output, B output and the gradients of the cross-entropy loss with respect to both (one backward pass
per batch). It keeps what the analyses need, as numpy arrays:

- per-frame norms and cosines of h, a, m, a+m: `h_norm, a_norm, m_norm, am_norm, cos_ah, cos_mh, cos_amh` (N, L, T);
- pooled hidden states (mean over all frames / over speech frames), raw and after the final encoder LayerNorm:
  `pooled_all, pooled_speech, pooled_ln_all, pooled_ln_speech` (N, L+1, d); index 0 is the input of layer 0, index
  l the output of layer l-1, index L the last layer's output;
- `logits` (N, C) of the model itself, `labels` (N,), `speech_mask` (N, T);
- per LoRA module `lora.<layer>.<proj>.{A,B,A_grad,B_grad}`: (N, T', r) and (N, T', d) on frames `lora_frames` (T'),
  and `lora.<layer>.<proj>.delta_sv`: the singular values of the module's weight update (scaling x B A).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import CorruptCacheError, atomic_tensors, check_tensors, load_tensors_checked
from ..models.pooling import is_speech_pooled, model_inputs
from ..progress import progress

__all__ = ["TRACE_PARTS", "Trace", "trace_model", "lora_modules", "encoder_path", "walk",
           "projection_module"]

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")  # forward order inside a layer


@dataclass
class Trace:
    """Arrays captured by `trace_model` plus what they mean (`meta`)."""

    arrays: dict[str, np.ndarray]
    meta: dict

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def n_layers(self) -> int:
        return int(self.meta["n_layers"])

    @property
    def lora_names(self) -> list[str]:
        return list(self.meta["lora_modules"])

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names `self["labels"]` index (the traced run's classes, set by `fold_traces`)."""
        if "classes" not in self.meta:
            raise KeyError("this trace does not record its classes (meta['classes']); get it from fold_traces")
        return tuple(self.meta["classes"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_tensors(path, self.arrays, metadata={"meta": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        """A saved trace, read back whole (`CorruptCacheError` naming the file if it is damaged)."""
        try:
            meta = json.loads(check_tensors(path)["__metadata__"]["meta"])
        except (KeyError, TypeError, json.JSONDecodeError):
            raise CorruptCacheError(path, "it has no readable trace description (metadata 'meta')") from None
        return cls(load_tensors_checked(path, framework="numpy"), meta)


def encoder_path(model) -> str:
    """The dotted name of the Whisper encoder inside `model` (plain or peft-wrapped)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    for name, module in model.named_modules():
        if isinstance(module, WhisperEncoder):
            return name
    raise TypeError("the model has no Whisper encoder")


def walk(root, path: str):
    """The submodule (or envoy) at dotted `path` under `root`."""
    for part in path.split("."):
        root = getattr(root, part)
    return root


def lora_modules(model) -> list[tuple[int, str]]:
    """(layer, projection) of every LoRA-wrapped module in the encoder, in forward order."""
    encoder = walk(model, encoder_path(model))
    return [(i, p) for i, layer in enumerate(encoder.layers) for p in _PROJECTIONS
            if hasattr(walk(layer, "self_attn." + p if p.endswith("proj") else p), "lora_A")]


def projection_module(layer, name: str):
    """An encoder layer's linear map `name`: q/k/v/out_proj inside self_attn, fc1/fc2 on the layer."""
    return getattr(layer.self_attn, name) if name.endswith("proj") else getattr(layer, name)


def _cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-12)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, d) where mask (B, T) is true."""
    m = mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


TRACE_PARTS = ("residual", "pooled", "lora")


@torch.no_grad()
def _update_singular_values(module) -> np.ndarray:
    """Singular values of a LoRA module's weight update scaling x B A (d_out, d_in), descending."""
    a, b = module.lora_A["default"].weight.double(), module.lora_B["default"].weight.double()
    return torch.linalg.svdvals(module.scaling["default"] * (b @ a)).float().cpu().numpy()


def trace_model(model, features: torch.Tensor, labels: torch.Tensor, n_speech: np.ndarray, *, batch_size: int = 8,
                lora_frames: int = 0, dropout_active: bool = False, with_gradients: bool = True,
                tolerance: float = 1e-3, seed: int = 0, parts: tuple[str, ...] = TRACE_PARTS) -> Trace:
    """Trace `model` (a Whisper classifier, LoRA-wrapped or not) over `features` (N, n_mels, frames).

    `labels` (N,) feed the cross-entropy whose gradients are captured (summed over the batch, so a clip's gradient
    does not depend on batching). `n_speech` (N,) is the number of speech positions per clip (a speech-pooled model
    is run on them at the full input length, its padding keys masked: every array keeps its shape). `lora_frames` > 0
    keeps that many evenly spaced positions of the LoRA matrices per clip (large models), 0 keeps all.
    `dropout_active` runs LoRA dropout as in training (the official untrained baseline did), its masks drawn from
    `seed` so the trace is repeatable. `parts` narrows what is kept: "residual" (norms and cosines, layer
    contributions), "pooled" (pooled states, logit lens and t-SNE), "lora" (LoRA matrices, SVD and CKA; their
    gradients only with `with_gradients`); the book keeps all three from one pass.
    """
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = sorted(set(parts) - set(TRACE_PARTS))
    if unknown or not parts:
        raise ValueError(f"parts={tuple(parts)}: choose one or more of {TRACE_PARTS}")
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _trace(model, features, labels, n_speech, batch_size=batch_size, lora_frames=lora_frames,
                          dropout_active=dropout_active, with_gradients=with_gradients, tolerance=tolerance,
                          parts=set(parts))
    finally:
        model.train(was_training)


def _trace(model, features, labels, n_speech, *, batch_size, lora_frames, dropout_active, with_gradients,
           tolerance, parts) -> Trace:
    from nnsight import NNsight

    model.train(dropout_active)  # Whisper's own dropouts are 0 by default, so this switches LoRA dropout only
    path = encoder_path(model)
    encoder = walk(model, path)
    loras = lora_modules(model) if "lora" in parts else []
    gradients = with_gradients and bool(loras)
    residual, states_needed = "residual" in parts, bool({"residual", "pooled"} & parts)
    wrapped = NNsight(model)
    n_layers = len(encoder.layers)
    out: dict[str, list] = {}
    residual_error = 0.0
    keep: np.ndarray | None = None
    for start in progress(range(0, len(features), batch_size), desc="tracing", unit="batch", leave=False):
        x = features[start:start + batch_size]
        if gradients:  # a graph through every activation, whether or not the loaded weights are trainable
            x = x.clone().requires_grad_(True)
        y = labels[start:start + batch_size]
        inputs = model_inputs(model, x, n_speech[start:start + len(x)])  # speech pooling: its speech positions
        hs, attn, mlp, outs, a_out, b_out, a_grad, b_grad = ([] for _ in range(8))
        with torch.set_grad_enabled(gradients), wrapped.trace(**inputs):
            layers = walk(wrapped, path).layers
            for i in range(n_layers):
                layer = layers[i]
                if states_needed:
                    hs.append(layer.input.save())
                for proj in _PROJECTIONS:  # forward order: attention projections, then fc1, fc2
                    if proj == "fc1" and residual:
                        attn.append(layer.self_attn.output[0].save())
                    if (i, proj) in loras:
                        envoy = projection_module(layer, proj)
                        a_out.append(envoy.lora_A["default"].output.save())
                        b_out.append(envoy.lora_B["default"].output.save())
                if residual:
                    mlp.append(layer.fc2.output.save())
                if states_needed and (residual or i == n_layers - 1):
                    outs.append(layer.output.save())
            logits = wrapped.output.logits.save()
            if gradients:
                loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                with loss.backward():
                    for k in reversed(range(len(a_out))):
                        b_grad.append(b_out[k].grad.save())
                        a_grad.append(a_out[k].grad.save())
        a_grad.reverse()
        b_grad.reverse()
        model.zero_grad(set_to_none=True)  # the backward pass is for reading gradients, not for training
        with torch.no_grad():
            T = features.shape[-1] // 2  # encoder positions (conv2 has stride 2)
            mask = torch.arange(T)[None, :] < torch.as_tensor(n_speech[start:start + len(x)])[:, None]
            per_layer = {k: [] for k in ("h_norm", "a_norm", "m_norm", "am_norm", "cos_ah", "cos_mh", "cos_amh")}
            per_layer = per_layer if residual else {}
            for h, a, m, o in zip(hs, attn, mlp, outs):
                o = o[0] if isinstance(o, tuple) else o
                assert o.shape == h.shape, f"layer output shape {tuple(o.shape)} != input shape {tuple(h.shape)}"
                residual_error = max(residual_error, float((o - (h + a + m)).abs().max()))
                am = a + m
                for key, value in (("h_norm", h.norm(dim=-1)), ("a_norm", a.norm(dim=-1)), ("m_norm", m.norm(dim=-1)),
                                   ("am_norm", am.norm(dim=-1)), ("cos_ah", _cos(a, h)), ("cos_mh", _cos(m, h)),
                                   ("cos_amh", _cos(am, h))):
                    per_layer[key].append(value)
            for key, values in per_layer.items():
                out.setdefault(key, []).append(torch.stack(values, 1).float().numpy())
            if "pooled" in parts:
                last = outs[-1][0] if isinstance(outs[-1], tuple) else outs[-1]
                states = [*hs, last]
                normed = [encoder.layer_norm(s) for s in states]
                for key, seq, msk in (("pooled_all", states, torch.ones_like(mask)), ("pooled_speech", states, mask),
                                      ("pooled_ln_all", normed, torch.ones_like(mask)),
                                      ("pooled_ln_speech", normed, mask)):
                    out.setdefault(key, []).append(torch.stack([_masked_mean(s, msk) for s in seq], 1).float().numpy())
            out.setdefault("logits", []).append(logits.detach().float().numpy())
            out.setdefault("speech_mask", []).append(mask.numpy())
            keep = (np.arange(T) if not lora_frames or lora_frames >= T
                    else np.linspace(0, T - 1, lora_frames).round().astype(int))
            for k, (layer_i, proj) in enumerate(loras):
                name = f"lora.{layer_i}.{proj}"
                pieces = [("A", a_out[k]), ("B", b_out[k])]
                if gradients:
                    pieces += [("A_grad", a_grad[k]), ("B_grad", b_grad[k])]
                for suffix, value in pieces:
                    out.setdefault(f"{name}.{suffix}", []).append(value.detach()[:, keep].float().numpy())
    if residual_error > tolerance:
        raise AssertionError(f"residual identity broken: max |out - (h + a + m)| = {residual_error:.3g} > {tolerance}")
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    for layer_i, proj in loras:  # the update the adapter adds to the frozen weight, scaling included
        module = projection_module(encoder.layers[layer_i], proj)
        arrays[f"lora.{layer_i}.{proj}.delta_sv"] = _update_singular_values(module)
    arrays["labels"] = labels.numpy().astype(np.int64)
    arrays["lora_frames"] = keep if keep is not None else np.arange(0)
    pooling = "speech" if is_speech_pooled(model) else "mean"
    meta = dict(n_layers=n_layers, pooling=pooling, lora_modules=[f"lora.{i}.{p}" for i, p in loras],
                residual_error=residual_error if residual else None, parts=sorted(parts),
                gradients=gradients, dropout_active=dropout_active, loss="cross-entropy, summed over the batch")
    return Trace(arrays, meta)
