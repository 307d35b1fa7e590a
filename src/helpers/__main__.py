"""Command line: `python -m helpers <command> ...`.

  corpus   read a corpus (demo, name:/path for RAVDESS, CREMA-D, TESS, EmoDB, IEMOCAP or a manifest, a .csv or a
           corpus folder), validate it, print its classes, what was left out, its counts and folds
  train    cross-validated training and evaluation (`python -m helpers train --profile demo --mode lora`)
  sweep    the folds of a grid of runs (models x modes x protocols x ranks) as tasks, here or on a Ray cluster
  settings every run setting with its default, each profile's value and its meaning (the README's table)

A problem with the input (a setting, the corpus, a manifest) is printed as one line, `error: <message>`, with exit
code 2; `--debug` shows its traceback too. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import UserError
from .io import parse_list


def _corpus(args: argparse.Namespace) -> int:
    from .config import make_config
    from .data.corpora import class_speaker_counts, left_out_table
    from .data.protocols import fold_tables
    from .training.runs import corpus_classes, load_corpus

    data = (f"iemocap:{args.iemocap}" if args.iemocap else f"manifest:{args.manifest}" if args.manifest
            else args.data)
    label_map = args.label_map
    if label_map and label_map.lstrip().startswith("{"):  # the JSON form this command took before raw=class pairs
        label_map = json.loads(label_map)
    config = make_config("demo", data=data, classes=args.classes, label_map=label_map, protocol=args.protocol,
                         folds_k=args.folds_k, validation_speakers=args.validation_speakers, on_bad=args.on_bad,
                         demo_seed=args.seed)
    table = load_corpus(config)
    if config.data == "demo":
        print("demo corpus: synthetic espeak-ng voices; its numbers say nothing about human emotion")
    print(f"corpus: {table.attrs.get('corpus')} ({table.attrs.get('source')})")
    print(f"classes (model output order): {', '.join(corpus_classes(table))}")
    print(f"label map: {table.attrs.get('label_map')}")
    left = left_out_table(table)
    print("left out: nothing" if left.empty else "left out or flagged:\n" + left.to_string(index=False))
    print(class_speaker_counts(table).to_string())
    print(fold_tables(table, (config.protocol,), k=config.folds_k, n_validation=config.validation_speakers)
          .to_string(index=False))
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .config import RunConfig

    overrides = {f.name: getattr(args, f.name) for f in fields(RunConfig) if f.name != "profile"}
    if not _settings_ok(args.profile, overrides):  # before the heavy imports: a typo fails at once
        return 2
    from .training.runs import run_cross_validation

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
    if not _settings_ok(args.profile, overrides):
        return 2
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


def _settings_ok(profile: str, overrides: dict) -> bool:
    """Whether the settings make a valid RunConfig; if not, the reason (naming the setting and the fix) is printed."""
    from .config import make_config

    try:
        make_config(profile, **overrides)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    return True


def _flag_type(name: str):
    """The argparse type of setting `name`'s flag: `setting_from_text`, the parser papermill's text and the Python
    API go through as well, so `--epochs 2.5` and `--compile ture` are refused here, naming the flag."""
    from .config import setting_from_text

    def read(text: str):
        try:
            return setting_from_text(name, text)
        except UserError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    read.__name__ = name
    return read


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
        kind = _flag_type(f.name) if str(f.type) in ("bool", "int", "float") else None
        choices = f.metadata.get("choices")
        if str(f.type) == "bool":
            choices = ("true", "false")
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
        settings.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, type=kind,
                              metavar=metavar, help=f.metadata["help"].replace("%", "%%"))


def _settings(args: argparse.Namespace) -> int:
    from .config import settings_table

    print(settings_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    from .config import setting_help
    from .data.protocols import PROTOCOLS

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per finished fold
    common = argparse.ArgumentParser(add_help=False)  # before or after the command: `--debug train` or `train --debug`
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an input error too (bugs always show theirs)")
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", parents=[common],
                                 help="read and validate a corpus, print its classes, what was left out, counts per "
                                      "class and speaker, and the folds")
    source = corpus.add_mutually_exclusive_group()
    source.add_argument("--data", default="demo", help=setting_help("data") + " (default: demo)")
    source.add_argument("--iemocap", metavar="DIR",
                        help="the IEMOCAP_full_release folder (same as --data iemocap:DIR)")
    source.add_argument("--manifest", metavar="CSV",
                        help="a CSV with path,label,speaker[,session,dialog] (same as --data manifest:CSV)")
    corpus.add_argument("--classes", default=None, help=setting_help("classes") + " (default: the paper's four)")
    corpus.add_argument("--label-map", default=None, help=setting_help("label_map"))
    corpus.add_argument("--seed", type=_flag_type("demo_seed"), default=0, help="demo corpus seed (default 0)")
    corpus.add_argument("--on-bad", choices=("error", "skip"), default="error")
    corpus.add_argument("--protocol", choices=PROTOCOLS, default="speaker")
    corpus.add_argument("--folds-k", type=_flag_type("folds_k"), default=None,
                        help=setting_help("folds_k") + " (default 5)")
    corpus.add_argument("--validation-speakers", type=_flag_type("validation_speakers"), default=None,
                        help=setting_help("validation_speakers") + " (default 2)")
    train = commands.add_parser("train", parents=[common],
                                help="train and evaluate every fold of a profile (resumable)")
    _add_config_flags(train)
    sweep = commands.add_parser("sweep", parents=[common],
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
    commands.add_parser("settings", parents=[common],
                        help="print every run setting with its default, profiles and meaning (Markdown)")
    args = parser.parse_args(argv)
    command = {"corpus": _corpus, "train": _train, "sweep": _sweep, "settings": _settings}[args.command]
    try:
        return command(args)
    except UserError as err:  # the message names the file or setting and the fix; a traceback adds nothing
        if getattr(args, "debug", False):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
