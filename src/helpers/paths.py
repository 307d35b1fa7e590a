"""Where the project keeps things it builds once and reuses (converted weights, corpora, results)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]

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
