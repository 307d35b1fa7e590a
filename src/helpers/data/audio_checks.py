"""What validation knows of each audio file, from one read of its samples, kept per folder so it is computed once.

`audio_facts(paths)` returns, per file: its content hash (sha256 of the bytes), frames, sample rate, channels, the
number of non-finite samples (NaN, Inf), the peak level and whether a WAV holds less data than its header says.
The facts are stored under `<cache>/audio-checks/<folder hash>.json`, one small JSON per folder of audio, keyed by
each file's path, size and modification time (ns): a file is read again only when it changed. The content hash
enters the corpus's data fingerprint, so audio edited in place with the same size and duration changes the cache
keys of its features and runs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from ..io import atomic_json, cache_root, file_sha256, fingerprint

__all__ = ["SILENCE_DBFS", "AUDIO_CHECKS_VERSION", "wav_shortfall", "read_audio_facts", "audio_facts", "peak_dbfs"]

SILENCE_DBFS = -60.0  # a clip whose peak stays below this level is silence (16-bit dither alone is about -90 dBFS)
AUDIO_CHECKS_VERSION = 1  # bump when the facts or their meaning change: stored facts of another version are redone
logger = logging.getLogger(__name__)


def wav_shortfall(path: str | Path) -> str | None:
    """For a RIFF/WAVE file whose `data` chunk declares more bytes than the file holds (a truncated copy or
    download): what the header says and what is there, in bytes and seconds; None for a complete WAV or another
    format (soundfile itself would read such a file short, without a word)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate, offset = 0, 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            name, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if name == b"fmt ":
                fmt = f.read(16)
                byte_rate = int.from_bytes(fmt[8:12], "little") if len(fmt) >= 12 else 0
            elif name == b"data":
                held = size - offset - 8
                if length in (0, 0xFFFFFFFF) or length <= held:  # 0 / 0xFFFFFFFF: a streaming writer's placeholder
                    return None
                return (f"truncated: the header says {length} bytes of audio{_seconds(length, byte_rate)}, the "
                        f"file holds {held}{_seconds(held, byte_rate)}")
            offset += 8 + length + (length & 1)  # chunks are padded to an even length
    return None


def _seconds(n_bytes: int, byte_rate: int) -> str:
    """" (1.50 s)" for `n_bytes` of audio at `byte_rate` bytes per second; "" when the rate is unknown."""
    return f" ({n_bytes / byte_rate:.2f} s)" if byte_rate else ""


def peak_dbfs(peak: float) -> float:
    """A peak sample magnitude (full scale 1.0) in dBFS; -inf for digital silence."""
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def read_audio_facts(path: str | Path) -> dict:
    """One file's facts from one read of its samples: `sha256`, `frames`, `samplerate`, `channels`, `nonfinite`
    (NaN or Inf samples), `peak` (largest finite magnitude), `truncated` (None, or what `wav_shortfall` says); or
    `sha256` and `error` for a file soundfile cannot read."""
    path = Path(path)
    facts: dict = dict(sha256=file_sha256(path))
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises its own error types for non-audio files
        return {**facts, "error": f"unreadable or not audio ({type(err).__name__})"}
    finite = np.isfinite(wave)
    return {**facts, "frames": int(wave.shape[0]), "samplerate": int(rate), "channels": int(wave.shape[1]),
            "nonfinite": int(wave.size - finite.sum()),
            "peak": float(np.abs(wave[finite]).max()) if finite.any() else 0.0,
            "truncated": wav_shortfall(path)}


def _store_path(folder: Path, cache_dir: str | Path | None) -> Path:
    """The JSON holding the facts of the files in `folder`."""
    return cache_root(cache_dir) / "audio-checks" / f"{fingerprint(str(folder), length=20)}.json"


def _read_store(path: Path) -> dict:
    """The stored facts of one folder ({path: facts}); an unreadable or older store counts as empty (redone)."""
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.info("%s: unreadable audio-check cache; the files it covered are checked again", path)
        return {}
    return stored.get("files", {}) if stored.get("version") == AUDIO_CHECKS_VERSION else {}


def audio_facts(paths: Iterable[str | Path], *, cache_dir: str | Path | None = None) -> dict[str, dict]:
    """`read_audio_facts` of every existing file in `paths` ({path as given: facts}), each computed once: reused
    from the folder's store while the file's size and modification time (ns) are unchanged. Missing files are left
    out (the caller reports them)."""
    by_folder: dict[Path, list[str]] = {}
    for p in dict.fromkeys(str(p) for p in paths):
        if Path(p).is_file():
            by_folder.setdefault(Path(p).absolute().parent, []).append(p)
    out = {}
    for folder, members in by_folder.items():
        store = _store_path(folder, cache_dir)
        entries, changed = _read_store(store), False
        for p in members:
            name, stat = Path(p).name, Path(p).stat()
            key = [stat.st_size, stat.st_mtime_ns]
            entry = entries.get(name)
            if entry is None or entry.get("stat") != key:
                entry = entries[name] = {"stat": key, **read_audio_facts(p)}
                changed = True
            out[p] = {k: v for k, v in entry.items() if k != "stat"}
        if changed:
            atomic_json(store, {"version": AUDIO_CHECKS_VERSION, "folder": str(folder), "files": entries})
    return out
