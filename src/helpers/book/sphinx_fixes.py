"""A Sphinx extension the book loads (`_config.yml`, `sphinx.extra_extensions`): a fix for the HTML that Jupyter
Book 1.x writes, found by the browser test (`helpers.book.browser`).

Sphinx 7.4 writes an inline script that an extension adds once the builder exists twice on every page (its own copy
has the file name None, the copy it rebuilds from the registry ''): sphinx-thebe's `const THEBE_JS_URL = ...`
declared twice is a SyntaxError in every reader's console. `unique_scripts` keeps the first of identical scripts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["unique_scripts", "setup"]


def unique_scripts(scripts: list) -> list:
    """`scripts` (Sphinx's `_JavaScript` assets, or plain names) without repeats: the same file, or the same inline
    body, with the same attributes is kept once, at its first place, whatever its priority."""
    seen, kept = set(), []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    return kept


def _page_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(list(context["script_files"]))  # a copy: the builder reuses its own


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _page_scripts, priority=900)  # after the extensions that add page scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
