"""Command line: `python -m helpers <command> ...`.

  corpus   read a corpus (the demo corpus, an IEMOCAP release or a CSV manifest), validate it, print its counts
  train    cross-validated training and evaluation (`python -m helpers train --profile demo --mode lora`)
  sweep    the folds of a grid of runs (models x modes x protocols x ranks) as tasks, here or on a Ray cluster
"""

from __future__ import annotations

import argparse
import json
import sys


def _corpus(args: argparse.Namespace) -> int:
    from .corpora import class_speaker_counts, read_iemocap, read_manifest, validate_corpus
    from .demo_corpus import DemoCorpusSettings, load_demo_corpus
    from .protocols import fold_table, make_folds

    if args.iemocap:
        table = read_iemocap(args.iemocap)
    elif args.manifest:
        table = read_manifest(args.manifest, label_map=json.loads(args.label_map) if args.label_map else None)
        if table.attrs.get("dropped_labels"):
            print(f"dropped (label not mapped): {table.attrs['dropped_labels']}")
    else:
        table = load_demo_corpus(DemoCorpusSettings(seed=args.seed))
        print("demo corpus: synthetic espeak-ng voices; its numbers say nothing about human emotion")
    table, report = validate_corpus(table, on_bad=args.on_bad)
    print(report.summary())
    print(class_speaker_counts(table).to_string())
    print(fold_table(make_folds(table, args.protocol), table).to_string(index=False))
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import RunConfig
    from .training import run_cross_validation

    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name != "profile"}
    results = run_cross_validation(args.profile, cache_dir=args.cache_dir, **overrides)
    print(f"results: {results.run_dir}")
    print(results.summary.to_string(index=False))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import RunConfig
    from .sweep import SweepSpec, run_sweep

    grid = ("model", "mode", "protocol", "rank")
    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig)
                 if f.name not in ("profile", *grid) and getattr(args, f.name) is not None}
    spec = SweepSpec(profile=args.profile, models=args.models or (), modes=args.modes,
                     protocols=args.protocols or (), ranks=args.ranks or (), overrides=overrides)
    report = run_sweep(spec, executor=args.executor, address=args.address, retries=args.retries,
                       gpus_per_task=args.gpus_per_task, cpus_per_task=args.cpus_per_task, cache_dir=args.cache_dir)
    print(report.tasks[["name", "state", "attempts", "seconds"]].to_string(index=False))
    print(f"status: {report.status_file}")
    for run in report.results:
        print(f"\n{run.config.mode} {run.config.model} {run.config.protocol} r={run.config.rank}: {run.run_dir}")
        print(run.summary.to_string(index=False))
    if len(report.failed):
        print("\nfailed tasks (see each log):", file=sys.stderr)
        for row in report.failed.itertuples():
            print(f"  {row.name} after {row.attempts} attempts: {row.error}\n    log: {row.log}", file=sys.stderr)
        return 1
    return 0


def _add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field (default: the profile's value)."""
    from dataclasses import fields

    from .config import PROFILES, RunConfig

    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES))
    parser.add_argument("--cache-dir", default=None, help="project cache (default $BTS_CACHE_DIR or ~/.cache/...)")
    for f in fields(RunConfig):
        if f.name == "profile" or f.name in skip:
            continue
        kind = f.type if isinstance(f.type, type) else str(f.type)
        if "bool" in str(kind):
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                                type=lambda v: v.lower() in ("1", "true", "yes"))
        elif "int" in str(kind):
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=int, default=None)
        elif "float" in str(kind):
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=float, default=None)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None)


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per finished fold
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="validate a corpus and print counts per class, speaker and fold")
    source = corpus.add_mutually_exclusive_group()
    source.add_argument("--iemocap", metavar="DIR", help="the IEMOCAP_full_release folder")
    source.add_argument("--manifest", metavar="CSV", help="a CSV with path,label,speaker[,session,dialog]")
    corpus.add_argument("--label-map", help='JSON mapping raw labels to classes, e.g. \'{"ANG": "anger"}\'')
    corpus.add_argument("--seed", type=int, default=0, help="demo corpus seed (default 0)")
    corpus.add_argument("--on-bad", choices=("error", "skip"), default="error")
    corpus.add_argument("--protocol", choices=("speaker", "session", "dialog"), default="speaker")
    train = commands.add_parser("train", help="train and evaluate every fold of a profile (resumable)")
    _add_config_flags(train)
    sweep = commands.add_parser("sweep", help="train a grid of runs fold by fold, here or on a Ray cluster (resumable)")
    _list = lambda kind: lambda v: tuple(kind(x.strip()) for x in v.split(",") if x.strip())  # noqa: E731
    sweep.add_argument("--models", type=_list(str), help="comma-separated models (default: the profile's)")
    sweep.add_argument("--modes", type=_list(str), default=("lora", "frozen"), help="default: lora,frozen")
    sweep.add_argument("--protocols", type=_list(str), help="comma-separated protocols (default: the profile's)")
    sweep.add_argument("--ranks", type=_list(int), help="LoRA ranks, alpha = 2 x rank (default: the profile's rank)")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local")
    sweep.add_argument("--address", default=None,
                       help="Ray cluster address ('auto': the one `ray start` made on this node); none: a local Ray")
    sweep.add_argument("--retries", type=int, default=1, help="retries of a failed task before it is reported")
    sweep.add_argument("--gpus-per-task", type=float, default=None, help="default: 1 if the cluster has GPUs, else 0")
    sweep.add_argument("--cpus-per-task", type=float, default=1)
    _add_config_flags(sweep, skip=("model", "mode", "protocol", "rank"))
    args = parser.parse_args(argv)
    return {"corpus": _corpus, "train": _train, "sweep": _sweep}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
