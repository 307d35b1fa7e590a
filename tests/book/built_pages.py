"""What the whole-book tests read from a book built in a copy of the repository: a chapter page's text, and the
check that every chapter was executed without an error (shared by `test_paper_rehearsal.py` and
`test_six_classes.py`)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from helpers.book.build import CHAPTERS


def page_text(copy: Path, chapter: str) -> str:
    """The text of chapter `chapter`'s HTML page in the book built in `copy`, tags removed, spaces collapsed."""
    page = (copy / "_build" / "html" / "book" / "executed" / f"{chapter}.html").read_text()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def assert_every_chapter_executed(copy: Path, log: str) -> None:
    """Every chapter of `_toc.yml` was executed by the build whose driver printed `log`, and its executed notebook
    holds no error output, nothing on stderr, and its page no traceback."""
    for name in CHAPTERS:
        assert f"chapter {name}:" in log, name
        nb = nbformat.read(copy / "book" / "executed" / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        assert not [o.text for o in outputs if o.get("name") == "stderr"], name
        assert "Traceback" not in page_text(copy, name), name
