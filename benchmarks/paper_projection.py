"""What the paper's run needs on one H100/H200: hours per Whisper size and mode, peak GPU memory, trace sizes on
disk. Projections from measured quantities, not measurements (no GPU ran them):

- FLOPs per clip from the model shapes (`WHISPER_SIZES`), with the convention `gpu_check.py` measured MFU by:
  training 6 N T + 12 L T^2 d per clip (N encoder parameters, T = 1500 positions, L layers, d width), a forward
  pass a third of that;
- the throughput `benchmarks/gpu_check.sh` measured (README, "Switching to a GPU"): large-v2-shaped encoder, LoRA
  r=32, bf16, 30 s, batch 8 on one H200: 54.8 clips/s = 376 TFLOP/s, MFU 0.38, 16.4 GiB peak; every size is
  assumed to reach the same MFU (optimistic for the small ones, whose kernels fill the card less);
- the paper's run: IEMOCAP's 5531 clips of the four classes, 10 dialog folds, 20 epochs, the validation (= test)
  fold evaluated every epoch; the frozen encoder's outputs computed once per clip and cached (the head's training
  costs nothing next to it);
- trace bytes: the arrays of the rehearsal's trace files (32 layers, lora_frames 50, `write_narrow_whisper`'s
  width) with the width scaled to the size's and the clips to the paper's analysis set (25 per class).

`python benchmarks/paper_projection.py [--traces <a fold's traces folder of a rehearsal>]` prints the README's
tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from helpers.models.weights import WHISPER_SIZES

__all__ = ["MEASURED", "encoder_params", "train_flops", "lora_run_hours", "frozen_run_hours", "peak_memory_gib",
           "trace_bytes", "projection_table", "book_hours", "causal_layer_passes", "causal_hours"]

# benchmarks/gpu_check.sh on one H200 (README): large-v2 shape, LoRA r=32 on v_proj, bf16, 30 s inputs, batch 8
MEASURED = dict(card="H200", size="large-v2", clips_per_s=54.8, tflops=376.0, mfu=0.38, peak_gib=16.4, batch=8)
BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM and an H200 (the same tensor cores)
POSITIONS = 1500  # encoder positions of a 30 s input
IEMOCAP_CLIPS = 5531  # IEMOCAP's utterances in the paper's four classes (excited merged into happiness)


def encoder_params(shape: dict) -> int:
    """Parameters of a Whisper encoder of `shape` (`WHISPER_SIZES` row): convolutions, 1500 positions, layers
    (q, v, out with bias, k without; feed-forward; two LayerNorms), final LayerNorm."""
    d, f, m, n_layers = shape["d_model"], shape["ffn"], shape["mels"], shape["layers"]
    layer = 4 * d * d + 3 * d + 2 * d * f + f + d + 4 * d
    return (m * 3 * d + d) + (3 * d * d + d) + POSITIONS * d + n_layers * layer + 2 * d


def train_flops(shape: dict, positions: int = POSITIONS) -> float:
    """Training FLOPs per clip (forward and backward), 6 N T + 12 L T^2 d: the convention MFU was measured by."""
    return 6 * encoder_params(shape) * positions + 12 * shape["layers"] * positions**2 * shape["d_model"]


def _seconds(flops: float, mfu: float) -> float:
    return flops / (mfu * BF16_PEAK)


def lora_run_hours(shape: dict, *, clips: int = IEMOCAP_CLIPS, folds: int = 10, epochs: int = 20,
                   train_share: float = 0.9, validation_share: float = 0.1, test_share: float = 0.0,
                   mfu: float = MEASURED["mfu"]) -> float:
    """Hours of one LoRA run of `folds` folds: per fold and epoch a training pass over `train_share` of the clips
    and a forward pass over the validation clips, then one over the test clips (the dialog protocol's defaults:
    the held-out tenth both selects the epoch and tests, so `test_share` adds nothing)."""
    train = epochs * train_share * clips * train_flops(shape)
    evaluate = (epochs * validation_share + max(test_share, validation_share)) * clips * train_flops(shape) / 3
    return folds * _seconds(train + evaluate, mfu) / 3600


# the book's LoRA runs under the paper profile: (what, folds, train, validation, test shares of IEMOCAP's clips)
BOOK_LORA_RUNS = (("dialog folds (Table 1, every analysis)", 10, 0.9, 0.1, 0.0),
                  ("speaker folds (protocol comparison)", 10, 0.8, 0.1, 0.1),
                  ("session folds (protocol comparison)", 5, 0.7, 0.1, 0.2),
                  ("ranks 8 and 64, fold 1 (rank chapter)", 2, 0.9, 0.1, 0.0))


def book_hours(shape: dict, *, mfu: float = MEASURED["mfu"]) -> dict[str, float]:
    """Training hours of the paper book's LoRA runs with one Whisper size (frozen runs cost minutes)."""
    return {what: lora_run_hours(shape, folds=folds, train_share=t, validation_share=v, test_share=x, mfu=mfu)
            for what, folds, t, v, x in BOOK_LORA_RUNS}


def frozen_run_hours(shape: dict, *, clips: int = IEMOCAP_CLIPS, mfu: float = MEASURED["mfu"]) -> float:
    """Hours of one frozen run: one encoder forward pass per clip (cached for every fold and epoch)."""
    return _seconds(clips * train_flops(shape) / 3, mfu) / 3600


def causal_layer_passes(n_layers: int, *, projections: tuple[str, ...] = ("v_proj",),
                        random_sets: int = 20) -> int:
    """Encoder-layer passes per test clip of one fold's causal experiments (`helpers.analysis.causal`): the edits
    of the LoRA, frozen and untrained models as `fold_interventions` makes them, each run from the lowest layer it
    touches (`run_edits`; erased layers are skipped), plus per model one pass reading the stream and one reading
    the patch source."""
    from helpers.analysis.causal import ablation_plan, patch_sites, top_quarter
    from helpers.analysis.interventions import Edit

    L, q = n_layers, top_quarter(n_layers)
    common = [Edit()] + [Edit(erase=(l,)) for l in range(L)] + [Edit(antialigned=(l,)) for l in range(L)]
    common += [Edit(erase=tuple(range(k))) for k in range(1, L + 1)]
    common += [Edit(erase=tuple(range(L - k, L))) for k in range(1, L + 1)]
    common += [Edit(antialigned=tuple(range(L - q, L)))] + [Edit(patch=site) for site in patch_sites(L)]
    plan = ablation_plan(L, list(projections), random_sets=random_sets)
    ablations = [Edit(lora_off=tuple(item["layers"])) for item in plan.values()]
    untrained = [Edit()] + [Edit(patch=site) for site in patch_sites(L) if site[0] != "residual"]

    def cost(edits: list) -> int:
        unique = list(dict.fromkeys(edits))
        return 2 * L + sum(L - e.first_layer(L) - len(e.erase) for e in unique)

    return cost(common + ablations) + cost(common) + cost(untrained)


def causal_hours(shape: dict, *, clips: int = IEMOCAP_CLIPS, folds: int = 10, probe_per_class: int = 100,
                 mfu: float = MEASURED["mfu"]) -> float:
    """Hours of the causal chapter's experiments over every fold: `causal_layer_passes` on each fold's test clips,
    plus the probes' pooled passes (LoRA and frozen model, `probe_per_class` x 4 training clips and the test)."""
    forward_per_layer = train_flops(shape) / 3 / shape["layers"]
    test = clips / folds
    layers = causal_layer_passes(shape["layers"]) * test + 2 * shape["layers"] * (4 * probe_per_class + test)
    return folds * _seconds(layers * forward_per_layer, mfu) / 3600


def peak_memory_gib(shape: dict, *, mode: str = "lora") -> float:
    """Peak GPU memory at batch 8, 30 s, bf16: fp32 weights and their bf16 copies (6 bytes per parameter) plus
    activations, scaled from the measured large-v2 peak by L x d (every size's feed-forward is 4 d wide); a frozen
    forward pass keeps one layer's activations, not all of them."""
    reference = WHISPER_SIZES[MEASURED["size"]]
    weights = 6 * encoder_params(shape) / 2**30
    activations = ((MEASURED["peak_gib"] - 6 * encoder_params(reference) / 2**30)
                   * shape["layers"] * shape["d_model"] / (reference["layers"] * reference["d_model"]))
    return weights + (activations if mode == "lora" else activations / shape["layers"])


def trace_bytes(arrays: dict[str, tuple[tuple[int, ...], int]], *, clips: int, width: int, to_clips: int,
                to_width: int) -> int:
    """Bytes of one fold's traces at `to_clips` clips and width `to_width`, from a rehearsal's arrays (name ->
    (shape, bytes per item)) of `clips` clips and width `width`: the first axis of a per-clip array scales with the
    clips, the last axis with the width where it is the width (states, LoRA-B outputs and their gradients)."""
    total = 0
    for shape, itemsize in arrays.values():
        shape = list(shape)
        if shape and shape[0] == clips:
            shape[0] = to_clips
        if len(shape) >= 2 and shape[-1] == width:
            shape[-1] = to_width
        n = 1
        for s in shape:
            n *= s
        total += n * itemsize
    return total


def read_trace_arrays(folder: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, bytes per item) of every array in the safetensors files under `folder`."""
    from safetensors import safe_open

    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                out[f"{path.relative_to(folder)}:{name}"] = (tuple(piece.get_shape()), sizes[piece.get_dtype()])
    return out


def projection_table(sizes=tuple(WHISPER_SIZES), *, mfu: float = MEASURED["mfu"]) -> list[dict]:
    """One row per size: training TFLOPs per clip, hours of a LoRA run (10 folds x 20 epochs), minutes of a frozen
    run, peak GPU memory of each."""
    return [dict(size=size, tflop_per_clip=round(train_flops(WHISPER_SIZES[size]) / 1e12, 2),
                 lora_hours=round(lora_run_hours(WHISPER_SIZES[size], mfu=mfu), 2),
                 frozen_minutes=round(60 * frozen_run_hours(WHISPER_SIZES[size], mfu=mfu), 2),
                 lora_peak_gib=round(peak_memory_gib(WHISPER_SIZES[size]), 1),
                 frozen_peak_gib=round(peak_memory_gib(WHISPER_SIZES[size], mode="frozen"), 1))
            for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=MEASURED["mfu"], help="model FLOPs utilisation assumed")
    parser.add_argument("--traces", type=Path, nargs="+",
                        help="one fold's trace folders of a rehearsal (LoRA, frozen run; 32 layers, lora_frames 50)")
    parser.add_argument("--trace-clips", type=int, default=4, help="clips in the rehearsal's analysis set")
    parser.add_argument("--trace-width", type=int, default=16, help="d_model of the rehearsal's narrow Whisper")
    args = parser.parse_args()
    rows = projection_table(mfu=args.mfu)
    print("| Whisper size | TFLOP per training clip | LoRA run (10 folds x 20 epochs), hours | frozen run, minutes | "
          "LoRA peak GPU memory, GiB | frozen peak, GiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['tflop_per_clip']} | {r['lora_hours']} | {r['frozen_minutes']} | "
              f"{r['lora_peak_gib']} | {r['frozen_peak_gib']} |")
    hours = book_hours(WHISPER_SIZES["large-v2"], mfu=args.mfu)
    print("\n| the paper book with large-v2 | hours |\n|---|---|")
    for what, h in hours.items():
        print(f"| LoRA runs: {what} | {h:.1f} |")
    causal = causal_hours(WHISPER_SIZES["large-v2"], mfu=args.mfu)
    print(f"| causal experiments, every fold (forward passes only) | {causal:.1f} |")
    print(f"| total | {sum(hours.values()) + causal:.1f} |")
    print(f"\ncausal layer passes per test clip at 32 layers: {causal_layer_passes(32)} "
          f"({causal_layer_passes(32) / 32:.0f} encoder passes)")
    if args.traces:
        arrays = {f"{i}:{k}": v for i, folder in enumerate(args.traces) for k, v in read_trace_arrays(folder).items()}
        for size in ("large-v2",):
            per_fold = trace_bytes(arrays, clips=args.trace_clips, width=args.trace_width, to_clips=100,
                                   to_width=WHISPER_SIZES[size]["d_model"])
            print(json.dumps(dict(size=size, rehearsal_bytes=sum(s[1] * _prod(s[0]) for s in arrays.values()),
                                  per_fold_gib=round(per_fold / 2**30, 2),
                                  ten_folds_gib=round(10 * per_fold / 2**30, 1))))


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


if __name__ == "__main__":
    main()
