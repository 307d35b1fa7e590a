"""Explorers for the static book: which values are pre-rendered, in which order, and the panel that swaps them."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest

from helpers.book.explorer import (
    MAX_FIGURES,
    combinations,
    explorer_bundle,
    explorer_html,
    options_of,
    prerender_values,
    thin,
)


def test_options_of_reads_lists_and_tuples_as_values_and_anything_else_as_fixed():
    assert options_of({"a": [1, 2], "b": ("x", "y"), "c": "fixed", "d": 3}) == {
        "a": [1, 2], "b": ["x", "y"], "c": ["fixed"], "d": [3]}
    with pytest.raises(ValueError, match="'e' offers no value"):
        options_of({"e": []})


def test_thin_steps_a_long_sequence_keeping_first_and_last():
    assert thin(list(range(32)), 9) == [0, 4, 8, 12, 16, 20, 24, 28, 31]
    assert thin(list(range(33)), 9) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert thin(list(range(10)), 4) == [0, 3, 6, 9]
    assert thin(list(range(10)), 2) == [0, 9]
    assert thin([1, 2, 3], 9) == [1, 2, 3]  # short: untouched


def test_thin_keeps_leading_choices_that_are_not_part_of_the_sequence():
    assert thin(["mean over layers", *range(32)], 9) == ["mean over layers", 0, 5, 10, 15, 20, 25, 30, 31]
    layers = ["evenly spaced", *map(str, range(32))]  # the t-SNE explorer's layers are strings
    assert thin(layers, 9) == ["evenly spaced", "0", "5", "10", "15", "20", "25", "30", "31"]
    assert thin(["a", "b", "c", "d", "e"], 3) == ["a", "c", "e"]  # no sequence: stepped as one


def test_prerender_values_caps_each_control_and_the_number_of_figures():
    values = prerender_values({"layer": list(range(32)), "frames": ["all", "speech"], "fixed": 3})
    assert values == {"layer": [0, 4, 8, 12, 16, 20, 24, 28, 31], "frames": ["all", "speech"], "fixed": [3]}
    values = prerender_values({"a": list(range(8)), "b": list(range(8)), "c": list(range(8))})
    sizes = [len(v) for v in values.values()]
    assert 1 < min(sizes) and len(combinations(values)) <= MAX_FIGURES
    assert all(v[0] == 0 and v[-1] == 7 for v in values.values())  # first (default) and last always drawn
    with pytest.raises(ValueError, match="offer fewer controls"):
        prerender_values({name: [0, 1] for name in "abcdef"})  # 64 figures at two values each


def test_combinations_vary_the_last_control_fastest_and_start_with_the_defaults():
    combos = combinations({"frames": ["all", "speech"], "what": ["difference", "both", "sum"]})
    assert combos[0] == {"frames": "all", "what": "difference"}
    assert combos[:4] == [{"frames": "all", "what": w} for w in ("difference", "both", "sum")] + [
        {"frames": "speech", "what": "difference"}]
    assert len(combos) == 6


def _png(tag: int) -> bytes:
    """Distinct stand-in 'PNG' bytes (the panel never decodes them; the browser test does)."""
    return b"\x89PNG\r\n\x1a\n" + bytes([tag]) * 8


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements, self.data = [], {}
        self._in_json = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        self._in_json = tag == "script" and attrs.get("type") == "application/json"

    def handle_data(self, data):
        if self._in_json:
            self.data = json.loads(data)
            self._in_json = False


def _parse(markup: str) -> _Elements:
    parser = _Elements()
    parser.feed(markup)
    return parser


def test_the_panel_offers_one_control_per_varying_control_and_maps_every_combination_to_its_figure():
    values = {"layer": [0, 4, 8], "frames": ["all", "speech"], "estimator": ["a", "b", "c", "d", "e"],
              "fixed": ["x"]}
    pngs = [_png(i) for i in range(3 * 2 * 5)]
    markup = explorer_html(values, pngs, offered={"layer": list(range(9)), "frames": ["all", "speech"],
                                                  "estimator": ["a", "b", "c", "d", "e"], "fixed": ["x"]})
    page = _parse(markup)
    kinds = {a["data-control"]: a["data-kind"] for t, a in page.elements if "data-control" in a}
    assert kinds == {"layer": "range", "frames": "radio", "estimator": "select"}  # no control for a fixed value
    radios = [a for t, a in page.elements if t == "input" and a.get("type") == "radio"]
    assert [r["value"] for r in radios] == ["0", "1"] and "checked" in radios[0] and "checked" not in radios[1]
    assert len({r["name"] for r in radios}) == 1
    slider = next(a for t, a in page.elements if t == "input" and a.get("type") == "range")
    assert (slider["min"], slider["max"], slider["value"]) == ("0", "2", "0")
    assert len([a for t, a in page.elements if t == "option"]) == 5

    data = page.data
    assert data["order"] == ["layer", "frames", "estimator"]
    images = {key: data["images"][i] for key, i in data["figures"].items()}
    assert len(images) == 30
    img = next(a for t, a in page.elements if t == "img")
    assert img["src"] == "data:image/png;base64," + base64.b64encode(pngs[0]).decode()  # the default first
    assert images["0-0-0"] is None  # ... which the script reads from the <img>, so it is not embedded twice
    expected = "data:image/png;base64," + base64.b64encode(pngs[(2 * 2 + 1) * 5 + 3]).decode()
    assert images["2-1-3"] == expected  # layer 8, speech, estimator d
    assert data["labels"]["layer"] == ["0", "4", "8"]
    note = re.sub(r"<[^>]+>", "", markup.split('class="bts-explorer-note"')[1].split("</p>")[0])
    assert "30 figures" in note and "layer: 3 of its 9 values (0, 4, 8)" in note and "frames:" not in note


def test_identical_figures_are_embedded_once():
    values = {"metric": ["uar", "war", "f1"]}
    markup = explorer_html(values, [_png(1), _png(2), _png(1)])
    data = _parse(markup).data
    assert data["figures"] == {"0": 0, "1": 1, "2": 0} and len(data["images"]) == 2


def test_the_panel_cannot_be_closed_early_by_its_values_and_ids_differ():
    values = {"label": ["</script><b>x</b>", "b"]}
    first, second = explorer_html(values, [_png(1), _png(2)]), explorer_html(values, [_png(1), _png(2)])
    assert first.count("</script>") == 2  # the JSON data block's and the script's own, nothing from the values
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in first
    ids = [re.search(r'class="bts-explorer" id="([^"]+)"', m).group(1) for m in (first, second)]
    assert ids[0] != ids[1]  # two explorers on a page keep their own radio groups
    with pytest.raises(ValueError, match="3 figures for 2 combinations"):
        explorer_html(values, [_png(1)] * 3)


def test_the_bundle_carries_the_panel_and_the_default_figure():
    bundle = explorer_bundle({"metric": ["uar", "war"]}, [_png(1), _png(2)])
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    assert base64.b64decode(bundle["image/png"]) == _png(1)
    assert 'class="bts-explorer"' in bundle["text/html"] and "2 pre-rendered figures" in bundle["text/plain"]
