"""Executing chapter notebooks headless without hangs: a papermill engine whose kernel client never waits on a
message channel without a time limit.

nbclient (under papermill and nbconvert) waits for kernel messages with `socket.poll(None)` on asyncio ZeroMQ
sockets, and on a busy machine with many messages in flight (widget comms, progress bars) a run could stop for
good with the kernel idle (issue 12: 4 of 10 runs of a chapter with widgets hung under load, with ipykernel 7.4
and 6.31 alike). This engine waits in slices of `POLL_SECONDS` instead (0 of 16 such runs hung). `make book` uses
it; from the shell: `papermill --engine helpers ...` (registered by this package's entry point).
"""

from __future__ import annotations

import functools
from queue import Empty

__all__ = ["ENGINE_NAME", "POLL_SECONDS", "bounded_get_msg", "register_engine"]  # + BoundedPollEngine, built lazily

ENGINE_NAME = "helpers"
POLL_SECONDS = 1.0


def bounded_get_msg(get_msg, *, slice_seconds: float = POLL_SECONDS):
    """Wrap a channel's async `get_msg(timeout)` so that `timeout=None` polls in slices instead of forever."""

    @functools.wraps(get_msg)
    async def wrapper(timeout: float | None = None):
        if timeout is not None:
            return await get_msg(timeout=timeout)
        while True:
            try:
                return await get_msg(timeout=slice_seconds)
            except Empty:
                continue

    return wrapper


@functools.cache
def _engine_class():
    # built on first use: papermill imports this module from its own import (the entry point), so a papermill
    # import at the top of this module would be circular
    from nbclient.util import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine
    from papermill.log import logger

    class BoundedPollClient(PapermillNotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            for channel in (kc.shell_channel, kc.iopub_channel):
                channel.get_msg = bounded_get_msg(channel.get_msg)
            return kc

        # nbclient binds its sync wrapper to its own coroutine when the class is made: rebind it to the one above
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    class BoundedPollEngine(NBClientEngine):
        """papermill's default engine, with a kernel client that waits for messages in bounded slices."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs.pop("input_path", None)
            kwargs.pop("startup_timeout", None)
            timeout = kwargs.pop("timeout", None)
            timeout = execution_timeout or timeout  # papermill's flag wins over an engine keyword
            client = BoundedPollClient(nb_man, timeout=timeout, startup_timeout=start_timeout,
                                       kernel_name=kernel_name, log=logger, log_output=log_output,
                                       stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
            return client.execute()

    return BoundedPollEngine


def __getattr__(name: str):
    if name == "BoundedPollEngine":  # the entry point's target
        return _engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_engine() -> str:
    """Register the engine with papermill in this process and return its name (`papermill --engine helpers` finds
    it through the package's entry point)."""
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE_NAME, _engine_class())
    return ENGINE_NAME
