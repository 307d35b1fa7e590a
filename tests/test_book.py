"""The whole book on the smoke profile: every chapter through papermill, then jupyter-book, then the pages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.book import CHAPTERS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory, cache_dir, tiny_en_dir):
    """Build the book from a copy of the repository (so the working tree's book/ and _build/ stay untouched)."""
    copy = tmp_path_factory.mktemp("book") / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "_build", ".git", "executed", "__pycache__",
                                                              ".pytest_cache"))
    env = {**os.environ, "BTS_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(copy / "src")}
    result = subprocess.run([sys.executable, "-m", "helpers.book", "--profile", "smoke"], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return copy, result.stdout


def test_every_chapter_executes_without_error_or_widget(built_book):
    copy, log = built_book
    for name in CHAPTERS:
        assert f"chapter {name}:" in log
        nb = nbformat.read(copy / "book" / "executed" / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], name
        assert not [o.text for o in outputs if o.get("name") == "stderr"], name  # no warnings on the pages
        hidden = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
        assert hidden and all("remove-cell" in c.metadata["tags"] for c in hidden), name


FIGURES = {"data": 1, "finetuning": 2, "layer_contributions": 1, "logit_lens": 1, "ranks": 2, "svd": 1, "cka": 1}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_page_holds_its_figures_and_tables(built_book, chapter):
    copy, _ = built_book
    html = (copy / "_build" / "html" / "book" / "executed" / f"{chapter}.html").read_text()
    assert html.count("<img") >= FIGURES.get(chapter, 0)
    assert "<table" in html
    assert "Traceback" not in html
    assert "Run settings" in html
    assert f'href="../../source-notebooks/{chapter}.ipynb"' in html
    assert (copy / "_build" / "html" / "source-notebooks" / f"{chapter}.ipynb").is_file()
    assert f"_sources/book/executed/{chapter}.ipynb" in html  # the download of the executed notebook


def test_scorecard_lists_every_claim_with_a_verdict(built_book):
    copy, _ = built_book
    text = re.sub(r"<[^>]+>", " ", (copy / "_build" / "html" / "book" / "executed" / "scorecard.html").read_text())
    claims = ["LoRA beats the frozen encoder", "LoRA UAR grows with model size", "near zero early",
              "attention grows more than the MLP", "Cosine differences grow negative", "minimum near 85% depth",
              "KL stays high, then drops late", "prediction overlap rises late", "Cluster separation grows with rank",
              "Rank sensitivity", "LoRA_A activations", "LoRA_A gradients", "LoRA_B activations", "LoRA_B gradients",
              "Forward CKA", "Gradient CKA"]
    for claim in claims:
        assert claim in text, claim
    nb = nbformat.read(copy / "book" / "executed" / "scorecard.ipynb", as_version=4)
    table_html = next(o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if "<th>verdict</th>" in o.get("data", {}).get("text/html", ""))
    verdicts = re.findall(r"<td>(holds|does not hold|not testable)</td>", table_html)
    assert len(verdicts) == len(claims)


def test_chapter_timings_are_recorded(built_book):
    copy, _ = built_book
    timings = json.loads((copy / "book" / "executed" / "timings.json").read_text())
    assert set(timings) == set(CHAPTERS) and all(t > 0 for t in timings.values())
