"""Every page of the smoke book in headless Chromium (`helpers.book.browser`): no console errors or failed loads,
every image decodes, every explorer control shows another figure, the scorecard table is there and the chapters'
claim links land on its rows, no raw Markdown shows; a full-page screenshot of each page under
`<book>/_build/screenshots/`. A small hand-made site checks that the checker catches each of these faults.

Chromium comes from the system (`make test` installs Debian's where it is missing). Without it the tests fail on
Linux and are skipped elsewhere.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import pytest

from helpers.book.browser import check_book, find_chromium
from helpers.book.build import CHAPTERS

EXPLORERS = {"data": 1, "finetuning": 1, "layer_contributions": 1, "logit_lens": 1, "ranks": 1, "svd": 1, "cka": 1,
             "causal": 3}
VERDICT_CHAPTERS = ("finetuning", "layer_contributions", "logit_lens", "ranks", "svd", "cka", "causal")


def _chromium() -> str:
    executable = find_chromium()
    if executable is None:
        if sys.platform.startswith("linux"):
            pytest.fail("no Chromium: `make test` installs Debian's (apt-get install chromium); or set BTS_CHROMIUM "
                        "to a Chromium or Chrome executable")
        pytest.skip(f"no Chromium or Chrome on {sys.platform}: install one (or set BTS_CHROMIUM) for the browser "
                    "tests")
    return executable


@pytest.fixture(scope="module")
def browsed(built_book):
    """Every page of the smoke book checked in Chromium: ({page: PageReport}, the book's copy, seconds taken)."""
    executable = _chromium()
    copy, _ = built_book
    start = time.perf_counter()
    reports = check_book(copy / "_build" / "html", copy / "_build" / "screenshots", executable=executable)
    seconds = time.perf_counter() - start
    print(f"\nbrowser: {len(reports)} pages in {seconds:.1f} s; screenshots in {copy / '_build' / 'screenshots'}")
    return {r.page: r for r in reports}, copy, seconds


def _chapter(page: str) -> str:
    return Path(page).stem


@pytest.mark.integration
def test_every_page_of_the_book_is_opened(browsed):
    reports, _, _ = browsed
    expected = {f"book/executed/{c}.html" for c in CHAPTERS} | {"book/intro.html", "book/references.html",
                                                                 "genindex.html", "search.html"}
    assert expected <= set(reports)


@pytest.mark.integration
def test_every_page_loads_without_console_errors_or_failed_loads(browsed):
    reports, _, _ = browsed
    errors = {page: r.errors for page, r in reports.items() if r.errors}
    assert not errors


@pytest.mark.integration
def test_every_image_decodes(browsed):
    from test_build import FIGURES  # the figures each chapter draws

    reports, _, _ = browsed
    assert not {page: r.broken_images for page, r in reports.items() if r.broken_images}
    for chapter, figures in FIGURES.items():
        assert reports[f"book/executed/{chapter}.html"].images >= figures, chapter


@pytest.mark.integration
def test_no_raw_markdown_shows(browsed):
    reports, _, _ = browsed
    assert not {page: r.raw_markdown for page, r in reports.items() if r.raw_markdown}


@pytest.mark.integration
def test_every_explorer_control_shows_another_figure(browsed):
    reports, _, _ = browsed
    for chapter, explorers in EXPLORERS.items():
        report = reports[f"book/executed/{chapter}.html"]
        assert report.explorers == explorers, chapter
        assert report.controls >= explorers, chapter  # each explorer offers at least one control
        assert not report.dead_controls, (chapter, report.dead_controls)


@pytest.mark.integration
def test_the_scorecard_page_has_its_table_and_every_chapter_links_into_it(browsed):
    from helpers.book.scorecard import CLAIM_IDS

    reports, _, _ = browsed
    scorecard = reports["book/executed/scorecard.html"]
    assert scorecard.verdict_tables == 1
    assert {f"claim-{c}" for c in CLAIM_IDS} <= set(scorecard.claim_ids)
    for chapter in VERDICT_CHAPTERS:
        report = reports[f"book/executed/{chapter}.html"]
        assert report.verdict_tables == 1 and report.claim_links, chapter
        targets = {link.split("#", 1)[1] for link in report.claim_links}
        assert targets <= set(scorecard.claim_ids), (chapter, targets - set(scorecard.claim_ids))


@pytest.mark.integration
def test_a_screenshot_of_every_page(browsed):
    reports, copy, _ = browsed
    for page, report in reports.items():
        shot = copy / "_build" / "screenshots" / f"{Path(page).stem}.png"
        assert report.screenshot == shot and shot.is_file(), page
        header = shot.read_bytes()[:24]
        width, height = struct.unpack(">II", header[16:24])
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and width == 1280 and height >= 600, (page, width, height)


# ------------------------------------------------------------------------------------------------------------------
# The checker itself, on hand-made pages: each fault it looks for is found, and a sound page passes


def _site(tmp_path: Path) -> Path:
    import io

    from PIL import Image

    from helpers.book.explorer import explorer_html

    def png(shade: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (60, 40), (shade * 8, 100, 200)).save(buffer, format="PNG")
        return buffer.getvalue()

    values = {"metric": ["uar", "war"], "layer": [0, 2, 4], "label": ["a", "b", "c", "d", "e"]}
    pngs = [png(i) for i in range(2 * 3 * 5)]
    panel = explorer_html(values, pngs)
    dead = panel[:panel.rindex("<script>")] + "</div>"  # the same panel without its script: controls do nothing
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'></head>"
            "<body>{}</body></html>")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sound.html").write_text(page.format(f"<h1>Sound</h1><p>A table: <code>|---|</code></p>{panel}"))
    (site / "broken.html").write_text(page.format(
        "<h1>Broken</h1><img src='missing.png'><script>console.error('boom')</script>"
        "<script>undefined_function()</script><p>| a | b |<br>|---|---|</p><p>$$x^2$$</p>" + dead))
    return site


def test_the_checker_passes_a_sound_page_and_names_each_fault_of_a_broken_one(tmp_path):
    site = _site(tmp_path)
    reports = {r.page: r for r in check_book(site, tmp_path / "shots", executable=_chromium())}
    sound, broken = reports["sound.html"], reports["broken.html"]
    assert sound.problems == [] and sound.explorers == 1 and sound.controls == 3 and sound.images == 1
    assert (tmp_path / "shots" / "sound.png").is_file()

    assert any("console.error: boom" in e for e in broken.errors)
    assert any("undefined_function" in e for e in broken.errors)  # an uncaught exception
    assert any("404" in e and "missing.png" in e for e in broken.errors)  # a failed load
    assert [i for i in broken.broken_images if "missing.png" in i]
    assert any("|---|---|" in t for t in broken.raw_markdown) and any("$$" in t for t in broken.raw_markdown)
    assert len(broken.dead_controls) == 3  # radio buttons, slider and menu: none swaps the figure
