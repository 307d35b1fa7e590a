"""helpers.frontend: widgets only where a person sees them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.frontend import WIDGETS_ENV, live_frontend

ROOT = Path(__file__).resolve().parents[1]


def test_live_frontend_is_false_outside_a_kernel_and_follows_the_override(monkeypatch):
    monkeypatch.delenv(WIDGETS_ENV, raising=False)
    assert live_frontend() is False
    monkeypatch.setenv(WIDGETS_ENV, "1")
    assert live_frontend() is True
    monkeypatch.setenv(WIDGETS_ENV, "0")
    assert live_frontend() is False
    monkeypatch.setenv(WIDGETS_ENV, "maybe")
    with pytest.raises(ValueError, match=WIDGETS_ENV):
        live_frontend()


@pytest.mark.parametrize("allow_stdin", [True, False])
def test_live_frontend_reads_the_cells_own_request(allow_stdin):
    """A front end a person uses sends allow_stdin=True; nbclient (papermill, nbconvert) sends False."""
    from jupyter_client.manager import start_new_kernel

    env = {k: v for k, v in os.environ.items() if k != WIDGETS_ENV}
    km, kc = start_new_kernel(kernel_name="python3", env={**env, "PYTHONPATH": str(ROOT / "src")})
    try:
        lines = []
        reply = kc.execute_interactive("from helpers.frontend import live_frontend; print(live_frontend())",
                                       allow_stdin=allow_stdin, timeout=60, stdin_hook=lambda msg: None,
                                       output_hook=lambda msg: lines.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert "".join(lines).strip() == str(allow_stdin)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
