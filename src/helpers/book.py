"""Book driver: execute each chapter notebook with papermill into `book/executed/`, then build the HTML book.

`python -m helpers.book --profile demo` is what `make book` runs. Chapters are the notebooks listed in `CHAPTERS`
(source in `notebooks/`); the executed copies, not the sources, are what `_toc.yml` points at.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["CHAPTERS", "execute_chapter", "build_book", "main"]

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS: tuple[str, ...] = ()  # notebook stems in reading order; filled as chapters land


def execute_chapter(name: str, *, profile: str, parameters: dict | None = None, root: Path = ROOT) -> Path:
    """Run `notebooks/<name>.ipynb` with papermill; the executed copy goes to `book/executed/<name>.ipynb`."""
    import papermill

    source = root / "notebooks" / f"{name}.ipynb"
    target = root / "book" / "executed" / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(target), parameters={"profile": profile, **(parameters or {})},
                               cwd=str(root), progress_bar=False)
    return target


def build_book(root: Path = ROOT) -> Path:
    """`jupyter-book build` with warnings as errors; returns the path of the HTML index."""
    subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--warningiserror", "--keep-going"],
                   check=True)
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"the book build finished but {index} is missing")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.book", description=__doc__)
    parser.add_argument("--profile", default="demo", help="run profile passed to every chapter (default: demo)")
    parser.add_argument("--chapter", action="append", help="execute only this chapter (repeatable)")
    args = parser.parse_args(argv)
    for name in args.chapter or CHAPTERS:
        start = time.perf_counter()
        execute_chapter(name, profile=args.profile)
        print(f"chapter {name}: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    index = build_book()
    print(f"book built in {time.perf_counter() - start:.1f} s: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
