"""Where the project keeps things it builds once and reuses (converted weights, corpora, results)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["cache_root", "atomic_directory"]

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
