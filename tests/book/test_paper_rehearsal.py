"""The paper profile rehearsed without a GPU or a licence (issue 19), on an IEMOCAP-like release made from the demo
synthesis (IEMOCAP's layout, label files and quirks) and an untrained Whisper with large-v2's layout at a narrow
width (32 layers, 30 s inputs, 1500 positions), so the IEMOCAP, 32-layer, 30 s and `lora_frames` code paths run.

In `make test`, all of it: the paper profile's first dialog fold trained for one epoch and traced with the paper's
analysis settings (`lora_frames` 50), then every chapter of the book under `--profile paper` with `-p epochs 1 -p
max_folds 1` (one trained fold per protocol and rank) on the same cache, its causal experiments cut by the chapter
parameters in `CAUSAL_CUT` (the per-layer sweeps at one layer in 4 from the top, 4 random control sets; the top
quarter of the 32 layers, the bottom half and every layer are still ablated). Measured on this project's 2-core
CPU (2026-12-06, load average 0.5-1.4 during the run): 151 s for the module, of which
the book 136 s (chapters: data 9, finetuning 18, layer contributions 10, logit lens 9, ranks 21, SVD 11, CKA 9,
causal 32, scorecard 10, reproducibility 4), the one-fold test 7 s and the release 6 s. With every layer swept
(the paper's default) the causal chapter took 76 s and the book 193 s. The 10 dialog folds, their leak and their
epoch selection on the test fold are also checked without training in
`tests/data/test_rehearsal.py::test_paper_profile_on_the_iemocap_like_release_makes_the_official_ten_leaky_dialog_folds`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from built_pages import assert_every_chapter_executed, page_text
from safetensors import safe_open

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WIDTH = 16  # the narrow Whisper's d_model
# the causal experiments cut for a CPU (chapter parameters; the paper's defaults sweep every layer, 20 random sets)
CAUSAL_CUT = {"causal_layer_step": 4, "causal_random_sets": 4}


@pytest.fixture(scope="module")
def rehearsal_inputs(tmp_path_factory):
    """The IEMOCAP-like release (one scripted dialog per leading actor, 5 turns: 4 clips per fold, one per class,
    and one `xxx`) and the narrow large-v2: (base folder, cache, release, model)."""
    from helpers.data.rehearsal import write_iemocap_like
    from helpers.models.weights import write_narrow_whisper

    base = tmp_path_factory.mktemp("paper")
    cache = base / "cache"
    release = write_iemocap_like(base / "IEMOCAP_full_release", clips_per_dialog=5, dialogs=("script01_1",),
                                 cache_dir=cache)
    model = write_narrow_whisper(base / "narrow-large-v2", d_model=WIDTH, heads=1, ffn=64)
    return base, cache, release, model


def test_paper_profile_trains_and_traces_a_dialog_fold_at_32_layers_and_30_s(rehearsal_inputs):
    from helpers.analysis.traces import fold_traces
    from helpers.book.chapters import ANALYSIS_DEFAULTS
    from helpers.models.classifier import read_spec
    from helpers.training.runs import run_cross_validation

    _, cache, release, model = rehearsal_inputs
    start = time.perf_counter()
    run = run_cross_validation("paper", cache_dir=cache, data=f"iemocap:{release}", model=str(model), epochs=1,
                               max_folds=1)
    result = run.folds.iloc[0]
    assert (result["fold"], result["n_train"], result["n_test"]) == ("dialog-Ses01F", 36, 4)
    assert result["chosen_epoch"] == 1 and result["selected_by"] == "war" and result["selection_on_test"]
    assert read_spec(run.run_dir / "dialog-Ses01F" / "model").max_seconds == 30
    traces = fold_traces(run, None, fold_index=0, settings=ANALYSIS_DEFAULTS["paper"], kinds=("lora",))
    trace = traces["lora"]
    assert trace["h_norm"].shape == (4, 32, 1500)  # the validation (= test) fold, every layer and 30 s position
    assert trace["pooled_all"].shape == (4, 33, WIDTH)  # embeddings + 32 layers
    assert list(trace["lora_frames"]) == [round(i * 1499 / 49) for i in range(50)]  # lora_frames 50, evenly spaced
    assert sorted(int(n.split(".")[1]) for n in trace.lora_names) == list(range(32))
    assert trace[f"{trace.lora_names[-1]}.A"].shape == (4, 50, 32)  # rank 32 at 50 frames
    print(f"paper rehearsal, one fold trained and traced: {time.perf_counter() - start:.0f} s")


@pytest.fixture(scope="module")
def paper_book(rehearsal_inputs):
    """The paper book built from a copy of the repository on the cache the one-fold test trained in (so the book
    reuses that fold), with the causal experiments cut by `CAUSAL_CUT`: (copy, cache, build log, seconds)."""
    base, cache, release, model = rehearsal_inputs
    copy = base / "repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "_build", ".git", "executed", "__pycache__",
                                                              ".pytest_cache"))
    env = {**os.environ, "BTS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(copy / "src")}
    start = time.perf_counter()
    cut = [word for name, value in CAUSAL_CUT.items() for word in ("-p", name, str(value))]
    result = subprocess.run([sys.executable, "-m", "helpers.book", "--profile", "paper",
                             "-p", "data", f"iemocap:{release}", "-p", "model", str(model),
                             "-p", "epochs", "1", "-p", "max_folds", "1", *cut],
                            cwd=copy, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return copy, cache, result.stdout, time.perf_counter() - start


def test_every_chapter_of_the_paper_book_executes(paper_book):
    copy, _, log, seconds = paper_book
    print(f"paper rehearsal book: {seconds:.0f} s;", "; ".join(re.findall(r"chapter \w+: [\d.]+ s", log)))
    assert_every_chapter_executed(copy, log)
    assert "protocol, 1 fold of the first training seed" in page_text(copy, "finetuning")  # not "1 folds"


def test_the_data_chapter_shows_ten_leaky_dialog_folds_and_the_dropped_codes(paper_book):
    copy = paper_book[0]
    data = page_text(copy, "data")
    for s in range(1, 6):
        for g in "FM":  # every dialog fold tests both actors of its sessions, who also train: 2 leak
            assert f"dialog-Ses0{s}{g} Ses0{s}{g} (the test fold) 36 4 4 2 dialog" in data, (s, g)
    assert re.search(r"label \S*xxx\S* not mapped to a class \(dropped\) 10 True", data)  # one per dialog


def test_traces_keep_lora_frames_of_32_layers_at_30_s(paper_book):
    cache = paper_book[1]
    traces = sorted(cache.glob("runs/lora-dialog-*/dialog-Ses01F/traces/lora-*.safetensors"))
    assert traces
    with safe_open(str(traces[0]), "pt") as f:
        names = list(f.keys())
        assert f.get_slice("h_norm").get_shape()[1:] == [32, 1500]  # every layer, every 30 s position
        assert f.get_slice("pooled_all").get_shape()[1:] == [33, WIDTH]  # embeddings + 32 layers
        frames = f.get_tensor("lora_frames")
    assert len(frames) == 50 and int(frames[0]) == 0 and int(frames[-1]) == 1499  # lora_frames 50, evenly spaced
    layers = {int(n.split(".")[1]) for n in names if n.startswith("lora.") and n.endswith(".A")}
    assert layers == set(range(32))


def test_depth_claims_are_judged_at_32_layers_and_the_scorecard_has_every_claim(paper_book):
    copy = paper_book[0]
    contributions = page_text(copy, "layer_contributions")
    assert "32 layers" in contributions and "top quarter (layers 24-31)" in contributions  # 8 of 32
    assert "output (index 32)" in page_text(copy, "logit_lens")  # embeddings + 32 layers
    assert "top quarter" in page_text(copy, "causal")
    scorecard = page_text(copy, "scorecard")
    assert "Rank sensitivity" in scorecard and "LoRA beats the frozen encoder" in scorecard


def test_the_causal_experiments_judge_the_top_quarter_of_32_layers_on_the_swept_layers(paper_book):
    """The cut causal experiments still run at 32 layers: the top quarter (8 layers), the bottom half and every
    layer are ablated whatever the step, the random control sets have the top quarter's size, and the causal and
    scorecard chapters share one record (the same settings reach both)."""
    from helpers.analysis.causal import swept_depths, swept_layers
    from helpers.analysis.tracing import Trace

    copy, cache = paper_book[:2]
    paths = sorted(cache.glob("runs/lora-dialog-*/dialog-Ses01F/causal/*.safetensors"))
    assert len(paths) == 1, paths
    record = Trace.load(paths[0])
    meta, step = record.meta, CAUSAL_CUT["causal_layer_step"]
    assert (meta["n_layers"], meta["top_quarter"], meta["bottom_half"]) == (32, 8, 16)
    settings = meta["settings"]
    assert (settings["layer_step"], settings["random_sets"]) == (step, CAUSAL_CUT["causal_random_sets"])
    assert meta["swept_layers"] == list(swept_layers(32, step))
    assert meta["swept_depths"] == list(swept_depths(32, step))
    for key in ("ablate.top.8", "ablate.bottom.16", "ablate.bottom.32", "antialigned.lora.top.8", "final.untrained"):
        assert record[key].shape == (len(record["labels"]), 4), key
    randoms = [meta["ablations"][k]["layers"] for k in meta["ablations"] if k.startswith("random.")]
    assert len(randoms) == CAUSAL_CUT["causal_random_sets"] and all(len(r) == 8 for r in randoms)
    patched = sorted(int(k.rsplit(".", 1)[1]) for k in record.arrays if k.startswith("patch.frozen>lora.attention."))
    assert patched == list(swept_layers(32, step))
    assert f"layers {', '.join(map(str, swept_layers(32, step)))} (of 0-31)" in page_text(copy, "causal")
