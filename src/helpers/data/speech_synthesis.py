"""Offline speech synthesis with the espeak-ng library shipped by the `espeakng-loader` wheel (no binary, no apt).

The library is driven through ctypes in synchronous mode; a callback collects the 16-bit samples. espeak-ng
keeps global state, so every call holds one process-wide lock. That state also carries over between calls (pitch
flutter and echo buffers), so the same request can give slightly different samples later in a process:
`synthesize_batch` runs a whole list in a fresh process, which makes a list's output repeatable sample for sample.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import resample_poly

__all__ = ["Prosody", "synthesize", "synthesize_batch", "ESPEAK_SAMPLE_RATE"]

ESPEAK_SAMPLE_RATE = 22050
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_chunks: list[np.ndarray] = []


@dataclass(frozen=True)
class Prosody:
    """espeak-ng voice settings: `voice` (e.g. "en+f3"), rate in words/min, volume 0-200, pitch and range 0-100."""

    voice: str = "en"
    rate: int = 175
    volume: int = 100
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self) -> None:
        for name, low, high in (("rate", 80, 450), ("volume", 0, 200), ("pitch", 0, 100), ("pitch_range", 0, 100)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"Prosody.{name}={value} is outside espeak-ng's range [{low}, {high}]")


@_CALLBACK
def _collect(wav, numsamples, events):  # noqa: ARG001 - signature fixed by espeak-ng
    if numsamples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    return 0


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        import espeakng_loader  # the wheel only locates the shared library and its data

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, 0)
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(f"espeak-ng initialisation failed or gave sample rate {rate} (expected "
                               f"{ESPEAK_SAMPLE_RATE})")
        lib.espeak_SetSynthCallback(_collect)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        _lib = lib
    return _lib


def synthesize(text: str, prosody: Prosody = Prosody(), *, sample_rate: int = 16_000) -> np.ndarray:
    """Speak `text` with `prosody`; return float32 mono samples in [-1, 1] at `sample_rate`, shape (n,).

    >>> wave = synthesize("Kids are talking by the door.", Prosody(voice="en+f3", pitch=70))
    >>> wave.dtype, wave.ndim
    (dtype('float32'), 1)
    """
    if not text.strip():
        raise ValueError("synthesize() needs non-empty text")
    with _lock:
        lib = _library()
        if lib.espeak_SetVoiceByName(prosody.voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {prosody.voice!r}; try 'en', 'en+f3' or 'en+m3'")
        for param, value in ((_ESPEAK_RATE, prosody.rate), (_ESPEAK_VOLUME, prosody.volume),
                             (_ESPEAK_PITCH, prosody.pitch), (_ESPEAK_RANGE, prosody.pitch_range)):
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_ng_SetRandSeed(0)  # espeak-ng adds pseudo-random noise; a fixed seed makes each call repeatable
        _chunks.clear()
        raw = text.encode("utf-8") + b"\0"
        err = lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error code {err}")
        lib.espeak_Synchronize()
        pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
        _chunks.clear()
    wave = pcm.astype(np.float32) / 32768.0
    if sample_rate != ESPEAK_SAMPLE_RATE:
        g = np.gcd(sample_rate, ESPEAK_SAMPLE_RATE)
        wave = resample_poly(wave, sample_rate // g, ESPEAK_SAMPLE_RATE // g).astype(np.float32)
    return wave


def _synthesize_all(requests: list[tuple[str, Prosody]], sample_rate: int) -> list[np.ndarray]:
    return [synthesize(text, prosody, sample_rate=sample_rate) for text, prosody in requests]


def synthesize_batch(requests: Sequence[tuple[str, Prosody]], *, sample_rate: int = 16_000) -> list[np.ndarray]:
    """Synthesize `(text, prosody)` pairs in order in a fresh process; the same list always gives the same waves."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(_synthesize_all, list(requests), sample_rate).result()
        except BrokenProcessPool as err:
            raise RuntimeError("the speech synthesis process stopped before finishing (its error is printed above; "
                               "a script that builds the demo corpus at import time must put its code under "
                               "`if __name__ == \"__main__\":`, because the synthesis process imports it "
                               "again)") from err
