"""Sweeps: grid expansion, a local Ray instance against the local executor, retries, and resuming a killed sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers.training.runs import run_cross_validation
from helpers.training.sweep import SweepSpec, plan_sweep, run_fold_task, run_sweep

pytestmark = pytest.mark.integration
METRICS = ["fold", "mode", "chosen_epoch", "test_uar", "test_war", "test_macro_f1"]


def test_the_grid_expands_into_one_task_per_fold(tiny_en_dir, cache_dir):
    spec = SweepSpec(profile="smoke", modes=("lora", "frozen"), ranks=(4, 8))
    configs = spec.configs()
    assert [(c.mode, c.rank, c.alpha) for c in configs] == [("lora", 4, 8), ("lora", 8, 16), ("frozen", 8, 16)]
    runs, tasks = plan_sweep(spec, cache_dir=cache_dir)
    assert len(runs) == 3 and len(tasks) == 3 * 2  # the smoke profile has 2 folds
    assert len({t.name for t in tasks}) == len(tasks)
    assert all((run.run_dir / "folds.json").is_file() for run in runs)
    with pytest.raises(ValueError, match="overrides sets \\['rank'\\]"):
        SweepSpec(profile="smoke", overrides={"rank": 4})
    with pytest.raises(ValueError, match="executor='slurm'"):
        run_sweep(SweepSpec(profile="smoke"), executor="slurm")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the flaky tasks below travel by value
    # workers see another BTS_CACHE_DIR than the driver: a task must use the cache the sweep names, not its own
    elsewhere = str(tmp_path_factory.mktemp("not-the-sweep-cache"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"BTS_CACHE_DIR": elsewhere}})
    yield Path(elsewhere)
    ray.shutdown()


def _adapters(run_dir: Path) -> dict[str, torch.Tensor]:
    return {f"{p.parent.parent.name}/{k}": v for p in sorted(run_dir.glob("*/model/adapter_model.safetensors"))
            for k, v in load_file(p).items()}


def test_ray_sweep_equals_the_local_executor_and_a_sequential_run(ray_instance, tiny_en_dir, cache_dir, tmp_path):
    spec = SweepSpec(profile="smoke", modes=("lora", "frozen"))
    local = run_sweep(spec, executor="local", cache_dir=cache_dir)
    remote = run_sweep(spec, executor="ray", cache_dir=tmp_path)
    assert len(remote.tasks) == 4 and remote.complete and local.complete
    assert set(remote.tasks["state"]) == {"done"}
    assert remote.tasks["pid"].nunique() >= 2  # two Ray workers shared the four tasks
    assert remote.tasks["pid"].ne(os.getpid()).all()
    for mine, theirs in zip(local.results, remote.results):
        assert mine.run_dir.name == theirs.run_dir.name  # the same run directory layout and names
        pd.testing.assert_frame_equal(mine.folds[METRICS], theirs.folds[METRICS])
        for key, value in _adapters(mine.run_dir).items():
            torch.testing.assert_close(_adapters(theirs.run_dir)[key], value, rtol=1e-4, atol=1e-5)
        assert (theirs.run_dir / "folds.csv").is_file() and (theirs.run_dir / "summary.csv").is_file()
        for fold in theirs.folds["fold"]:
            assert "task finished" in (theirs.run_dir / fold / "train.log").read_text()
    # a sequential run of the same config finds the Ray sweep's folds and trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in remote.results[0].run_dir.glob("*/result.json")}
    again = run_cross_validation("smoke", cache_dir=tmp_path, mode="lora")
    assert again.run_dir == remote.results[0].run_dir and len(stamps) == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (tmp_path / "features").is_dir() and not any(ray_instance.iterdir())  # nothing in the workers' own cache


def _flaky(run, fold_index):
    """Fails the first time it meets each fold, then trains it."""
    marker = run.run_dir / f"failed-once-{fold_index}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"injected failure for fold {fold_index}")
    return run_fold_task(run, fold_index)


def _second_fold_always_fails(run, fold_index):
    if fold_index == 1:
        raise ValueError("the second fold always fails")
    return run_fold_task(run, fold_index)


def test_failed_tasks_are_retried_then_reported(ray_instance, tiny_en_dir, cache_dir):
    spec = SweepSpec(profile="smoke", modes=("frozen",), overrides={"seed": 5})
    report = run_sweep(spec, executor="ray", retries=1, cache_dir=cache_dir, task=_flaky)
    assert report.complete and report.tasks["attempts"].tolist() == [2, 2]
    spec = SweepSpec(profile="smoke", modes=("frozen",), overrides={"seed": 6})
    report = run_sweep(spec, executor="ray", retries=2, cache_dir=cache_dir, task=_second_fold_always_fails)
    states = report.tasks.set_index("name")
    failed = report.failed.iloc[0]
    assert states["state"].tolist() == ["done", "failed"] and failed["attempts"] == 3
    assert failed["error"] == "ValueError: the second fold always fails"
    assert json.loads(report.status_file.read_text())["counts"] == {"done": 1, "failed": 1}
    assert report.results == [] and not report.complete  # an incomplete run is not summarised


def test_a_killed_sweep_reruns_only_the_missing_tasks(tiny_en_dir, cache_dir):
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "BTS_CACHE_DIR": cache_dir}
    args = [sys.executable, "-m", "helpers", "sweep", "--profile", "smoke", "--seed", "9", "--epochs", "2"]
    spec = SweepSpec(profile="smoke", overrides={"seed": 9, "epochs": 2})
    runs, _ = plan_sweep(spec, cache_dir=cache_dir)
    results = [run.run_dir / fold.name / "result.json" for run in runs for fold in run.folds]
    log = Path(cache_dir) / "killed-sweep.log"
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.time() + 300
    while not any(p.is_file() for p in results) and child.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = {p: p.stat().st_mtime_ns for p in results if p.is_file()}
    assert 1 <= len(finished) < len(results), f"the sweep should be killed midway: {log.read_text()[-3000:]}"
    report = run_sweep(spec, executor="local", cache_dir=cache_dir)
    assert report.complete
    assert (report.tasks["state"] == "skipped").sum() == len(finished)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished folds were not trained again


def test_ray_usage_statistics_are_off_unless_the_user_turned_them_on(monkeypatch):
    """A local sweep makes no network attempt: Ray's usage statistics are off when Ray starts (a stand-in Ray
    records the environment it starts with), unless the user set RAY_USAGE_STATS_ENABLED."""
    import types

    from helpers.training import sweep

    seen = []
    fake = types.SimpleNamespace(is_initialized=lambda: False,
                                 init=lambda **kwargs: seen.append(os.environ.get("RAY_USAGE_STATS_ENABLED")))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    assert sweep._connect_ray(None) is True and seen == ["0"]
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    assert sweep._connect_ray(None) is True and seen == ["0", "1"]
