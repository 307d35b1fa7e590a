"""helpers.io: atomic files, checked reads, locks, fingerprints and the one comma-list parser."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.io import (
    CorruptCacheError,
    FileLock,
    atomic_csv,
    atomic_directory,
    atomic_json,
    atomic_tensors,
    check_tensors,
    fingerprint,
    load_tensors_checked,
    load_torch_checked,
    parse_list,
    read_cached,
    read_json_checked,
    remove_stale_temporaries,
    set_aside,
    temporary_sibling,
)


def test_parse_list_reads_text_lists_and_scalars():
    assert parse_list("8,32,64", int) == (8, 32, 64)
    assert parse_list(" q_proj , v_proj ,") == ("q_proj", "v_proj")
    assert parse_list([4, 16], int) == (4, 16)
    assert parse_list(8, int) == (8,)
    with pytest.raises(ValueError, match="ranks='8,x'.*'x' is not a int"):
        parse_list("8,x", int, name="ranks")


def test_fingerprint_is_order_free_for_dicts_and_sensitive_to_values():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint([1], length=12)) == 12


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    atomic_json(tmp_path / "a.json", {"x": np.float32(1.5)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5}
    atomic_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    atomic_tensors(tmp_path / "w.safetensors", {"w": torch.arange(6).reshape(2, 3).T})
    atomic_tensors(tmp_path / "n.safetensors", {"n": np.ones((2, 2))}, metadata={"k": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "n.safetensors", "t.csv", "w.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    atomic_json(target, {"old": 1})
    with pytest.raises(TypeError):
        atomic_json(target, {"bad": object()}, default=None)
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_temporary_siblings_are_unique_per_write(tmp_path):
    assert temporary_sibling(tmp_path / "x") != temporary_sibling(tmp_path / "x")


# ------------------------------------------------------------------------------------------------------------------
# checked reads: a damaged file is named, set aside and rebuilt


def _tensors_file(path):
    atomic_tensors(path, {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(2)},
                   metadata={"k": "v"})
    return path


def test_read_json_checked_names_a_file_that_does_not_parse(tmp_path):
    good, bad, empty = tmp_path / "good.json", tmp_path / "result.json", tmp_path / "empty.json"
    good.write_text('{"a": [1, 2]}')
    bad.write_text('{"test_uar": 0.5, "hist')  # cut mid-write
    empty.write_text("")
    assert read_json_checked(good) == {"a": [1, 2]}
    for path in (bad, empty):
        with pytest.raises(CorruptCacheError, match=f"{path.name}: not valid JSON") as err:
            read_json_checked(path)
        assert err.value.path == path and isinstance(err.value, ValueError)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-10], "the header declares 200 bytes but the file holds 190"),  # truncated data
    (lambda b: b + b"\0" * 4, "the header declares 200 bytes but the file holds 204"),  # padded
    (lambda b: b[:60], "the header claims 136 bytes but the file holds 60"),  # cut inside the header
    (lambda b: b"", "0 bytes, too short"),  # empty
    (lambda b: b[:8] + b"{" * 136 + b[144:], "header does not parse"),
])
def test_check_tensors_refuses_damaged_safetensors(tmp_path, damage, message):
    path = _tensors_file(tmp_path / "w.safetensors")
    header = check_tensors(path)
    assert header["w"]["shape"] == [3, 4] and header["__metadata__"] == {"k": "v"}
    assert path.stat().st_size == 8 + 136 + 56  # length, header (padded to 8 bytes), 2 + 12 float32
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptCacheError, match=message) as err:
        load_tensors_checked(path)
    assert err.value.path == path and str(path) in str(err.value)


def test_check_tensors_refuses_a_header_whose_offsets_do_not_fit_the_shape(tmp_path):
    path = _tensors_file(tmp_path / "w.safetensors")
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["w"]["shape"] = [3, 5]  # claims 60 bytes where 48 are stored
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(text) == n
    path.write_bytes(raw[:8] + text + raw[8 + n:])
    with pytest.raises(CorruptCacheError, match="tensor 'w' spans bytes"):
        check_tensors(path)


def test_load_tensors_checked_returns_the_saved_tensors(tmp_path):
    path = _tensors_file(tmp_path / "w.safetensors")
    loaded = load_tensors_checked(path)
    assert torch.equal(loaded["w"], torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert np.array_equal(load_tensors_checked(path, framework="numpy")["b"], np.ones(2, np.float32))


class _Payload:
    """A pickle that would write a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_torch_checked_refuses_truncated_empty_and_non_weights_files(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"epoch": 3, "rng": torch.arange(4)}, path)
    state = load_torch_checked(path)
    assert state["epoch"] == 3 and torch.equal(state["rng"], torch.arange(4))
    raw = path.read_bytes()
    for damaged in (raw[: len(raw) // 2], b""):
        path.write_bytes(damaged)
        with pytest.raises(CorruptCacheError, match="state.pt") as err:
            load_torch_checked(path)
        assert err.value.path == path
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, path)
    with pytest.raises(CorruptCacheError, match="UnpicklingError"):
        load_torch_checked(path)
    assert not marker.exists()  # never unpickled


def test_set_aside_renames_and_warns_with_both_names(tmp_path, caplog):
    path = tmp_path / "result.json"
    path.write_text("{")
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        aside = set_aside(path, reason="not valid JSON")
    assert not path.exists() and aside.read_text() == "{"
    assert aside.parent == tmp_path and aside.name.startswith("result.json.corrupt-") and aside.name.endswith("Z")
    assert str(path) in caplog.text and aside.name in caplog.text and "not valid JSON" in caplog.text
    assert set_aside(path) is None  # already gone: nothing to do
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    assert set_aside(folder).is_dir() and not folder.exists()


def test_read_cached_rebuilds_a_damaged_file_once_and_reads_a_good_one(tmp_path, caplog):
    path = tmp_path / "f.safetensors"
    built = []

    def rebuild():
        built.append(1)
        _tensors_file(path)
        return load_tensors_checked(path)

    assert torch.equal(read_cached(path, load_tensors_checked, rebuild)["b"], torch.ones(2))  # missing: built
    assert torch.equal(read_cached(path, load_tensors_checked, rebuild)["b"], torch.ones(2))  # good: read
    assert len(built) == 1
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        assert torch.equal(read_cached(path, load_tensors_checked, rebuild)["b"], torch.ones(2))
    assert len(built) == 2 and check_tensors(path)
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == ["f.safetensors"]
    assert "f.safetensors" in caplog.text and "moved aside" in caplog.text


# ------------------------------------------------------------------------------------------------------------------
# one writer at a time: locks, stale locks, temporaries of killed writers


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(path, *, pid, host=None, age=0.0):
    path.write_text(json.dumps(dict(pid=pid, host=host or platform.node(), token="theirs", what="a test",
                                    started="2026-01-01T00:00:00+00:00")))
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))


def test_a_lock_held_by_a_live_process_blocks_and_names_the_holder(tmp_path, caplog):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path = tmp_path / "fold.lock"
        _write_lock(lock_path, pid=holder.pid, age=10.0)
        with caplog.at_level(logging.WARNING, logger="helpers.io"):
            with pytest.raises(TimeoutError, match=f"{lock_path}: still held by pid {holder.pid}"):
                FileLock(lock_path, timeout=0.3, poll=0.05).acquire()
        assert f"pid {holder.pid}" in caplog.text and "waiting" in caplog.text
        assert json.loads(lock_path.read_text())["token"] == "theirs"  # left alone
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="helpers.io"):  # the holder died: its lock is stale
        with FileLock(lock_path, timeout=5, poll=0.05) as lock:
            record = json.loads(lock_path.read_text())
            assert record["pid"] == os.getpid() and record["host"] == platform.node() and record["token"] == lock.token
    assert "taking over a stale lock" in caplog.text and not lock_path.exists()


def test_a_lock_of_a_dead_pid_is_taken_over_at_once_and_another_hosts_only_when_old(tmp_path):
    lock_path = tmp_path / "x.lock"
    _write_lock(lock_path, pid=_dead_pid())
    start = time.monotonic()
    with FileLock(lock_path, timeout=5, poll=0.05):
        assert time.monotonic() - start < 1.0
    _write_lock(lock_path, pid=1, host="elsewhere", age=30.0)  # pid 1 lives here, but the lock is another host's
    with pytest.raises(TimeoutError):
        FileLock(lock_path, timeout=0.2, poll=0.05, stale_after=3600).acquire()
    _write_lock(lock_path, pid=1, host="elsewhere", age=7200.0)  # untouched for 2 h: its holder is gone
    with FileLock(lock_path, timeout=5, poll=0.05, stale_after=3600):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()


def test_a_second_holder_waits_for_the_first_and_the_heartbeat_keeps_it_fresh(tmp_path):
    lock_path, events = tmp_path / "f.lock", []

    def hold():
        with FileLock(lock_path, heartbeat=0.05):
            os.utime(lock_path, (0, 0))  # make it look old: the heartbeat must freshen it
            events.append("first in")
            time.sleep(0.6)
            events.append("first out")

    thread = threading.Thread(target=hold)
    thread.start()
    while not events:
        time.sleep(0.01)
    time.sleep(0.2)
    assert time.time() - lock_path.stat().st_mtime < 10  # touched again by the heartbeat
    with FileLock(lock_path, poll=0.02, stale_after=5) as second:
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"] and second.waited > 0.2


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    lock_path = tmp_path / "f.lock"
    lock = FileLock(lock_path).acquire()
    _write_lock(lock_path, pid=os.getpid())  # taken over meanwhile (e.g. after a long suspend)
    lock.release()
    assert json.loads(lock_path.read_text())["token"] == "theirs"


def test_remove_stale_temporaries_removes_only_what_killed_writers_left(tmp_path, caplog):
    host, dead, old = platform.node(), _dead_pid(), time.time() - 2 * 24 * 3600
    names = {
        f".features.safetensors.{host}.{dead}.0123abcd.tmp": True,  # this host, writer dead
        f".demo-abc.{host}.{dead}.89abcdef.tmp": True,  # a folder, writer dead
        f".x.safetensors.{host}.{os.getpid()}.0123abcd.tmp": False,  # writer alive (this process)
        f".x.safetensors.other-host.{dead}.0123abcd.tmp": False,  # another host's, recent
        ".tmpk2j3h4": False,  # an older version's name, recent
        ".demo-abc-old": True,  # an older version's build folder, two days old
        "features.safetensors": False,  # a real cache file
        "result.json.corrupt-20260101T000000Z": False,
    }
    for name in names:
        path = tmp_path / name
        if "demo" in name:
            path.mkdir()
            (path / "a.wav").write_bytes(b"x")
        else:
            path.write_bytes(b"x")
    os.utime(tmp_path / ".demo-abc-old", (old, old))
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, gone in names.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, gone in names.items() if not gone)
    assert "removed 3 temporaries" in caplog.text
    os.utime(tmp_path / ".tmpk2j3h4", (old, old))
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".tmpk2j3h4"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_directory_names_its_writer_so_a_killed_build_is_cleaned(tmp_path):
    with atomic_directory(tmp_path / "demo-x") as tmp:
        (tmp / "a").write_text("1")
        assert tmp.name.startswith(f".demo-x.{platform.node()}.{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert remove_stale_temporaries(tmp_path) == []  # its writer is alive
    assert (tmp_path / "demo-x" / "a").read_text() == "1" and not tmp.exists()
