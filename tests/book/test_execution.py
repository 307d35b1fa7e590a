"""Headless execution: bounded waits for kernel messages, parameters that papermill parses."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from queue import Empty

import pytest

from helpers.book.execution import bounded_get_msg

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_parses_every_parameter_with_its_comment(notebook, caplog):
    import papermill

    with caplog.at_level(logging.WARNING):
        parameters = papermill.inspect_notebook(str(notebook))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()], caplog.text
    assert "profile" in parameters
    undocumented = [name for name, p in parameters.items() if not p["help"]]
    assert not undocumented, f"{notebook.name}: parameters without a comment: {undocumented}"
