"""Progress bars: a tqdm widget for a person at a Jupyter front end, text elsewhere; off with TQDM_DISABLE=1.

Under papermill or nbclient a widget bar would only be stored as a dead view (and its many messages are what made
headless runs hang, see `helpers.book.execution`), so headless kernels get text bars. The book build sets
TQDM_DISABLE=1 so executed chapters carry no progress output at all.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm as _widget_tqdm
from tqdm.std import tqdm as _text_tqdm

from .frontend import live_frontend

__all__ = ["progress", "quiet_library_progress"]


def progress(iterable=None, **kwargs):
    """`tqdm(iterable, **kwargs)`: a widget in a live front end, text otherwise, disabled by TQDM_DISABLE=1."""
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        kwargs["disable"] = True
    return (_widget_tqdm if live_frontend() else _text_tqdm)(iterable, **kwargs)


def quiet_library_progress() -> None:
    """Switch off the progress bars of transformers and huggingface_hub (widgets in any kernel) in this process."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
