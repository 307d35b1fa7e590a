"""Files: the cache folder, atomic writes, checked reads, locks and content fingerprints, one implementation used
everywhere.

Every file a run or a cache produces is written to a temporary sibling unique to that write (host, pid, random
suffix) and renamed into place, so readers see the old file or the new one, never half of one, and concurrent
writers (sweep tasks on several hosts) never share a temporary file. Every cached file is checked when it is read
back (`read_json_checked`, `load_tensors_checked`, `load_torch_checked`): one that was truncated or damaged anyway
(a full disk, a copy cut short) raises `CorruptCacheError` naming it, and `read_cached` sets it aside as
`<name>.corrupt-<UTC time>` and rebuilds it, so a rerun recovers without anyone deleting files. `FileLock` lets one
process at a time build a shared thing (a fold, a converted model); `remove_stale_temporaries` clears what killed
writers left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import platform
import re
import shutil
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

__all__ = ["CACHE_ENV", "cache_root", "atomic_directory", "temporary_sibling", "atomic_write_text", "atomic_json",
           "atomic_csv", "atomic_tensors", "fingerprint", "file_sha256", "parse_list", "CorruptCacheError",
           "read_json_checked", "check_tensors", "load_tensors_checked", "load_torch_checked", "set_aside",
           "read_cached", "FileLock", "remove_stale_temporaries"]

CACHE_ENV = "BTS_CACHE_DIR"
logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    tmp = temporary_sibling(target)  # names its writer, so `remove_stale_temporaries` knows when it is orphaned
    tmp.mkdir()
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


# ----------------------------------------------------------------------------------------------------------------
# Checked reads: a damaged cache file is named, set aside and rebuilt


class CorruptCacheError(ValueError):
    """A cached file that cannot be read back whole (truncated, empty, garbled); `path` names it."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}. The file is damaged (an interrupted copy, a full disk?); the project "
                         "sets such a file aside and rebuilds it on its next read; delete it to rebuild it now")


def read_json_checked(path: str | Path) -> Any:
    """The JSON in `path`; a file that does not parse raises `CorruptCacheError` naming it (not a bare
    JSONDecodeError that names nothing)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptCacheError(path, f"not valid JSON ({err})") from None


_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def check_tensors(path: str | Path) -> dict:
    """The header of the safetensors file `path` after checking it describes the file exactly: a header that
    parses, every tensor's bytes matching its dtype and shape, and data ending where the file ends (a truncated
    or padded file fails). Reads only the header, so it is cheap enough to run on every read."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCacheError(path, f"{size} bytes, too short for a safetensors header")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise CorruptCacheError(path, f"the header claims {n} bytes but the file holds {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptCacheError(path, "its safetensors header does not parse") from None
    if not isinstance(header, dict):
        raise CorruptCacheError(path, "its safetensors header is not a table of tensors")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
        except (KeyError, TypeError, ValueError):
            raise CorruptCacheError(path, f"tensor {name!r} has no valid shape and offsets in the header") from None
        width = _DTYPE_BYTES.get(info.get("dtype"))
        if stop < begin or (width is not None and stop - begin != count * width):
            raise CorruptCacheError(path, f"tensor {name!r} spans bytes {begin}-{stop}, which does not fit its "
                                          f"dtype {info.get('dtype')} and shape {info['shape']}")
        end = max(end, stop)
    if 8 + n + end != size:
        raise CorruptCacheError(path, f"the header declares {8 + n + end} bytes but the file holds {size}")
    return header


def load_tensors_checked(path: str | Path, *, framework: Literal["pt", "numpy"] = "pt") -> dict:
    """Every tensor of the safetensors file `path` (torch tensors, or numpy arrays with `framework="numpy"`), after
    `check_tensors`; any damage raises `CorruptCacheError` naming the file."""
    from safetensors import SafetensorError

    check_tensors(path)
    if framework == "numpy":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise CorruptCacheError(path, f"safetensors cannot read it ({err})") from None


def load_torch_checked(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` (tensors and plain containers only: never arbitrary pickled code);
    a truncated or garbled file raises `CorruptCacheError` naming it."""
    import torch

    path = Path(path)
    if path.stat().st_size == 0:
        raise CorruptCacheError(path, "the file is empty")
    try:
        return torch.load(path, weights_only=True)
    except (EOFError, pickle.UnpicklingError, RuntimeError, ValueError, KeyError) as err:
        # a cut zip archive is a RuntimeError; a record that is not weights-only data an UnpicklingError
        raise CorruptCacheError(path, f"torch cannot read it ({type(err).__name__}: {str(err).splitlines()[0]})"
                                ) from None


def set_aside(path: str | Path, *, reason: str = "corrupt") -> Path | None:
    """Rename a bad file or folder to `<name>.corrupt-<UTC time>` beside it (kept for inspection, never read again)
    and log a warning naming both; returns the new path, or None when `path` was already gone (another process set
    it aside first)."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    logger.warning("%s: %s; moved aside to %s and rebuilt", path, reason, aside.name)
    return aside


def read_cached(path: str | Path, reader: Callable[[Path], T], rebuild: Callable[[], T]) -> T:
    """`reader(path)` if `path` exists and reads back whole, else `rebuild()` (which writes it again): a damaged
    file (`CorruptCacheError`) is set aside with a warning naming it, then rebuilt, so a rerun recovers by itself."""
    path = Path(path)
    if path.exists():
        try:
            return reader(path)
        except CorruptCacheError as err:
            set_aside(path, reason=err.reason)
    return rebuild()


# ----------------------------------------------------------------------------------------------------------------
# One writer at a time: lock files and the temporaries of killed writers


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """An exclusive lock file held by one process on any host that sees the folder, as a context manager.

    The file is created with O_CREAT | O_EXCL and holds the holder's pid, host and start time; while held, a
    background thread touches it every `heartbeat` seconds. A lock is stale, and taken over with a warning, when its
    holder's pid is dead on this host, or when it was not touched for `stale_after` seconds (a holder on another
    host that died). A waiter says once whom it waits for; `timeout` (seconds, None: wait for ever) raises
    `TimeoutError` naming the lock file.

    >>> with FileLock(path, what="fold speaker-S01"):  # doctest: +SKIP
    ...     ...  # only one process at a time runs this
    """

    def __init__(self, path: str | Path, *, what: str = "", stale_after: float = 3600.0, poll: float = 0.5,
                 timeout: float | None = None, heartbeat: float | None = None):
        self.path, self.what = Path(path), what or Path(path).name
        self.stale_after, self.poll, self.timeout = stale_after, poll, timeout
        self.heartbeat = heartbeat if heartbeat is not None else min(60.0, stale_after / 4)
        self.token = uuid.uuid4().hex
        self.waited = 0.0  # seconds spent waiting for another holder (0.0: the lock was free)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def holder(self) -> dict | None:
        """The record of whoever holds the lock now ({pid, host, started, token}), {} if unreadable, None if free."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
            return record if isinstance(record, dict) else {}
        except json.JSONDecodeError:
            return {}

    def stale(self, record: dict) -> bool:
        """Whether the holder `record` is gone: its pid is dead on this host, or the file went untouched for
        `stale_after` seconds (an unreadable record gets a 10 s grace: its writer may be between open and write)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if not record:
            return age > min(10.0, self.stale_after)
        if record.get("host") == platform.node() and not _pid_alive(int(record.get("pid", -1))):
            return True
        return age > self.stale_after

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        record = dict(pid=os.getpid(), host=platform.node(), token=self.token, what=self.what,
                      started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return True

    def _take_over(self, record: dict) -> None:
        """Remove a stale lock, unless it changed hands since `record` was read (then leave it to its new holder)."""
        aside = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text() or "{}")
        except (json.JSONDecodeError, OSError):
            moved = {}
        if moved.get("token") != record.get("token"):  # a live holder's fresh lock: give it back if still free
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        else:
            logger.warning("%s: taking over a stale lock of %s (pid %s on %s since %s, gone)", self.path,
                           record.get("what", "?"), record.get("pid", "?"), record.get("host", "?"),
                           record.get("started", "?"))
        aside.unlink(missing_ok=True)

    def acquire(self) -> "FileLock":
        """Wait until the lock is free (or stale), then hold it."""
        start, told = time.monotonic(), False
        while not self._try_create():
            record = self.holder()
            if record is None:
                continue
            if self.stale(record):
                self._take_over(record)
                continue
            if not told:
                logger.warning("%s: waiting, another process holds it (pid %s on %s since %s); if that process is "
                               "gone for good, delete %s", self.what, record.get("pid", "?"), record.get("host", "?"),
                               record.get("started", "?"), self.path)
                told = True
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                raise TimeoutError(f"{self.path}: still held by pid {record.get('pid', '?')} on "
                                   f"{record.get('host', '?')} after {self.timeout:g} s; delete the file if that "
                                   "process is gone")
            time.sleep(self.poll)
        self.waited = time.monotonic() - start if told else 0.0
        self._stop.clear()
        self._beat = threading.Thread(target=self._keep_fresh, name=f"lock {self.path.name}", daemon=True)
        self._beat.start()
        return self

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still this holder's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        record = self.holder()
        if record and record.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_TEMPORARY = re.compile(r"\.(?P<pid>\d+)\.[0-9a-f]{8}\.(tmp|stale)$")  # temporary_sibling's and _take_over's names
_LEGACY_TEMPORARY = (".tmp", ".demo-", ".tiny.en-")  # tempfile names and the mkdtemp folders of older versions


def remove_stale_temporaries(folder: str | Path, *, older_than: float = 24 * 3600.0) -> list[Path]:
    """Delete the temporary files and folders in `folder` (not below it) whose writer is gone: a killed process
    leaves them behind for ever. A name from `temporary_sibling` on this host is removed once its pid is dead;
    anything else (another host's, or an older version's `.tmp*` / `.demo-*` names) only after `older_than`
    seconds, the safety age. Returns and logs what it removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        name = entry.name
        match = _TEMPORARY.search(name) if name.startswith(".") else None
        if match is None and not name.startswith(_LEGACY_TEMPORARY):
            continue
        try:
            age = time.time() - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        ours = match is not None and name[:match.start()].endswith("." + platform.node())
        gone = ours and not _pid_alive(int(match["pid"])) and int(match["pid"]) != os.getpid()
        if not (gone or age > older_than):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        logger.warning("%s: removed %d temporaries left by killed writers: %s", folder, len(removed),
                       ", ".join(p.name for p in removed))
    return removed
