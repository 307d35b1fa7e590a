"""Cross-validated training on the smoke profile: results, frozen-mode caching, determinism, resume, NaN stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from helpers.config import make_config
from helpers.data.features import compute_features, data_fingerprint, extract_features, whisper_feature_extractor
from helpers.labels import EMOTIONS
from helpers.models.classifier import ModelSpec, load_whisper_classifier
from helpers.training import loop, runs
from helpers.training.frozen import head_logits, pooled_encoder_outputs
from helpers.training.runs import RunResults, load_corpus, run_cross_validation

pytestmark = pytest.mark.integration
METRIC_COLUMNS = ["fold", "chosen_epoch", "test_uar", "test_war", "test_macro_f1"]


def test_frozen_head_on_cached_encoder_outputs_equals_the_end_to_end_model(tiny_en_dir, spoken):
    model = load_whisper_classifier("tiny.en", max_seconds=4, seed=0).eval()
    features = extract_features(spoken[1], whisper_feature_extractor(model.config, 4))
    cached = pooled_encoder_outputs(model.encoder, features, device=torch.device("cpu"), batch_size=1)
    with torch.no_grad():
        end_to_end = model(input_features=features).logits
        from_cache = head_logits(model.projector, model.classifier, cached)
    torch.testing.assert_close(from_cache, end_to_end, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def smoke_lora(tiny_en_dir, tmp_path_factory):
    return run_cross_validation("smoke", cache_dir=tmp_path_factory.mktemp("run-a"), epochs=2)


def test_smoke_run_writes_tidy_results(smoke_lora):
    run = smoke_lora
    assert len(run.folds) == 2 and set(run.summary["metric"]) == {"uar", "war", "macro_f1"}
    for name in ("config.json", "folds.json", "run.json", "folds.csv", "summary.csv"):
        assert (run.run_dir / name).is_file(), name
    result = json.loads((run.run_dir / run.folds["fold"][0] / "result.json").read_text())
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert result["chosen_epoch"] in (1, 2) and len(result["test_confusion"]) == 4
    assert result["examples_per_second"] > 0 and not result["selection_on_test"]
    assert (run.run_dir / run.folds["fold"][0] / "model" / "adapter_model.safetensors").is_file()
    assert not (run.run_dir / run.folds["fold"][0] / "checkpoint").exists()
    reread = RunResults.read(run.run_dir)
    pd.testing.assert_frame_equal(reread.folds, run.folds)
    assert reread.config == run.config


def test_same_seed_same_metrics_and_reuse(smoke_lora, tmp_path):
    again = run_cross_validation("smoke", cache_dir=tmp_path, epochs=2)
    pd.testing.assert_frame_equal(again.folds[METRIC_COLUMNS], smoke_lora.folds[METRIC_COLUMNS])
    stamp = (again.run_dir / again.folds["fold"][0] / "result.json").stat().st_mtime_ns
    run_cross_validation("smoke", cache_dir=tmp_path, epochs=2)  # finished folds are skipped
    assert (again.run_dir / again.folds["fold"][0] / "result.json").stat().st_mtime_ns == stamp


def test_frozen_mode_runs(tiny_en_dir, tmp_path):
    run = run_cross_validation("smoke", cache_dir=tmp_path, mode="frozen", epochs=2)
    assert len(run.folds) == 2 and run.run_dir.name.startswith("frozen-speaker-")
    assert (run.run_dir / run.folds["fold"][0] / "model" / "head.safetensors").is_file()


def test_nan_loss_stops_with_the_step(tiny_en_dir, tmp_path, monkeypatch):
    real = compute_features
    monkeypatch.setattr(runs, "compute_features", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1: the loss is nan"):
        run_cross_validation("smoke", cache_dir=tmp_path, epochs=1)


def test_sigkill_then_rerun_gives_the_uninterrupted_metrics(smoke_lora, tmp_path):
    """Kill the CLI once the second fold has an epoch checkpoint, rerun, compare with the uninterrupted run."""
    cmd = [sys.executable, "-m", "helpers", "train", "--profile", "smoke", "--epochs", "2",
           "--cache-dir", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run_dir = runs.run_dir_for(make_config("smoke", epochs=2), data_fingerprint(
        load_corpus(make_config("smoke"), cache_dir=tmp_path)), cache_dir=tmp_path)
    folds = list(smoke_lora.folds["fold"])
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run_dir / folds[1] / "checkpoint" / "state.pt").is_file():
        assert process.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint of the second fold appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run_dir / folds[0] / "result.json").is_file()
    assert not (run_dir / folds[1] / "result.json").is_file()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = pd.read_csv(run_dir / "folds.csv")
    pd.testing.assert_frame_equal(resumed[METRIC_COLUMNS], smoke_lora.folds[METRIC_COLUMNS])


def test_a_fold_trained_after_skipped_folds_matches_a_straight_run(smoke_lora, tmp_path):
    run_cross_validation("smoke", cache_dir=tmp_path, epochs=2, max_folds=1)
    later = run_cross_validation("smoke", cache_dir=tmp_path, epochs=2)  # fold 1 skipped, fold 2 trained
    pd.testing.assert_frame_equal(later.folds[METRIC_COLUMNS], smoke_lora.folds[METRIC_COLUMNS])
    on_disk = pd.read_csv(later.run_dir / "folds.csv")
    assert list(on_disk["fold"]) == list(smoke_lora.folds["fold"])


def test_speed_settings_are_recorded_with_each_fold(smoke_lora):
    from helpers.book.results import speed_table
    from helpers.training.device import pick_device, resolve_precision

    device = pick_device("auto")
    result = json.loads((smoke_lora.run_dir / smoke_lora.folds["fold"][0] / "result.json").read_text())
    speed = result["speed"]
    assert speed["device"] == str(device) and speed["attention"] == "sdpa" and speed["compile"] is False
    assert speed["precision"] == str(resolve_precision(device, "auto")).replace("torch.", "")
    assert speed["tf32"] == (True if device.type == "cuda" else "n/a (not CUDA)")
    assert speed["input_seconds"] == json.loads((smoke_lora.run_dir / "run.json").read_text())["max_seconds"]
    row = speed_table([smoke_lora]).iloc[0]
    assert row["attention"] == "sdpa" and row["clips_per_second"] > 0 and row["n_folds"] == 2


def test_compiled_training_step_matches_the_plain_one(tiny_en_dir, tmp_path):
    """torch.compile is a speed setting: the loss and every LoRA gradient of a training step must not change."""
    from helpers.models.lora import redraw_lora

    config = make_config("smoke", max_seconds=2, dropout=0.0, device="cpu")
    table = load_corpus(config, cache_dir=tmp_path)
    spec = ModelSpec(labels=EMOTIONS, max_seconds=2, lora=config.lora)
    probe = load_whisper_classifier("tiny.en", max_seconds=2)
    inputs = compute_features(table.iloc[:4], whisper_feature_extractor(probe.config, 2), cache_dir=tmp_path)
    labels, idx = torch.tensor([0, 1, 2, 3]), torch.arange(4)
    steps = {}
    for compiled in (True, False):
        trainer = loop._FoldTrainer(make_config("smoke", max_seconds=2, dropout=0.0, compile=compiled), 0, spec,
                                        torch.device("cpu"), inputs, None)
        assert (trainer.forward is trainer.model) != compiled
        redraw_lora(trainer.model, init="official", seed=1)  # B != 0, so A's gradients are not all zero
        trainer.model.train()
        loss = torch.nn.functional.cross_entropy(trainer.logits(idx), labels)
        loss.backward()
        steps[compiled] = loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                                          if p.requires_grad and "lora_" in n}
    torch.testing.assert_close(steps[True][0], steps[False][0], rtol=1e-4, atol=1e-5)
    assert steps[False][1] and any(g.abs().max() > 0 for n, g in steps[False][1].items() if "lora_A" in n)
    for name, grad in steps[False][1].items():
        torch.testing.assert_close(steps[True][1][name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_resume_falls_back_to_the_set_aside_checkpoint(tmp_path):
    """A task killed between the renames of a checkpoint swap leaves checkpoint.old complete: resume uses it."""
    for name, files in (("checkpoint", ["state.pt"]), ("checkpoint.old", list(loop._CHECKPOINT_FILES))):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_bytes(b"x")
    assert loop._complete_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    for f in loop._CHECKPOINT_FILES:
        (tmp_path / "checkpoint" / f).write_bytes(b"x")
    assert loop._complete_checkpoint(tmp_path) == tmp_path / "checkpoint"
    assert loop._complete_checkpoint(tmp_path / "checkpoint") is None


@pytest.mark.parametrize("field, value", [("attention", "flash"), ("compile", "maybe"), ("tf32", 2)])
def test_speed_settings_are_validated(field, value):
    with pytest.raises(ValueError, match=f"RunConfig.{field}"):
        make_config("smoke", **{field: value})


def test_max_seconds_0_fits_99_percent_of_the_clips_and_reports_the_cut(tmp_path, caplog):
    """One 5 s clip among 100 of 1.2 s no longer makes every input 5 s: the fit is the 99th percentile (2 s), and
    the run logs and records what it cuts (issue 20)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for i in range(101):
        seconds = 5.0 if i == 0 else 1.2
        path = tmp_path / "audio" / f"c{i:03d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        rows.append(f"audio/{path.name},{('anger', 'sadness')[i % 2]},spk{i % 5}")
    (tmp_path / "m.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    assert runs.fit_max_seconds([1.2] * 100 + [5.0]) == 2 and runs.fit_max_seconds([1.2] * 100 + [600]) == 2
    assert runs.fit_max_seconds([1.2, 5.0]) == 5 and runs.fit_max_seconds([45.0] * 3) == 30
    config = make_config("smoke", data=str(tmp_path / "m.csv"), classes="anger,sadness", device="cpu")
    with caplog.at_level("INFO", logger="helpers.training.runs"):
        run = runs.prepare_run(config, cache_dir=tmp_path / "cache")
    assert run.max_seconds == 2
    assert ("max_seconds=2 (fitted: the 99th percentile of the clip lengths, rounded up): 1 of 101 clips are longer "
            "and are cut at 2 s, losing 3.00-3.00 s (3.00 s on average; the longest clip lasts 5.0 s)") in caplog.text
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["max_seconds"] == 2 and info["clips_cut_at_max_seconds"] == 1
    # the fitted length enters the run's key where it differs from the longest clip's (the fit before)
    unfitted = runs.run_dir_for(config, info["data_fingerprint"], cache_dir=tmp_path / "cache", device_type="cpu",
                                classes=("anger", "sadness"))
    assert run.run_dir != unfitted
