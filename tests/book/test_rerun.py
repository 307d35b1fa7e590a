"""The "rerun this chapter" box: a papermill command that passes exactly the parameters the build passed."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from helpers.book.build import _prepare_for_book, parameter_defaults, rerun_command, rerun_markdown

DEFAULTS = {"profile": "demo", "frames": "all", "seeds": None, "fold": 0, "interactive": None, "ranks": "8,32,64",
            "centred": False, "data": None}


@pytest.mark.parametrize("parameters", [
    {"profile": "demo"},
    {"profile": "smoke", "interactive": False},
    {"profile": "demo", "seeds": "42,43,44", "frames": "speech", "fold": 2, "interactive": False},
    {"profile": "paper", "data": "/data/IEMOCAP full release", "centred": True, "epochs": 3, "lr": 5e-05},
    {"profile": "demo", "seeds": "42", "data": "True", "model": "None", "fold": 1.5},  # strings -p would convert
    {"profile": "demo", "ranks": [4, 16, 64], "extra": {"a": 1}},  # lists and dicts, as -p NAME [..] gives the book
])
@pytest.mark.parametrize("width", [None, 40])
def test_the_command_passes_exactly_the_parameters_the_build_passed(parameters, width, read_papermill_command):
    command = rerun_command("ranks", parameters, defaults=DEFAULTS, width=width)
    assert (command.count("\n") > 1) == (width is not None)
    env, words, parsed = read_papermill_command(command)
    assert env == {} and words[:5] == [".venv/bin/papermill", "--engine", "helpers", "notebooks/ranks.ipynb",
                                       "ranks-rerun.ipynb"]
    effective = {**DEFAULTS, **parsed}
    assert effective == {**DEFAULTS, **parameters}
    assert all(type(effective[k]) is type(v) for k, v in parameters.items())  # "42" stays a string, 1.5 a float
    assert "profile" in parsed  # always said, even when it is the default
    assert not {k for k, v in parameters.items() if k != "profile" and DEFAULTS.get(k, object()) == v} & set(parsed)
    # a shell reads the same words (lines joined, quotes removed) as the reader above
    echo = f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    shell = subprocess.run(["bash", "-c", command.replace(".venv/bin/papermill", echo, 1)], capture_output=True,
                           text=True, check=True)
    assert json.loads(shell.stdout) == words[1:]


def test_the_command_sets_the_cache_folder_when_the_build_used_another(read_papermill_command):
    command = rerun_command("data", {"profile": "smoke"}, defaults=DEFAULTS,
                            environment={"BTS_CACHE_DIR": "/tmp/a cache"}, width=30)
    assert command.startswith("BTS_CACHE_DIR='/tmp/a cache' \\\n  .venv/bin/papermill ")
    env, _, parsed = read_papermill_command(command)
    assert env == {"BTS_CACHE_DIR": "/tmp/a cache"} and parsed == {"profile": "smoke"}
    shell = subprocess.run(["bash", "-c", command.replace(".venv/bin/papermill", "printenv BTS_CACHE_DIR; :", 1)],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == "/tmp/a cache\n"  # a shell sees an assignment for the command, not a program name


def test_parameter_defaults_are_read_from_the_notebook():
    defaults = parameter_defaults("layer_contributions")
    assert defaults["profile"] == "demo" and defaults["frames"] == "all" and defaults["interactive"] is None
    assert defaults["fold"] == 0


def test_the_box_follows_the_parameters_cells_and_shows_the_command(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("profile = 'demo'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("chapters.setup(profile)")]
    path = tmp_path / "data.ipynb"
    nbformat.write(nb, path)
    command = rerun_command("data", {"profile": "smoke", "interactive": False}, defaults=DEFAULTS)
    _prepare_for_book(path, "data", command)
    cells = nbformat.read(path, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "markdown", "code", "code", "markdown", "code"]
    assert "source-notebooks/data.ipynb" in cells[1].source
    box = cells[4].source
    assert box == rerun_markdown("data", command) and box.startswith("````{admonition} Rerun this chapter")
    assert f"```bash\n{command}\n```" in box
    assert "remove-cell" in cells[2].metadata.tags and "remove-cell" in cells[3].metadata.tags
