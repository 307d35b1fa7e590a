"""Notebook glue: rank parsing, explorers in both modes, settings per profile."""

import matplotlib
import pytest

from helpers.book import chapters
from helpers.book.plots import protocol_figure


def test_parse_ranks():
    assert chapters.parse_ranks("8,32,64") == (8, 32, 64)
    assert chapters.parse_ranks([4, 16]) == (4, 16)
    with pytest.raises(ValueError, match="ranks"):
        chapters.parse_ranks("8,0")


def test_explore_static_draws_every_combination_and_interactive_builds_widgets(monkeypatch):
    import base64

    import IPython.display
    import pandas as pd

    table = pd.DataFrame(dict(mode=["lora", "frozen"], protocol=["speaker"] * 2, uar_mean=[0.6, 0.4],
                              uar_std=[0.1, 0.1], war_mean=[0.5, 0.3], war_std=[0.1, 0.1]))
    calls = []

    def plot(metric="uar", ylim="unit"):
        calls.append((metric, ylim))
        return protocol_figure(table, metric=metric)

    outputs = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: outputs.append((obj, raw)))
    chapters.explore(plot, interactive=False, metric=["uar", "war"], ylim="unit")
    assert calls == [("uar", "unit"), ("war", "unit")]  # every value of every control, the default first
    ((bundle, raw),) = outputs
    assert raw  # a mime bundle, published as it is
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG") and bundle["image/png"] in bundle["text/html"]  # the default figure
    assert bundle["text/html"].count('type="radio"') == 2 and "2 figures drawn" in bundle["text/html"]

    shown = []
    monkeypatch.setattr(chapters, "show", lambda fig: shown.append(fig))
    chapters.explore(plot, interactive=False, metric=["war"])  # nothing to choose: one ordinary figure
    assert calls[-1] == ("war", "unit") and isinstance(shown[0], matplotlib.figure.Figure)
    chapters.explore(plot, interactive=True, metric=["uar"])  # ipywidgets.interact draws once on creation
    assert calls[-1] == ("uar", "unit") and len(calls) == 4


def test_analysis_settings_follow_the_profile():
    assert chapters.analysis_settings("paper").split == "validation"
    assert chapters.analysis_settings("demo", per_class=7).per_class == 7
    assert chapters.analysis_settings("smoke", split=None).per_class == 4


def test_generated_markdown_tables_become_html_tables():
    from helpers.book.reproducibility import markdown_html

    html = markdown_html("**book**\n\nsome text\n\n| chapter | s |\n|---|---|\n| data | 18.3 |\n| causal | 119.9 |")
    assert html.count("<tr>") == 3 and "<td>119.9</td>" in html and "|---|" not in html
    assert "<strong>book</strong>" in html

