"""The whole book on the smoke profile: every chapter through papermill, then jupyter-book, then the pages (the
build itself is the session fixture `built_book`, tests/book/conftest.py)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.book.build import CHAPTERS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_every_chapter_executes_without_error_or_widget(built_book):
    copy, log = built_book
    for name in CHAPTERS:
        assert f"chapter {name}:" in log
        nb = nbformat.read(copy / "book" / "executed" / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], name
        assert not [o.text for o in outputs if o.get("name") == "stderr"], name  # no warnings on the pages
        hidden = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
        assert hidden and all("remove-cell" in c.metadata["tags"] for c in hidden), name


FIGURES = {"data": 1, "finetuning": 2, "layer_contributions": 1, "logit_lens": 1, "ranks": 2, "svd": 1, "cka": 1,
           "causal": 4}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_page_holds_its_figures_and_tables(built_book, chapter):
    copy, _ = built_book
    html = (copy / "_build" / "html" / "book" / "executed" / f"{chapter}.html").read_text()
    assert html.count("<img") >= FIGURES.get(chapter, 0)
    assert "<table" in html
    assert "Traceback" not in html
    assert "Run settings" in html
    assert f'href="../../source-notebooks/{chapter}.ipynb"' in html
    assert (copy / "_build" / "html" / "source-notebooks" / f"{chapter}.ipynb").is_file()
    assert f"_sources/book/executed/{chapter}.ipynb" in html  # the download of the executed notebook
    assert "cdn.jsdelivr.net/npm/mathjax" not in html  # MathJax, where a page has math, comes from the book itself
    if chapter == "causal":
        assert "_static/mathjax/tex-mml-chtml.js" in html
    assert (copy / "_build" / "html" / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_scorecard_lists_every_claim_with_a_verdict_control_and_interval(built_book):
    copy, _ = built_book
    text = re.sub(r"<[^>]+>", " ", (copy / "_build" / "html" / "book" / "executed" / "scorecard.html").read_text())
    claims = ["LoRA beats the frozen encoder", "LoRA UAR grows with model size", "near zero early",
              "attention grows more than the MLP", "Cosine differences grow negative", "minimum near 85% depth",
              "rebounds at the top", "then drops late", "prediction overlap rises late",
              "Cluster separation grows with rank", "LoRA_A activations", "LoRA_A gradients", "LoRA_B activations",
              "LoRA_B gradients", "Forward CKA", "Gradient CKA", "concentrated in the top layers (causal)",
              "than the MLP (causal)"]
    for claim in claims:
        assert claim in text, claim
    nb = nbformat.read(copy / "book" / "executed" / "scorecard.ipynb", as_version=4)
    table_html = next(o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                      if "<th>verdict</th>" in o.get("data", {}).get("text/html", ""))
    rows = re.findall(r"<tr[^>]*>.*?</tr>", table_html, flags=re.S)[1:]
    verdicts = [re.findall(r"<td[^>]*>(holds|does not hold|inconclusive|not testable)</td>", r) for r in rows]
    assert rows and all(len(v) == 1 for v in verdicts)
    per_frame = [r for r in rows if "<td>all</td>" in r or "<td>speech</td>" in r]
    assert sum("<td>speech</td>" in r for r in per_frame) == sum("<td>all</td>" in r for r in per_frame) > 5
    measured = [r for r in rows if "not testable" not in r]
    assert measured and all(re.search(r"\[[-+]?\d", r) for r in measured)  # every verdict shows an interval


VERDICT_CHAPTERS = ("finetuning", "layer_contributions", "logit_lens", "ranks", "svd", "cka", "causal")


def test_scorecard_rows_have_ids_and_every_chapter_links_its_claims_to_them(built_book):
    from helpers.book.scorecard import CLAIM_IDS

    copy, _ = built_book
    pages = copy / "_build" / "html" / "book" / "executed"
    ids = set(re.findall(r'id="(claim-[^"]+)"', (pages / "scorecard.html").read_text()))
    assert {f"claim-{c}" for c in CLAIM_IDS} <= ids
    per_frame = ("contribution_grows_late", "k90_A", "forward_cka_high")
    assert {f"claim-{c}-{f}" for c in per_frame for f in ("all", "speech")} <= ids  # a row per frame selection
    for chapter in VERDICT_CHAPTERS:
        links = re.findall(r'href="scorecard.html#([^"]+)"', (pages / f"{chapter}.html").read_text())
        assert links, chapter
        assert set(links) <= ids, (chapter, set(links) - ids)


def _rerun_box_command(nb) -> str:
    (box,) = [c.source for c in nb.cells
              if c.cell_type == "markdown" and "{admonition} Rerun this chapter" in c.source]
    return box.split("```bash\n")[1].split("\n```")[0]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_page_shows_the_command_that_reruns_it_with_the_builds_parameters(built_book, chapter, cache_dir,
                                                                                read_papermill_command):
    from helpers.book.build import parameter_defaults

    copy, _ = built_book
    nb = nbformat.read(copy / "book" / "executed" / f"{chapter}.ipynb", as_version=4)
    command = _rerun_box_command(nb)
    env, words, parsed = read_papermill_command(command)
    used = nb.metadata["papermill"]["parameters"]  # what the build passed, as papermill recorded it
    defaults = parameter_defaults(chapter, copy)
    assert {**defaults, **parsed} == {**defaults, **used}
    assert parsed["profile"] == "smoke" and words[3] == f"notebooks/{chapter}.ipynb"
    assert words[1:3] == ["--engine", "helpers"]
    assert env == {"BTS_CACHE_DIR": str(Path(cache_dir).resolve())}  # the test build's cache is not the default
    page = (copy / "_build" / "html" / "book" / "executed" / f"{chapter}.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "Rerun this chapter" in text and command in text


def test_a_rerun_box_command_reproduces_the_page(built_book, cache_dir):
    """The data chapter's command, run in a shell as printed (only the venv's path is this interpreter's)."""
    copy, _ = built_book
    built = nbformat.read(copy / "book" / "executed" / "data.ipynb", as_version=4)
    papermill = str(Path(sys.executable).with_name("papermill"))
    command = _rerun_box_command(built).replace(".venv/bin/papermill", papermill)
    env = {k: v for k, v in os.environ.items() if k not in ("BTS_CACHE_DIR", "BTS_WIDGETS")}
    result = subprocess.run(["bash", "-c", command], cwd=copy, capture_output=True, text=True, timeout=600,
                            env={**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(copy / "src")})
    assert result.returncode == 0, result.stderr[-4000:]
    rerun = nbformat.read(copy / "data-rerun.ipynb", as_version=4)
    assert rerun.metadata["papermill"]["parameters"] == built.metadata["papermill"]["parameters"]
    outputs = [o for c in rerun.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "bts-explorer" in o.get("data", {}).get("text/html", "")]  # the same explorer


def test_chapter_timings_are_recorded(built_book):
    copy, _ = built_book
    timings = json.loads((copy / "book" / "executed" / "timings.json").read_text())
    assert set(timings) == set(CHAPTERS) and all(t > 0 for t in timings.values())


def test_a_rebuild_re_executes_only_the_chapters_whose_inputs_changed(built_book, cache_dir):
    copy, _ = built_book
    env = {**os.environ, "BTS_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(copy / "src")}

    def rebuild() -> str:
        result = subprocess.run([sys.executable, "-m", "helpers.book", "--profile", "smoke"], cwd=copy, env=env,
                                capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    log = rebuild()
    assert all(f"chapter {name}: unchanged" in log for name in CHAPTERS), log
    notebook = copy / "notebooks" / "reproducibility.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("An edit a reader made."))
    nbformat.write(nb, notebook)
    log = rebuild()
    assert re.search(r"chapter reproducibility: \d+\.\d s", log), log
    assert all(f"chapter {name}: unchanged" in log for name in CHAPTERS if name != "reproducibility"), log
    page = (copy / "_build" / "html" / "book" / "executed" / "reproducibility.html").read_text()
    assert "An edit a reader made." in page


# ------------------------------------------------------------------------------------------------------------------
# Rerunning chapters as a reader does (issue 12): papermill from the shell, after `make book`, no `interactive`


def _printed_rerun_commands() -> list[str]:
    """Every papermill or book-driver command printed in the README and the book's intro."""
    commands = []
    for doc in (ROOT / "README.md", ROOT / "book" / "intro.md"):
        for line in doc.read_text().splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith((".venv/bin/papermill", ".venv/bin/python -m helpers.book")):
                commands.append(line)
    return commands


def _as_smoke(command: str) -> list[str] | None:
    """The command on the smoke profile with this interpreter's venv; None for paper-profile (GPU, IEMOCAP) ones."""
    if "-p profile paper" in command:
        return None
    words = command.replace("-p profile demo", "-p profile smoke").split()
    words[0] = str(Path(sys.executable).with_name(Path(words[0]).name))
    if words[1:3] == ["-m", "helpers.book"] and "--profile" not in words:
        words += ["--profile", "smoke"]
    return words


def _run(words: list[str], cwd: Path, cache_dir: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "BTS_CACHE_DIR": cache_dir, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(cwd / "src")}
    env.pop("BTS_WIDGETS", None)
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _code_outputs(path: Path) -> list:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_the_printed_rerun_commands_complete(built_book, cache_dir):
    copy, _ = built_book
    commands = _printed_rerun_commands()
    assert len(commands) >= 4 and all("--engine helpers" in c for c in commands if "papermill" in c)
    ran = 0
    for command in commands:
        words = _as_smoke(command)
        if words is None:
            continue
        result = _run(words, copy, cache_dir)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        if "papermill" in words[0]:
            outputs = _code_outputs(copy / words[words.index("--engine") + 3])
            assert not [o for o in outputs if o.output_type == "error"], command
        ran += 1
    assert ran >= 3


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_reruns_headless_with_static_figures(built_book, cache_dir, chapter):
    """papermill with the documented parameters only: the explorers draw PNGs, no widget is left in the output."""
    copy, _ = built_book
    out = copy / f"rerun-{chapter}.ipynb"
    papermill = str(Path(sys.executable).with_name("papermill"))
    result = _run([papermill, "--engine", "helpers", f"notebooks/{chapter}.ipynb", str(out), "-p", "profile", "smoke"],
                  copy, cache_dir, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Unable to parse" not in result.stderr
    outputs = _code_outputs(out)
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= FIGURES.get(chapter, 0)


def test_a_chapter_with_widgets_on_holds_a_widget_view(built_book, cache_dir):
    copy, _ = built_book
    out = copy / "widgets-cka.ipynb"
    papermill = str(Path(sys.executable).with_name("papermill"))
    result = _run([papermill, "--engine", "helpers", "notebooks/cka.ipynb", str(out), "-p", "profile", "smoke",
                   "-p", "interactive", "True"], copy, cache_dir, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    views = [o for o in _code_outputs(out) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "no widget view in the output"
    state = nbformat.read(out, as_version=4).metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    model_id = views[-1]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert model_id in state["state"]  # the view's model is saved, so a widget-aware viewer can render it
