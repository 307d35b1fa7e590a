"""Headless execution: front-end detection, bounded waits for kernel messages, parameters that papermill parses."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from queue import Empty

import pytest

from helpers.execution import bounded_get_msg
from helpers.frontend import WIDGETS_ENV, live_frontend

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_bounded_get_msg_keeps_polling_until_a_message_comes():
    calls = []

    async def get_msg(timeout=None):
        calls.append(timeout)
        if len(calls) < 3:
            raise Empty
        return {"msg_type": "execute_reply"}

    wrapped = bounded_get_msg(get_msg, slice_seconds=0.01)
    assert asyncio.run(wrapped())["msg_type"] == "execute_reply"
    assert calls == [0.01, 0.01, 0.01]  # never an unbounded wait
    calls.clear()
    with pytest.raises(Empty):  # an explicit timeout is the caller's and passes through
        asyncio.run(bounded_get_msg(lambda timeout=None: _raise_empty(calls, timeout))(timeout=5))
    assert calls == [5]


async def _raise_empty(calls, timeout):
    calls.append(timeout)
    raise Empty


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


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_parses_every_parameter_with_its_comment(notebook, caplog):
    import papermill

    with caplog.at_level(logging.WARNING):
        parameters = papermill.inspect_notebook(str(notebook))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()], caplog.text
    assert "profile" in parameters and "interactive" in parameters
    undocumented = [name for name, p in parameters.items() if not p["help"]]
    assert not undocumented, f"{notebook.name}: parameters without a comment: {undocumented}"
