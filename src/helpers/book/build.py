"""Book driver: execute each chapter notebook with papermill into `book/executed/`, then build the HTML book.

`python -m helpers.book --profile demo` is what `make book` runs; `--chapter NAME` (repeatable) executes only those
chapters before building. A chapter whose inputs did not change since it was last executed is not re-executed: its
notebook, the profile and parameters, the `helpers` code, the data folder and the project cache (file names, sizes
and times) are fingerprinted into `book/executed/stamps.json`; `--force` re-executes regardless. Sources stay in
`notebooks/`; the executed copies are what `_toc.yml` points at. The parameters cells are hidden in the book (each
chapter shows a run-settings box instead, and a "rerun this chapter" box with the papermill command that reproduces
its execution, `rerun_command`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["CHAPTERS", "toc_chapters", "chapter_parameters", "parameter_defaults", "rerun_command", "rerun_markdown",
           "rerun_environment", "execute_chapter", "build_book", "install_mathjax", "tree_fingerprint",
           "chapter_inputs", "settings_problem", "main"]

ROOT = Path(__file__).resolve().parents[3]
EXECUTED = "book/executed/"
HIDDEN_TAGS = {"parameters", "injected-parameters"}
RERUN_WIDTH = 72  # characters per line of the rerun command: the book's code blocks show about 75


def toc_chapters(toc: Path = ROOT / "_toc.yml") -> tuple[str, ...]:
    """The executed chapters `_toc.yml` lists, in its order: the one list of chapters."""
    import yaml

    def files(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                yield node["file"]
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    names = tuple(f[len(EXECUTED):] for f in files(yaml.safe_load(toc.read_text())) if f.startswith(EXECUTED))
    if not names:
        raise ValueError(f"{toc} lists no chapter under {EXECUTED}; each chapter is `- file: {EXECUTED}<name>`")
    return names


CHAPTERS: tuple[str, ...] = toc_chapters()


def chapter_parameters(name: str, root: Path = ROOT) -> set[str]:
    """The parameters chapter `name` declares in its cell tagged `parameters`."""
    import papermill

    return set(papermill.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb")))


def parameter_defaults(name: str, root: Path = ROOT) -> dict[str, Any]:
    """The default of each parameter chapter `name` declares, as a Python value (a default that is not a literal is
    left out: a rerun command then always states that parameter)."""
    import papermill

    defaults = {}
    for key, info in papermill.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb")).items():
        try:
            defaults[key] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            pass
    return defaults


def _papermill_reads(text: str) -> Any:
    """What `papermill -p NAME TEXT` passes: True, False and None by name, then an int, then a float, else TEXT."""
    named = {"True": True, "False": False, "None": None}
    if text in named:
        return named[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parameter_words(key: str, value: Any) -> list[str]:
    """papermill options that pass `value` exactly: `-p` where it reads back as the same value and type, `-r` (raw)
    for a string `-p` would convert, `-y` (YAML) for anything else (lists, dicts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value) if isinstance(value, float) else str(value)
        read = _papermill_reads(text)
        if type(read) is type(value) and read == value:
            return ["-p", key, text]
        if isinstance(value, str):
            return ["-r", key, value]
    return ["-y", json.dumps({key: value})]


def rerun_environment() -> dict[str, str]:
    """The environment a rerun needs to see what the build saw: the cache folder, where it is not the default."""
    from ..io import CACHE_ENV, cache_root

    used = cache_root().resolve()
    return {} if used == (Path.home() / ".cache" / "behind-the-scenes").resolve() else {CACHE_ENV: str(used)}


def rerun_command(name: str, parameters: dict[str, Any], *, defaults: dict[str, Any] | None = None,
                  environment: dict[str, str] | None = None, papermill: str = ".venv/bin/papermill",
                  width: int | None = None) -> str:
    """The shell command (from the repository root) that executes chapter `name` with `parameters`, as the build
    does: papermill with this package's engine, the profile always, every other parameter unless it equals the
    notebook's default, each in the papermill option that passes its value exactly; `environment` as a prefix.

    One line, or with `width` lines of about that many characters joined by backslash-newlines (as a shell reads
    them: one command)."""
    from .execution import ENGINE_NAME

    defaults = {} if defaults is None else defaults
    groups = [[papermill, "--engine", ENGINE_NAME], [f"notebooks/{name}.ipynb", f"{name}-rerun.ipynb"]]
    for key, value in parameters.items():
        if key == "profile" or key not in defaults or defaults[key] != value or type(defaults[key]) is not type(value):
            groups.append(_parameter_words(key, value))
    texts = [f"{k}={shlex.quote(v)}" for k, v in (environment or {}).items()]  # NAME=value: an assignment
    texts += [shlex.join(group) for group in groups]
    if width is None:
        return " ".join(texts)
    lines = [texts[0]]
    for text in texts[1:]:
        if len(lines[-1]) + 1 + len(text) > width:
            lines.append("  " + text)
        else:
            lines[-1] += " " + text
    return " \\\n".join(lines)


def rerun_markdown(name: str, command: str) -> str:
    """The "rerun this chapter" box (a MyST admonition): the command that reproduces this execution."""
    return (f"````{{admonition}} Rerun this chapter\n:class: tip rerun\n\n"
            f"This page is `notebooks/{name}.ipynb` as the book's build executed it. From the repository root "
            f"(after `make install`), this command executes it again with the same settings, into "
            f"`{name}-rerun.ipynb`:\n\n```bash\n{command}\n```\n\n"
            f"Parameters not given take the notebook's defaults; `papermill --help-notebook notebooks/{name}.ipynb` "
            "lists them all.\n````")


def _prepare_for_book(path: Path, name: str, rerun: str | None = None) -> None:
    """Hide the parameters cells, put the rerun box after them (`rerun`: its command) and link the page to its
    source notebook (copied beside the HTML by the build)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if HIDDEN_TAGS & set(tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    if rerun is not None:
        hidden = [i for i, c in enumerate(nb.cells) if HIDDEN_TAGS & set(c.metadata.get("tags", []))]
        nb.cells.insert(hidden[-1] + 1 if hidden else 1, nbformat.v4.new_markdown_cell(rerun_markdown(name, rerun)))
    link = nbformat.v4.new_markdown_cell(
        '<p class="source-link">Source notebook: <a '
        f'href="../../source-notebooks/{name}.ipynb">notebooks/{name}.ipynb</a>; '
        "this page is its executed copy (download it with the button at the top).</p>")
    nb.cells.insert(1, link)
    nbformat.write(nb, path)


def tree_fingerprint(folder: Path) -> str:
    """A fingerprint of every file under `folder` (relative path, size, modification time); "" if it is missing.
    Cache entries are written once under content-derived names, so a changed listing is a changed input."""
    from ..io import fingerprint

    if not folder.exists():
        return ""
    if folder.is_file():
        st = folder.stat()
        return fingerprint([folder.name, st.st_size, st.st_mtime_ns])
    listing = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".tmp"):
            st = path.stat()
            listing.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return fingerprint(listing)


def chapter_inputs(name: str, *, profile: str, parameters: dict, root: Path = ROOT) -> str:
    """What a chapter's executed copy depends on besides the cache: its notebook, the profile and the parameters it
    takes, the `helpers` source and `pyproject.toml`, and the data folder or manifest a `data` parameter names."""
    from ..io import file_sha256, fingerprint

    sources = sorted((root / "src" / "helpers").rglob("*.py")) + [root / "pyproject.toml"]
    code = [(str(path.relative_to(root)), file_sha256(path)) for path in sources]
    notebook = file_sha256(root / "notebooks" / f"{name}.ipynb")
    data = parameters.get("data")
    data_print = tree_fingerprint(Path(data)) if isinstance(data, str) and Path(data).exists() else None
    return fingerprint({"notebook": notebook, "profile": profile, "parameters": parameters, "code": code,
                        "data": data_print})


def execute_chapter(name: str, *, profile: str, parameters: dict | None = None, root: Path = ROOT) -> Path:
    """Run `notebooks/<name>.ipynb` with papermill (static figures); the executed copy goes to `book/executed/`.

    Only the parameters the chapter declares are passed (`-p ranks ...` reaches the chapters that take ranks).
    """
    import papermill

    from .execution import register_engine

    source = root / "notebooks" / f"{name}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"no chapter {name!r}: {source} does not exist (chapters: {', '.join(CHAPTERS)})")
    target = root / "book" / "executed" / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    declared = chapter_parameters(name, root)
    given = {"profile": profile, "interactive": False, **(parameters or {})}
    passed = {k: v for k, v in given.items() if k in declared}
    papermill.execute_notebook(str(source), str(target), cwd=str(root), progress_bar=False,
                               engine_name=register_engine(),  # bounded polls: no hang on a busy machine
                               parameters=passed)
    command = rerun_command(name, passed, defaults=parameter_defaults(name, root), environment=rerun_environment(),
                            width=RERUN_WIDTH)
    _prepare_for_book(target, name, command)
    return target


def build_book(root: Path = ROOT) -> Path:
    """`jupyter-book build` with warnings as errors; returns the path of the HTML index.

    The source notebooks are copied to `book/extra/source-notebooks/`, which the build publishes beside the pages.
    """
    extra = root / "book" / "extra" / "source-notebooks"
    extra.mkdir(parents=True, exist_ok=True)
    for name in CHAPTERS:
        shutil.copy2(root / "notebooks" / f"{name}.ipynb", extra / f"{name}.ipynb")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jupyter_book), "build", str(root), "--warningiserror", "--keep-going", "--quiet"],
                   check=True)
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"the book build finished but {index} is missing")
    install_mathjax(root / "_build" / "html" / "_static" / "mathjax")
    return index


MATHJAX_PARTS = ("tex-mml-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y")


def install_mathjax(target: Path) -> Path:
    """Copy MathJax 3 (the combined TeX/MathML -> CHTML file, its fonts and the extensions it loads on demand) from
    the pinned `django-static-mathjax` package into the built book, where `_config.yml`'s `mathjax_path` points, so
    equations render without a network."""
    import mathjax

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_PARTS[0]).is_file():
        raise FileNotFoundError(f"{source / MATHJAX_PARTS[0]} is missing: reinstall django-static-mathjax "
                                "(`make install`)")
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target / MATHJAX_PARTS[0]


def settings_problem(profile: str, parameters: dict[str, Any]) -> str:
    """Why the run settings among `parameters` (the book driver's `-p`, as chapters receive them) make no valid
    config for `profile`, or "" if they do: the check each chapter's `setup` makes, done once before any chapter
    runs."""
    from dataclasses import fields

    from ..config import RunConfig, make_config
    from ..errors import UserError

    settings = {f.name for f in fields(RunConfig)}
    try:
        make_config(profile, **{k: v for k, v in parameters.items() if k in settings})
    except UserError as err:
        return str(err)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.book", description=__doc__)
    parser.add_argument("--profile", default="demo", help="run profile passed to every chapter (default: demo)")
    parser.add_argument("--chapter", action="append", help="execute only this chapter (repeatable)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a papermill parameter for every chapter, e.g. -p model openai/whisper-small")
    parser.add_argument("--force", action="store_true",
                        help="re-execute every chapter even if its inputs did not change")
    args = parser.parse_args(argv)
    chapters = args.chapter or CHAPTERS
    unknown_chapters = sorted(set(chapters) - set(CHAPTERS))
    if unknown_chapters:
        parser.error(f"no chapter {unknown_chapters} in _toc.yml; chapters: {', '.join(CHAPTERS)}")
    declared = set().union(*(chapter_parameters(c) for c in chapters))
    unknown = sorted({name for name, _ in args.parameter} - declared)
    if unknown:
        parser.error(f"no chapter takes the parameter(s) {unknown}; they take: {', '.join(sorted(declared))}")
    parameters = {}
    for name, value in args.parameter:
        try:
            parameters[name] = json.loads(value)
        except json.JSONDecodeError:
            parameters[name] = value
    problem = settings_problem(args.profile, parameters)
    if problem:  # e.g. -p epochs 2.5: refused here, before any chapter starts a kernel
        parser.error(problem)
    # progress bars would become dead widgets in the static book: the kernels inherit these settings
    os.environ.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    from ..io import atomic_json, cache_root, read_cached, read_json_checked

    # a damaged record (an interrupted write of an older version) is set aside: every chapter then counts as changed
    timings_path = ROOT / "book" / "executed" / "timings.json"
    timings = read_cached(timings_path, read_json_checked, dict)
    stamps_path = ROOT / "book" / "executed" / "stamps.json"
    stamps = read_cached(stamps_path, read_json_checked, dict)
    done = {}
    for name in chapters:
        given = {k: v for k, v in parameters.items() if k in chapter_parameters(name)}
        inputs = chapter_inputs(name, profile=args.profile, parameters=given)
        stamp = {"inputs": inputs, "cache": tree_fingerprint(cache_root())}  # as the cache is now, before this chapter
        executed = ROOT / "book" / "executed" / f"{name}.ipynb"
        if not args.force and executed.is_file() and stamps.get(name) == stamp:
            print(f"chapter {name}: unchanged (inputs and cache as when it was executed), not re-executed",
                  flush=True)
            done[name] = inputs
            continue
        stamps.pop(name, None)
        stamps_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_json(stamps_path, stamps)  # an interrupted execution leaves no stale stamp
        start = time.perf_counter()
        execute_chapter(name, profile=args.profile, parameters=parameters)
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"chapter {name}: {timings[name]:.1f} s", flush=True)
        atomic_json(timings_path, timings)
        done[name] = inputs
    # every chapter of this build is current with the cache as it is now (entries are written once, never rewritten)
    final_cache = tree_fingerprint(cache_root())
    stamps.update({name: {"inputs": inputs, "cache": final_cache} for name, inputs in done.items()})
    atomic_json(stamps_path, stamps)
    missing = [c for c in CHAPTERS if not (ROOT / "book" / "executed" / f"{c}.ipynb").is_file()]
    if missing:
        raise SystemExit(f"chapters never executed: {missing}; run without --chapter once")
    start = time.perf_counter()
    index = build_book()
    print(f"book built in {time.perf_counter() - start:.1f} s: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
