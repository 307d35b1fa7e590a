"""Shared fixtures: an isolated cache per test session, real tiny.en converted once, and no network."""

from __future__ import annotations

import os
import socket

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
        raise OSError(f"tests run offline: refused a connection to {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    socket.socket.connect = _loopback_only
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """A fresh project cache for this test session (so tests see what a fresh clone sees)."""
    path = tmp_path_factory.mktemp("bts-cache")
    os.environ["BTS_CACHE_DIR"] = str(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_en_dir(cache_dir):
    from helpers.models.weights import convert_tiny_en

    return convert_tiny_en(cache_dir=cache_dir)


@pytest.fixture(scope="session")
def spoken():
    """Two synthesized sentences that Whisper tiny.en transcribes word for word, at 16 kHz."""
    from helpers.data.speech_synthesis import Prosody, synthesize_batch

    texts = ["I never said she stole my money.", "Please open the window before the meeting starts."]
    return texts, synthesize_batch([(t, Prosody(voice="en-us", rate=150)) for t in texts])
