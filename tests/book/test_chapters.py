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
        return protocol_figure(table, metric=metric, n_classes=4)

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


def test_claim_rows_have_ids_and_each_claim_links_to_its_scorecard_row():
    import re

    import pandas as pd

    claims = pd.DataFrame(dict(
        id=["lora_beats_frozen", "k90_A", "k90_A", "k90_A"],
        claim=["LoRA beats the frozen encoder", "LoRA_A activations", "LoRA_A activations", "LoRA_A activations"],
        frames=["-", "all", "speech", "speech"], measured=["0.9 [0.8, 1.0]"] * 4, control=["-"] * 4,
        verdict=["holds", "does not hold", "inconclusive", "holds"]))
    table = chapters.claims_html(claims)
    rows = re.findall(r"<tr( id=\"[^\"]+\")?>(.*?)</tr>", table)[1:]
    assert [r[0] for r in rows] == [' id="claim-lora_beats_frozen"', ' id="claim-k90_A-all"',
                                    ' id="claim-k90_A-speech"', ' id="claim-k90_A-speech-2"']  # unique ids
    assert '<span id="claim-k90_A"></span>' in rows[1][1]  # the claim's first row answers to claim-<id>
    assert table.count('<span id="claim-k90_A">') == 1
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', table)
    assert links[0] == ("scorecard.html#claim-lora_beats_frozen", "LoRA beats the frozen encoder")
    assert links[1] == ("scorecard.html#claim-k90_A-all", "LoRA_A activations")
    ids = set(re.findall(r'id="([^"]+)"', table))
    assert {href.split("#")[1] for href, _ in links} <= ids  # every link lands on a row of a scorecard like this
    assert "<a " not in chapters.claims_html(claims, scorecard_page=None)
    assert chapters.claim_anchor("a b/c", "speech") == "claim-a-b-c-speech"


def test_chance_lines_are_one_over_the_run_classes_and_every_class_has_a_colour():
    import numpy as np
    import pandas as pd

    from helpers.book.plots import class_colors, metric_bars_figure, separability_figure, tsne_figure

    table = pd.DataFrame(dict(mode=["lora", "frozen"], protocol=["speaker"] * 2, uar_mean=[0.6, 0.4],
                              uar_std=[0.1, 0.1], war_mean=[0.5, 0.3], war_std=[0.1, 0.1]))

    def lines_at(fig):
        return sorted({round(float(np.asarray(line.get_ydata())[0]), 4) for ax in fig.axes for line in ax.lines
                       if len(set(np.asarray(line.get_ydata()).tolist())) == 1})

    assert 0.1667 in lines_at(protocol_figure(table, n_classes=6)) and 0.25 not in lines_at(
        protocol_figure(table, n_classes=6))
    assert 0.5 in lines_at(metric_bars_figure(table, n_classes=2))
    sep = pd.DataFrame(dict(rank=[8, 8], state=[0, 1], silhouette_all=[0.1, 0.2], knn_uar=[0.3, 0.4]))
    assert 0.1667 in lines_at(separability_figure(sep, n_classes=6))
    with pytest.raises(ValueError, match="n_classes=1"):
        metric_bars_figure(table, n_classes=1)
    six = ("anger", "happiness", "neutral", "sadness", "fear", "disgust")
    colors = class_colors(six)
    assert colors["anger"] == "tab:red" and colors["sadness"] == "tab:blue" and len(set(colors.values())) == 6
    assert class_colors(("fear", "anger")) == {"fear": colors["fear"], "anger": "tab:red"}
    maps = {(8, 0): np.random.default_rng(0).normal(size=(12, 2))}
    fig = tsne_figure(maps, np.arange(12) % 6, six)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == list(six)


def test_every_chapter_with_run_settings_takes_the_class_and_fold_settings():
    """So `make book CLASSES=... LABEL_MAP=... PROTOCOL=speakers-k` (`-p NAME VALUE`) reaches every chapter that
    reads a run, and papermill parses each of them (a comment with an '=' would hide the parameter)."""
    from helpers.book.build import CHAPTERS, chapter_parameters

    wanted = {"data", "classes", "label_map", "protocol", "folds_k", "validation_speakers", "max_folds"}
    for name in CHAPTERS:
        if name != "reproducibility":
            assert wanted <= chapter_parameters(name), (name, wanted - chapter_parameters(name))


def test_causal_settings_are_the_profiles_unless_a_chapter_parameter_says_otherwise():
    """`causal_layer_step`, `causal_random_sets` and `causal_probe_per_class` (papermill or `-p`) replace only
    their own field of the profile's settings; None keeps the profile's, a value that is not a whole number in
    range is refused with its name."""
    assert chapters.causal_settings("paper") == chapters.CAUSAL_DEFAULTS["paper"]
    cut = chapters.causal_settings("paper", layer_step=4, random_sets=4.0, probe_per_class=None)
    assert (cut.layer_step, cut.random_sets, cut.probe_per_class) == (4, 4, 100)
    assert cut.batch_size == chapters.CAUSAL_DEFAULTS["paper"].batch_size and cut.key() != chapters.causal_settings(
        "paper").key()
    for bad in (dict(layer_step=2.5), dict(random_sets="four"), dict(layer_step=0), dict(probe_per_class=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            chapters.causal_settings("paper", **bad)


def test_comparison_protocols_never_run_more_folds_than_asked(monkeypatch):
    """A rehearsal of the paper profile cut to one fold (max_folds 1) runs one fold of each comparison protocol,
    not the paper's every fold (PROTOCOL_FOLDS 0); the demo's limit of 1 stays when more are asked."""
    asked = []
    monkeypatch.setattr(chapters, "unsplittable_protocols", lambda *a, **k: {})
    monkeypatch.setattr(chapters, "run_cross_validation", lambda profile, **o: asked.append(
        (o["protocol"], o.get("max_folds"))))
    chapters.protocol_runs("paper", data="demo", max_folds=1)
    assert sorted(set(asked)) == [("dialog", 1), ("session", 1), ("speaker", 1)]
    asked.clear()
    chapters.protocol_runs("paper", data="demo")
    assert sorted(set(asked)) == [("dialog", None), ("session", 0), ("speaker", 0)]
    asked.clear()
    chapters.protocol_runs("demo", max_folds=3)
    assert sorted(set(asked)) == [("dialog", 1), ("speaker", 3)]
