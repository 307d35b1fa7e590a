"""Progress bars: tqdm (a widget in Jupyter, text in a terminal), switched off with TQDM_DISABLE=1.

The book build sets TQDM_DISABLE=1 so executed chapters carry no progress widgets that a static page cannot show.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

__all__ = ["progress", "tqdm"]


def progress(iterable=None, **kwargs):
    """`tqdm(iterable, **kwargs)`, disabled when the environment says TQDM_DISABLE=1."""
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
