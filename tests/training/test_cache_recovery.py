"""Damaged caches and concurrent runs: every bad cache file is named, set aside and rebuilt, a rerun gives the
metrics of an undisturbed run, and three processes running one config at once agree without crashing (issue 20)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers.config import make_config
from helpers.data.features import compute_features, whisper_feature_extractor
from helpers.io import check_tensors, file_sha256, load_tensors_checked
from helpers.models.weights import resolve_whisper_source
from helpers.training import loop
from helpers.training.frozen import cached_frozen_outputs
from helpers.training.runs import load_corpus, run_cross_validation

pytestmark = pytest.mark.integration
SMOKE = dict(epochs=2, max_folds=1, max_seconds=2)  # one fold, two epochs (so a checkpoint can be resumed), 2 s
METRICS = ["fold", "chosen_epoch", "test_uar", "test_war", "test_macro_f1"]


def _fresh_cache(folder: Path, tiny_en_dir: Path) -> Path:
    """An empty cache folder sharing the session's converted tiny.en through a link (nothing here damages it)."""
    (folder / "whisper").mkdir(parents=True)
    (folder / "whisper" / "tiny.en").symlink_to(tiny_en_dir)
    return folder


def _copy_cache(source: Path, folder: Path, *, unfinished: bool = False) -> Path:
    """A copy of a cache folder; `unfinished` drops the folds' results and models, so they train again."""
    shutil.copytree(source, folder, symlinks=True, dirs_exist_ok=True)
    if unfinished:
        for result in folder.glob("runs/*/*/result.json"):
            result.unlink()
            shutil.rmtree(result.parent / "model")
    return folder


def _damage(path: Path, keep: int) -> None:
    """Keep the first `keep` bytes of `path`, in a new file (a tensor loaded from the old one may still map it)."""
    data = path.read_bytes()[:keep]
    path.unlink()
    path.write_bytes(data)


def _set_aside(folder: Path, name: str) -> list[str]:
    """What `helpers.io.set_aside` made of `folder / name`."""
    return [p.name for p in folder.glob(f"{name}.corrupt-*")]


def _whisper_config(cache: Path):
    from transformers import WhisperConfig

    return WhisperConfig.from_pretrained(resolve_whisper_source("tiny.en", cache_dir=cache))


@pytest.fixture(scope="module")
def reference(tiny_en_dir, tmp_path_factory):
    """An undisturbed smoke run: the metrics every recovered run must reproduce."""
    cache = _fresh_cache(tmp_path_factory.mktemp("reference"), tiny_en_dir)
    return cache, run_cross_validation("smoke", cache_dir=cache, **SMOKE)


def _fold_dir(cache: Path, reference) -> Path:
    run = reference[1]
    return cache / "runs" / run.run_dir.name / run.folds["fold"][0]


def _rerun_matches(cache: Path, reference) -> None:
    again = run_cross_validation("smoke", cache_dir=cache, **SMOKE)
    pd.testing.assert_frame_equal(again.folds[METRICS], reference[1].folds[METRICS])


# ------------------------------------------------------------------------------------------------------------------
# derived caches: features, frozen-encoder outputs, converted weights


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_features_and_encoder_outputs_are_named_set_aside_and_recomputed(reference, tmp_path, caplog,
                                                                                 damage):
    cache = _copy_cache(reference[0], tmp_path)
    config = make_config("smoke", mode="frozen", **SMOKE)
    table = load_corpus(config, cache_dir=cache)
    extractor = whisper_feature_extractor(_whisper_config(cache), 2)
    features = compute_features(table, extractor, cache_dir=cache)
    pooled = cached_frozen_outputs(config, features_key="k", load_features=lambda: features, max_seconds=2,
                                   device=torch.device("cpu"), cache_dir=cache)
    [features_file] = (cache / "features").glob("*.safetensors")
    [pooled_file] = (cache / "encoder_outputs").glob("*.safetensors")
    for path in (features_file, pooled_file):
        _damage(path, 0 if damage == "empty" else path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        assert torch.equal(compute_features(table, extractor, cache_dir=cache), features)
        again = cached_frozen_outputs(config, features_key="k", load_features=lambda: features, max_seconds=2,
                                      device=torch.device("cpu"), cache_dir=cache)
    assert torch.equal(again, pooled)
    for path in (features_file, pooled_file):
        assert str(path) in caplog.text and len(_set_aside(path.parent, path.name)) == 1
        check_tensors(path)  # rebuilt whole
    assert compute_features(table, extractor, cache_dir=cache, load=False) is None


def test_truncated_converted_weights_are_set_aside_and_converted_again(tiny_en_dir, tmp_path, caplog):
    target = tmp_path / "whisper" / "tiny.en"
    shutil.copytree(tiny_en_dir, target)
    weights = target / "model.safetensors"
    _damage(weights, weights.stat().st_size - 1000)
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        assert resolve_whisper_source("tiny.en", cache_dir=tmp_path) == str(target)
    assert "model.safetensors" in caplog.text and str(target) in caplog.text
    assert len(_set_aside(target.parent, "tiny.en")) == 1
    assert file_sha256(weights) == file_sha256(Path(tiny_en_dir) / "model.safetensors")  # the same conversion


# ------------------------------------------------------------------------------------------------------------------
# run files: result.json, the saved model, epoch checkpoints


@pytest.mark.parametrize("damaged", ["result.json", "model/adapter_model.safetensors"])
def test_a_damaged_result_or_model_is_set_aside_and_the_fold_trained_again(reference, tmp_path, caplog, damaged):
    cache = _copy_cache(reference[0], tmp_path)
    fold_dir = _fold_dir(cache, reference)
    path = fold_dir / damaged
    if path.suffix == ".json":
        path.write_text('{"fold": "S01F", "test_u')  # cut mid-write
    else:
        _damage(path, path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        _rerun_matches(cache, reference)
    assert str(fold_dir / "result.json") in caplog.text and path.name in caplog.text
    assert len(_set_aside(fold_dir, "result.json")) == 1
    assert len(_set_aside(fold_dir, "model")) == (1 if "model" in damaged else 0)
    assert json.loads((fold_dir / "result.json").read_text())["fold"] == fold_dir.name


class _Killed(Exception):
    """Stands for a SIGKILL right after an epoch checkpoint was written."""


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """A copy of the reference cache whose fold stopped after its first epoch checkpoint."""
    cache = _copy_cache(reference[0], tmp_path_factory.mktemp("interrupted"), unfinished=True)
    real = loop._save_checkpoint

    def save_then_die(fold_dir, trainer, opt, best):
        real(fold_dir, trainer, opt, best)
        raise _Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "_save_checkpoint", save_then_die)
        with pytest.raises(_Killed):
            run_cross_validation("smoke", cache_dir=cache, **SMOKE)
    assert (_fold_dir(cache, reference) / "checkpoint" / "state.pt").is_file()
    return cache


@pytest.mark.parametrize("damaged", loop._CHECKPOINT_FILES)
def test_a_damaged_checkpoint_is_set_aside_and_the_fold_restarts_to_the_same_metrics(reference, interrupted,
                                                                                     tmp_path, caplog, damaged):
    cache = _copy_cache(interrupted, tmp_path)
    fold_dir = _fold_dir(cache, reference)
    path = fold_dir / "checkpoint" / damaged
    _damage(path, path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        _rerun_matches(cache, reference)
    assert damaged in caplog.text and str(fold_dir / "checkpoint") in caplog.text
    assert len(_set_aside(fold_dir, "checkpoint")) == 1


def test_a_best_checkpoint_damaged_mid_run_is_never_copied_forward(reference, tmp_path, monkeypatch):
    cache = _copy_cache(reference[0], tmp_path, unfinished=True)
    real, written = loop._save_checkpoint, []

    def save_then_damage(fold_dir, trainer, opt, best):
        real(fold_dir, trainer, opt, best)
        best_file = fold_dir / "checkpoint" / "best.safetensors"
        if opt.epoch == 1:
            _damage(best_file, best_file.stat().st_size // 2)  # e.g. a disk that lost the file's end
        else:
            written.append(load_tensors_checked(best_file))  # the next checkpoint's best is whole again
            assert all(torch.equal(written[-1][k], v) for k, v in best.items())

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_damage)
    _rerun_matches(cache, reference)
    assert len(written) == 1


# ------------------------------------------------------------------------------------------------------------------
# concurrent runs


def test_three_concurrent_runs_of_one_config_agree_and_none_crashes(reference, tiny_en_dir, tmp_path):
    cache = _fresh_cache(tmp_path / "cache", tiny_en_dir)
    cmd = [sys.executable, "-m", "helpers", "train", "--profile", "smoke", "--epochs", "2", "--max-folds", "1",
           "--max-seconds", "2", "--cache-dir", str(cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    processes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert len({out for out, _ in outputs}) == 1  # the same run directory and summary table
    assert sum("clips/s)" in err for _, err in outputs) == 1  # one process trained the fold, the others read it
    run_dir = cache / "runs" / reference[1].run_dir.name
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "folds.csv")[METRICS], reference[1].folds[METRICS])
    leftovers = [p for p in cache.rglob(".*") if not p.is_symlink()]
    assert leftovers == [], leftovers  # no lock and no temporary file left behind


def test_the_run_table_sets_a_damaged_result_aside_instead_of_failing(reference, tmp_path, caplog):
    from helpers.book.reproducibility import run_table

    cache = _copy_cache(reference[0], tmp_path)
    assert run_table(cache)["folds_done"].tolist() == [1]
    fold_dir = _fold_dir(cache, reference)
    (fold_dir / "result.json").write_text("")
    with caplog.at_level(logging.WARNING, logger="helpers.io"):
        table = run_table(cache)
    assert table["folds_done"].tolist() == [0] and table["mean_test_uar"].isna().all()
    assert str(fold_dir / "result.json") in caplog.text and len(_set_aside(fold_dir, "result.json")) == 1
