"""Who is looking at a kernel's output: a person at a Jupyter front end, or a headless executor (papermill,
nbclient, `jupyter nbconvert --execute`).

Widgets need a front end that renders them; a headless executor only stores their views, and floods its message
channels with them. A front end that a person uses sends each cell with `allow_stdin=True` (it can answer
`input()`); nbclient, which papermill and nbconvert run on, sends `allow_stdin=False`. That flag, read from the
cell's own execute request, decides. `BTS_WIDGETS=1` or `0` overrides it (e.g. for Voila, which renders widgets
but executes headless).
"""

from __future__ import annotations

import os

__all__ = ["WIDGETS_ENV", "live_frontend"]

WIDGETS_ENV = "BTS_WIDGETS"


def live_frontend() -> bool:
    """True when widgets will be seen: the code runs in an IPython kernel whose current cell came from a front end
    that allows stdin (Jupyter Lab, Notebook, VS Code), and ipywidgets is installed; False under papermill, nbclient,
    nbconvert, plain Python or a terminal IPython. The `BTS_WIDGETS` environment variable (1/0) overrides."""
    forced = os.environ.get(WIDGETS_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if forced:
        raise ValueError(f"{WIDGETS_ENV}={os.environ[WIDGETS_ENV]!r}: set it to 1 (widgets) or 0 (static figures), "
                         "or unset it to detect the front end")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:  # plain Python, or terminal IPython: nothing renders widgets
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    request = kernel.get_parent("shell") or {}
    return bool(request.get("content", {}).get("allow_stdin", False))
