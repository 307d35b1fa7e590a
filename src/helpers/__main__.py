"""Command line: `python -m helpers <command> ...`.

  corpus   read a corpus (the demo corpus, an IEMOCAP release or a CSV manifest), validate it, print its counts
  train    cross-validated training and evaluation (`python -m helpers train --profile demo --mode lora`)
  sweep    the folds of a grid of runs (models x modes x protocols x ranks) as tasks, here or on a Ray cluster
  settings every run setting with its default, each profile's value and its meaning (the README's table)
"""

from __future__ import annotations

import argparse
import json
import sys

from .io import parse_list


def _corpus(args: argparse.Namespace) -> int:
    from .data.corpora import class_speaker_counts, read_iemocap, read_manifest, validate_corpus
    from .data.demo_corpus import DemoCorpusSettings, load_demo_corpus
    from .data.protocols import fold_table, make_folds

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
    from .training.runs import run_cross_validation

    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name != "profile"}
    results = run_cross_validation(args.profile, cache_dir=args.cache_dir, **overrides)
    print(f"results: {results.run_dir}")
    print(results.summary.to_string(index=False))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import RunConfig
    from .training.sweep import SweepSpec, run_sweep

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


def _boolean(text: str) -> bool:
    """A strict CLI boolean: true/false, yes/no, 1/0, on/off (anything else is refused, not read as False)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; give true or false")


_FLAG_TYPES = {"bool": _boolean, "int": int, "float": float}


def _add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per RunConfig field, its help text from the field (default: the profile's value)."""
    from dataclasses import fields

    from .config import PROFILES, RunConfig

    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES),
                        help="the profile whose values the other flags override (default: demo)")
    parser.add_argument("--cache-dir", default=None,
                        help="project cache (default: $BTS_CACHE_DIR, else ~/.cache/behind-the-scenes)")
    settings = parser.add_argument_group("run settings (default: the profile's value; see the README's table)")
    for f in fields(RunConfig):
        if f.name == "profile" or f.name in skip:
            continue
        kind = _FLAG_TYPES.get(str(f.type))
        choices = f.metadata.get("choices")
        if str(f.type) == "bool":
            choices = ("true", "false")
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
        settings.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, type=kind,
                              metavar=metavar, help=f.metadata["help"])


def _settings(args: argparse.Namespace) -> int:
    from .config import settings_table

    print(settings_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    from .data.protocols import PROTOCOLS

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
    corpus.add_argument("--protocol", choices=PROTOCOLS, default="speaker")
    train = commands.add_parser("train", help="train and evaluate every fold of a profile (resumable)")
    _add_config_flags(train)
    sweep = commands.add_parser("sweep",
                                help="train a grid of runs fold by fold, here or on a Ray cluster (resumable)")
    def _list(kind):
        def read(text):
            try:
                return parse_list(text, kind)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
        return read

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
    commands.add_parser("settings", help="print every run setting with its default, profiles and meaning (Markdown)")
    args = parser.parse_args(argv)
    return {"corpus": _corpus, "train": _train, "sweep": _sweep, "settings": _settings}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
