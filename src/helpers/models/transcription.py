"""Transcription with the full Whisper model: the check that converted weights are Whisper (used by tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from .weights import TINY_EN, resolve_whisper_source

__all__ = ["load_whisper_asr", "greedy_transcribe"]


def load_whisper_asr(source: str | Path = TINY_EN, *, allow_download: bool = False,
                     cache_dir: str | Path | None = None):
    """The full encoder-decoder (`WhisperForConditionalGeneration`) and its tokenizer, for transcription checks."""
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    path = resolve_whisper_source(source, allow_download=allow_download, cache_dir=cache_dir)
    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    return model, WhisperTokenizer.from_pretrained(path)


@torch.no_grad()
def greedy_transcribe(model, tokenizer, features: torch.Tensor, *, max_tokens: int = 96) -> list[str]:
    """Greedy English transcription of log-mel `features` (batch, n_mels, 3000) without timestamps."""
    model.eval()
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    prompt = [sot, tokenizer.convert_tokens_to_ids("<|notimestamps|>")]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    encoded = model.model.encoder(features).last_hidden_state
    tokens = torch.tensor([prompt] * features.shape[0])
    done = torch.zeros(features.shape[0], dtype=torch.bool)
    for _ in range(max_tokens):
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=tokens).logits[:, -1]
        nxt = torch.where(done, torch.full_like(tokens[:, 0], eot), logits.argmax(-1))
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eot
        if done.all():
            break
    return [tokenizer.decode(row[len(prompt):], skip_special_tokens=True).strip() for row in tokens]
