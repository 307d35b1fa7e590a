"""How long the demo corpus takes to synthesize and write, from nothing, in a throw-away cache.

    python benchmarks/bench_demo_corpus.py [--speakers 12] [--clips 6]
"""

import argparse
import tempfile
import time

from helpers.book.reproducibility import write_benchmark
from helpers.data.demo_corpus import DemoCorpusSettings, build_demo_corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=DemoCorpusSettings.n_speakers)
    parser.add_argument("--clips", type=int, default=DemoCorpusSettings.clips_per_speaker_emotion)
    args = parser.parse_args()
    settings = DemoCorpusSettings(n_speakers=args.speakers, clips_per_speaker_emotion=args.clips)
    n = settings.n_speakers * 4 * settings.clips_per_speaker_emotion
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        build_demo_corpus(settings, cache_dir=cache)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        build_demo_corpus(settings, cache_dir=cache)
        warm = time.perf_counter() - start
    table = (f"| clips | first build (s) | clips/s | cached reuse (s) |\n|---|---|---|---|\n"
             f"| {n} | {cold:.2f} | {n / cold:.0f} | {warm:.4f} |")
    write_benchmark("demo_corpus", table)


if __name__ == "__main__":  # synthesis runs in a spawned process, which re-imports this file
    main()
