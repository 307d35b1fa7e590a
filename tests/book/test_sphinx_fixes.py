"""The book's Sphinx fix: a script written twice into a page is written once."""

from sphinx.builders.html._assets import _JavaScript

from helpers.book.sphinx_fixes import unique_scripts


def test_identical_scripts_are_kept_once_at_their_first_place():
    thebe = "const THEBE_JS_URL = 'x'"
    scripts = [_JavaScript("doctools.js", priority=200), _JavaScript(None, body=thebe),
               _JavaScript("sphinx-thebe.js", **{"async": "async"}), _JavaScript("", priority=500, body=thebe),
               _JavaScript("doctools.js", priority=200), _JavaScript(None, body="let other = 1")]
    kept = unique_scripts(scripts)
    assert kept == [scripts[0], scripts[1], scripts[2], scripts[5]]
    assert unique_scripts(["a.js", "b.js", "a.js"]) == ["a.js", "b.js"]
