"""The package layout's rules, checked on the source: the pipeline's direction, no private imports across modules,
one implementation of atomic writes and fingerprints, and a docstring on every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "helpers"
MODULES = sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(("helpers", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every `from ... import ...` in `path`, relative ones resolved."""
    package = _name(path).split(".") if path.name == "__init__.py" else _name(path).split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


@pytest.mark.parametrize("path", MODULES, ids=[_name(p) for p in MODULES])
def test_no_module_imports_a_private_name_of_another(path):
    private = [(m, n) for m, names in _imports(path) if m.startswith("helpers") and m != _name(path)
               for n in names if n.startswith("_") and not n.endswith("__")]
    assert not private, f"{_name(path)} imports private names {private}"


@pytest.mark.parametrize("path", sorted((SRC / "data").glob("*.py")), ids=lambda p: p.stem)
def test_no_data_module_imports_a_model_training_analysis_or_book_module(path):
    later = ("helpers.models", "helpers.training", "helpers.analysis", "helpers.book", "helpers.config")
    bad = [m for m, _ in _imports(path) if m.startswith(later)]
    assert not bad, f"{_name(path)} imports {bad}: data comes first in the pipeline"


def test_the_pipeline_runs_one_way():
    """data -> models -> training -> analysis -> book: no stage imports a later one."""
    order = ["data", "models", "training", "analysis", "book"]
    for i, stage in enumerate(order):
        for path in (SRC / stage).glob("*.py"):
            later = tuple(f"helpers.{s}" for s in order[i + 1:])
            bad = [m for m, _ in _imports(path) if later and m.startswith(later)]
            assert not bad, f"{_name(path)} imports {bad}"


def test_one_implementation_of_atomic_writes_and_fingerprints():
    for path in MODULES:
        if path.name == "io.py":
            continue
        text = path.read_text()
        for needle in ("os.replace(tmp", "hashlib", ".with_suffix(\".tmp\")", "uuid.uuid4"):
            assert needle not in text, f"{_name(path)} has its own {needle!r}; use helpers.io"


@pytest.mark.parametrize("path", MODULES, ids=[_name(p) for p in MODULES])
def test_every_module_says_what_it_is(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{_name(path)} has no module docstring"
