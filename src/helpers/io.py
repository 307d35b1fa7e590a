"""Files: the cache folder, atomic writes and content fingerprints, one implementation used everywhere.

Every file a run or a cache produces is written to a temporary sibling unique to that write (host, pid, random
suffix) and renamed into place, so readers see the old file or the new one, never half of one, and concurrent
writers (sweep tasks on several hosts) never share a temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

__all__ = ["CACHE_ENV", "cache_root", "atomic_directory", "temporary_sibling", "atomic_write_text", "atomic_json",
           "atomic_csv", "atomic_tensors", "fingerprint", "file_sha256", "parse_list"]

CACHE_ENV = "BTS_CACHE_DIR"


def cache_root(override: str | Path | None = None) -> Path:
    """The project's cache folder: `override`, else `$BTS_CACHE_DIR`, else `$XDG_CACHE_HOME/behind-the-scenes`
    (default `~/.cache/behind-the-scenes`). Created if missing."""
    if override is not None:
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "behind-the-scenes"
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to fill; on success it replaces `target`, on error it is removed.

    An interrupted build therefore never leaves a half-written `target` that a later run would trust.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name next to `path`, unique to this write on any host."""
    return path.with_name(f".{path.name}.{platform.node()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling to write; rename it onto `path` on success, delete it on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with _replacing(path) as tmp:
        tmp.write_text(text)


def atomic_json(path: Path, obj: Any, *, default=float) -> None:
    """JSON with indentation; `default=float` turns numpy scalars into plain numbers."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=default))


def atomic_csv(path: Path, frame: "pd.DataFrame") -> None:
    with _replacing(path) as tmp:
        frame.to_csv(tmp, index=False)


def atomic_tensors(path: Path, tensors: "dict[str, torch.Tensor] | dict[str, np.ndarray]",
                   metadata: dict[str, str] | None = None) -> None:
    """A safetensors file of torch tensors or of numpy arrays (made contiguous)."""
    import numpy as np

    with _replacing(path) as tmp:
        if all(isinstance(v, np.ndarray) for v in tensors.values()):
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)
        else:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def fingerprint(obj: Any, *, length: int = 16) -> str:
    """A short sha256 of `obj` as sorted JSON (non-JSON values by their str): a cache or run-directory key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """The full sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_list(value, kind: type = str, *, name: str = "value") -> tuple:
    """`"8,32,64"`, `[8, 32, 64]` or `8` -> `(8, 32, 64)` as `kind`: the one parser of comma lists in settings,
    papermill parameters and CLI flags. Blank items are dropped; an item `kind` cannot read is an error naming it."""
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if text == "":
            continue
        try:
            out.append(kind(text))
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value!r}: {text!r} is not a {kind.__name__}; give a comma-separated list "
                             f"such as {'8,32,64' if kind is int else 'q_proj,v_proj'}") from None
    return tuple(out)
