"""Fixtures of the book tests: the smoke book built once per test session (the build, browser and rerun tests
share it), and papermill's own reading of a printed command."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, cache_dir, tiny_en_dir):
    """Build the smoke book from a copy of the repository (so the working tree's book/ and _build/ stay untouched);
    (the copy's root, the build's log)."""
    copy = tmp_path_factory.mktemp("book") / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "_build", ".git", "executed", "__pycache__",
                                                              ".pytest_cache"))
    env = {**os.environ, "BTS_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(copy / "src")}
    result = subprocess.run([sys.executable, "-m", "helpers.book", "--profile", "smoke"], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return copy, result.stdout


@pytest.fixture
def read_papermill_command(monkeypatch):
    """A reader of shell commands such as `BTS_CACHE_DIR=/c .venv/bin/papermill --engine helpers in.ipynb
    out.ipynb -p profile demo`: (environment prefix, the words, the parameters papermill's own command line would
    pass to the execution), through papermill's command line with the execution itself replaced."""
    import papermill.cli
    from click.testing import CliRunner

    seen = {}
    monkeypatch.setattr(papermill.cli, "execute_notebook", lambda **kwargs: seen.update(kwargs))

    def read(command: str) -> tuple[dict[str, str], list[str], dict]:
        words = shlex.split(command.replace("\\\n", ""))  # a backslash-newline joins lines, as in a shell
        env = {}
        while words and "=" in words[0] and not words[0].startswith("-"):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        assert words and words[0].endswith("papermill"), command
        seen.clear()
        result = CliRunner().invoke(papermill.cli.papermill, words[1:])
        assert result.exit_code == 0, (command, result.output, result.exception)
        return env, words, seen["parameters"]

    return read
