"""A 4-task smoke sweep (LoRA and frozen, 2 folds each) on 2 Ray workers vs the local executor, in one run.

Both variants run the same tasks on warm caches (corpus, features and frozen-encoder outputs are made by an untimed
warm-up sweep); they differ only in the seed, so neither finds the other's folds finished. The Ray time includes
starting the local Ray instance and its worker processes; each Ray task gets 1 CPU thread, the local executor all.

    python benchmarks/bench_sweep.py [--epochs 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from helpers.book.reproducibility import write_benchmark
from helpers.training.sweep import SweepSpec, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20, help="per task: enough work that start-up is not all")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray

    spec = lambda seed: SweepSpec(profile="smoke", overrides=dict(epochs=args.epochs, seed=seed))  # noqa: E731
    with tempfile.TemporaryDirectory() as cache:
        run_sweep(spec(0), executor="local", cache_dir=cache)  # warm-up: corpus, features, frozen outputs
        start = time.perf_counter()
        local = run_sweep(spec(1), executor="local", cache_dir=cache)
        local_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
        init_seconds = time.perf_counter() - start
        try:
            remote = run_sweep(spec(2), executor="ray", cache_dir=cache)
            ray_seconds = time.perf_counter() - start  # Ray's start-up and its cold workers included, shutdown not
        finally:
            ray.shutdown()
    assert local.complete and remote.complete, (local.tasks, remote.tasks)
    lines = [f"smoke profile, {len(local.tasks)} fold tasks (LoRA and frozen x 2 folds), {args.epochs} epochs, "
             f"{os.cpu_count()} CPU cores (the local executor uses {torch.get_num_threads()} threads); Ray: "
             f"{args.workers} workers of 1 CPU each", "",
             "| executor | wall seconds | ratio to local |", "|---|---|---|",
             f"| local (sequential, in-process) | {local_seconds:.1f} | 1.0x |",
             f"| ray, {args.workers} workers (Ray start-up {init_seconds:.1f} s included) | {ray_seconds:.1f} | "
             f"{local_seconds / ray_seconds:.2f}x |",
             f"| ray without ray.init (its workers still start cold) | {ray_seconds - init_seconds:.1f} | "
             f"{local_seconds / (ray_seconds - init_seconds):.2f}x |"]
    write_benchmark("sweep", lines)


if __name__ == "__main__":
    main()
