"""Explorers that work in the static book: every combination of a figure's control values is drawn when the chapter
is executed, and a small HTML panel (radio buttons, menus, sliders, an inline script) swaps the figure in the
browser, with no kernel and no external script.

`prerender_values` picks the values to draw (a long control is thinned, first and last kept, and the number of
figures is capped), `combinations` lists the figures in order (the first is the default), `explorer_html` builds the
panel from their PNGs and `explorer_bundle` the display output that carries it. `helpers.book.chapters.explore` uses
them under papermill; in a live Jupyter front end it shows ipywidgets instead.

The output is one display bundle, text/html (the panel, default figure included) with image/png (the default
figure alone) beside it: myst-nb wraps every display output of a cell that has `mystnb.figure` metadata in its own
numbered figure, so a separate panel output would make a second figure with the same name.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import numbers
import re
from typing import Any

from ..io import fingerprint

__all__ = ["MAX_VALUES", "MAX_FIGURES", "DPI", "RADIO_MAX", "options_of", "thin", "prerender_values",
           "combinations", "figure_png", "explorer_html", "explorer_bundle"]

MAX_VALUES = 9  # a control over more values is thinned: 32 layers give 0, 4, ..., 28, 31
MAX_FIGURES = 24  # figures drawn per explorer at most (page size and build time)
DPI = 96  # PNG resolution of every figure of an explorer (the chapters' single figures use 110)
RADIO_MAX = 4  # up to this many values: radio buttons; more: a menu (numbers: a slider)

_counter = itertools.count()


def options_of(controls: dict[str, Any]) -> dict[str, list]:
    """Each control's values: a list or tuple is the values it offers (the first is the default), anything else is
    one fixed value. An empty list is an error."""
    out = {}
    for name, value in controls.items():
        out[name] = list(value) if isinstance(value, (list, tuple)) else [value]
        if not out[name]:
            raise ValueError(f"control {name!r} offers no value")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numeric_like(value: Any) -> bool:
    """A number, or a string that reads as one (the t-SNE explorer offers layers as '0', '1', ...)."""
    return _is_number(value) or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()) is not None)


def _step(options: list, limit: int) -> list:
    """At most `limit` of `options` by a regular step, first and last kept."""
    if len(options) <= limit:
        return list(options)
    if limit < 2:
        return list(options[:1])
    step = math.ceil((len(options) - 1) / (limit - 1))
    picked = list(range(0, len(options), step))
    if picked[-1] != len(options) - 1:
        picked.append(len(options) - 1)
    return [options[i] for i in picked]


def _split_head(options: list, limit: int) -> int:
    """How many leading non-numeric options ("mean over layers", "evenly spaced") `thin` keeps before the sequence
    it steps through; 0 if they leave no room for the sequence's first and last."""
    head = 0
    while head < len(options) and not _numeric_like(options[head]):
        head += 1
    return head if head < len(options) and limit - head >= 2 else 0


def thin(options: list, limit: int) -> list:
    """At most `limit` of `options`, in their order: leading non-numeric options kept, the rest stepped regularly
    with its first and last value kept (0..31 with limit 9: 0, 4, ..., 28, 31)."""
    if len(options) <= limit:
        return list(options)
    head = _split_head(options, limit)
    return list(options[:head]) + _step(options[head:], limit - head)


def prerender_values(controls: dict[str, Any], *, max_values: int = MAX_VALUES,
                     max_figures: int = MAX_FIGURES) -> dict[str, list]:
    """The values of each control to draw: each control thinned to `max_values`, then the control with the most
    values thinned further until the combinations number at most `max_figures`. Too many controls is an error."""
    options = options_of(controls)
    limits = {name: min(len(values), max_values) for name, values in options.items()}
    while math.prod(limits.values()) > max_figures:
        name = max(limits, key=limits.get)
        if limits[name] <= 2:
            raise ValueError(f"{len(limits)} controls give {math.prod(limits.values())} figures even at two values "
                             f"each, more than {max_figures}: offer fewer controls")
        limits[name] -= 1
    return {name: thin(values, limits[name]) for name, values in options.items()}


def combinations(values: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination of the controls' values, the last control varying fastest; the first is the default
    (each control's first value)."""
    names = list(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def figure_png(fig, *, dpi: int = DPI) -> bytes:
    """A matplotlib Figure as PNG bytes (tight bounding box)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _label(value: Any) -> str:
    return str(value)


def _kind(values: list) -> str:
    """The control a reader gets: a slider for three or more numbers, radio buttons for a few values, else a menu."""
    if len(values) >= 3 and all(_is_number(v) for v in values):
        return "range"
    return "radio" if len(values) <= RADIO_MAX else "select"


def _control_html(uid: str, name: str, values: list) -> str:
    label = html.escape(name)
    kind = _kind(values)
    style = "margin:0 1.2em 0.4em 0;display:inline-flex;align-items:center;gap:0.4em;flex-wrap:wrap"
    if kind == "radio":
        buttons = "".join(
            f'<label style="margin:0;font-weight:normal;white-space:nowrap"><input type="radio" '
            f'name="{uid}-{label}" value="{i}"{" checked" if i == 0 else ""}> {html.escape(_label(v))}</label>'
            for i, v in enumerate(values))
        return (f'<fieldset class="bts-control" data-control="{label}" data-kind="radio" style="border:0;padding:0;'
                f'{style}"><legend style="float:left;width:auto;margin:0 0.3em 0 0;padding:0;font-size:inherit;'
                f'font-weight:600">{label}</legend>{buttons}</fieldset>')
    if kind == "select":
        opts = "".join(f'<option value="{i}"{" selected" if i == 0 else ""}>{html.escape(_label(v))}</option>'
                       for i, v in enumerate(values))
        return (f'<label class="bts-control" data-control="{label}" data-kind="select" style="{style}">'
                f'<span style="font-weight:600">{label}</span><select>{opts}</select></label>')
    first = html.escape(_label(values[0]))
    return (f'<label class="bts-control" data-control="{label}" data-kind="range" style="{style}">'
            f'<span style="font-weight:600">{label}</span>'
            f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="0" '
            f'title="{html.escape(", ".join(_label(v) for v in values))}">'
            f'<output style="min-width:2.5em">{first}</output></label>')


def _describe(name: str, shown: list, offered: list) -> str:
    """'layer: 9 of its 32 values (0, 4, 8, ..., 28, 31)' for a thinned control."""
    return f"{name}: {len(shown)} of its {len(offered)} values ({', '.join(_label(v) for v in shown)})"


def explorer_html(values: dict[str, list], pngs: list[bytes], *, offered: dict[str, list] | None = None,
                  uid: str | None = None) -> str:
    """The explorer panel: one control per control with two or more values, the default figure, a note saying
    what was pre-rendered, and an inline script that shows the figure of the chosen combination.

    `values` are the drawn values (`prerender_values`), `pngs` the figures in `combinations(values)` order,
    `offered` the values each control offers before thinning (for the note)."""
    combos = list(itertools.product(*(range(len(v)) for v in values.values())))
    if len(pngs) != len(combos):
        raise ValueError(f"{len(pngs)} figures for {len(combos)} combinations of {list(values)}")
    varying = [i for i, v in enumerate(values.values()) if len(v) > 1]
    names = list(values)
    uris, figures, seen = [], {}, {}
    for combo, png in zip(combos, pngs):
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        if uri not in seen:
            seen[uri] = len(uris)
            uris.append(uri)
        figures["-".join(str(combo[i]) for i in varying)] = seen[uri]
    uid = uid or f"bts-explorer-{fingerprint([names, uris])}-{next(_counter)}"
    default = figures["-".join("0" for _ in varying)]
    data = {"order": [names[i] for i in varying], "figures": figures, "default": default,
            "labels": {names[i]: [_label(v) for v in values[names[i]]] for i in varying},
            "images": [None if i == default else u for i, u in enumerate(uris)]}  # the default is the <img>'s own
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")
    controls = "".join(_control_html(uid, names[i], values[names[i]]) for i in varying)
    alt = ", ".join(f"{n}={_label(values[n][0])}" for n in names)
    offered = offered or values
    thinned = [_describe(n, values[n], offered[n]) for n in names if len(offered.get(n, values[n])) > len(values[n])]
    note = (f"{len(combos)} figures drawn when this page was built, one per combination of the values offered here"
            + (f"; {'; '.join(html.escape(t) for t in thinned)}" if thinned else "")
            + ". Run the notebook in Jupyter for live widgets over every value.")
    return (f'<div class="bts-explorer" id="{uid}">'
            f'<div class="bts-explorer-controls" role="group" aria-label="figure controls" '
            f'style="display:flex;flex-wrap:wrap;align-items:center;margin:0 0 0.5em 0">{controls}</div>'
            f'<img class="bts-explorer-figure" src="{uris[default]}" alt="{html.escape(alt)}" '
            f'style="max-width:100%;height:auto">'
            f'<p class="bts-explorer-note" style="font-size:0.8em;opacity:0.75;margin:0.3em 0 0 0">{note}</p>'
            f'<script type="application/json" class="bts-explorer-data">{payload}</script>'
            f"<script>{_SCRIPT}</script></div>")


# Finds its own panel (the script's parent), reads the control values as indices and shows that figure.
_SCRIPT = """(function () {
  var root = document.currentScript.parentNode;
  var data = JSON.parse(root.querySelector("script.bts-explorer-data").textContent);
  var img = root.querySelector("img.bts-explorer-figure");
  data.images[data["default"]] = img.getAttribute("src");
  var controls = Array.prototype.slice.call(root.querySelectorAll(".bts-control"));
  function index(control) {
    var kind = control.getAttribute("data-kind");
    if (kind === "radio") { return control.querySelector("input:checked").value; }
    return control.querySelector(kind === "select" ? "select" : "input").value;
  }
  function update() {
    var key = controls.map(index).join("-");
    var which = data.figures[key];
    if (which === undefined) { return; }
    img.setAttribute("src", data.images[which]);
    img.setAttribute("alt", controls.map(function (c, i) {
      var name = c.getAttribute("data-control");
      return name + "=" + data.labels[name][index(c)];
    }).join(", "));
    controls.forEach(function (c) {
      var out = c.querySelector("output");
      if (out) { out.textContent = data.labels[c.getAttribute("data-control")][index(c)]; }
    });
  }
  root.addEventListener("change", update);
  root.addEventListener("input", update);
})();"""


def explorer_bundle(values: dict[str, list], pngs: list[bytes], *,
                    offered: dict[str, list] | None = None) -> dict[str, str]:
    """The display output of an explorer: text/html (the panel) for the HTML book and Jupyter, image/png (the
    default figure) for anything that shows images only, text/plain for a terminal."""
    summary = ", ".join(f"{n}: {len(v)} value(s)" for n, v in values.items())
    return {"text/html": explorer_html(values, pngs, offered=offered),
            "image/png": base64.b64encode(pngs[0]).decode(),
            "text/plain": f"<explorer: {len(pngs)} pre-rendered figures; {summary}>"}
