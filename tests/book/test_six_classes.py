"""A run with six classes (the demo corpus's four and fear and disgust, synthesised on request) trains, evaluates
and builds the smoke book with every chapter: nothing downstream assumes the paper's four classes (issue 17)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from built_pages import assert_every_chapter_executed, page_text

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SIX = ("anger", "happiness", "neutral", "sadness", "fear", "disgust")


@pytest.fixture(scope="module")
def six_class_run(cache_dir, tiny_en_dir):
    from helpers.training.runs import run_cross_validation

    return run_cross_validation("smoke", cache_dir=cache_dir, classes=",".join(SIX))


@pytest.fixture(scope="module")
def six_class_book(tmp_path_factory, cache_dir, six_class_run):
    """The smoke book built with `-p classes <six>` from a copy of the repository, on the cache the run above
    trained in (so the book reuses that run): (the copy's root, the build's log)."""
    copy = tmp_path_factory.mktemp("book6") / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "_build", ".git", "executed", "__pycache__",
                                                              ".pytest_cache"))
    env = {**os.environ, "BTS_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(copy / "src")}
    result = subprocess.run([sys.executable, "-m", "helpers.book", "--profile", "smoke", "-p", "classes",
                             ",".join(SIX)], cwd=copy, env=env, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return copy, result.stdout


def test_six_class_run_trains_and_evaluates_six_outputs(six_class_run):
    from helpers.models.classifier import read_spec
    from helpers.training.runs import RunResults

    run = six_class_run
    assert run.classes == SIX and len(run.folds) == 2
    assert RunResults.read(run.run_dir).classes == SIX
    assert json.loads((run.run_dir / "run.json").read_text())["classes"] == list(SIX)
    for fold in run.folds["fold"]:
        result = json.loads((run.run_dir / fold / "result.json").read_text())
        assert result["classes"] == list(SIX)
        confusion = result["test_confusion"]
        assert len(confusion) == 6 and all(len(r) == 6 for r in confusion)
        assert sum(map(sum, confusion)) == result["n_test"]
        assert [sum(r) for r in confusion] == [result["n_test"] // 6] * 6  # each held-out speaker says all six
        assert read_spec(run.run_dir / fold / "model").labels == SIX
    assert 0 <= run.summary.set_index("metric").loc["uar", "mean"] <= 1


def test_every_chapter_of_the_six_class_book_executes_and_says_six(six_class_book):
    copy, log = six_class_book
    assert_every_chapter_executed(copy, log)
    data = page_text(copy, "data")
    assert "in 6 classes" in data and "fear (8 clips), disgust (8 clips)" in data
    assert "Chance UAR is 1/6 = 0.167" in data and "Left out. Nothing" in data and "chance 0.17" in data
    assert "Chance is 0.167" in page_text(copy, "finetuning")
    executed = nbformat.read(copy / "book" / "executed" / "finetuning.ipynb", as_version=4)
    rerun = next(c.source for c in executed.cells if "Rerun this chapter" in c.source)
    assert "-p classes anger,happiness,neutral,sadness,fear,disgust" in rerun
    scorecard = page_text(copy, "scorecard")
    assert "Rank sensitivity: neutral" in scorecard
