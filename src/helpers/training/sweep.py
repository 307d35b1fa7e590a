"""Sweeps: the folds of many runs as independent tasks, run in this process or across a Ray cluster.

A `SweepSpec` (a profile; lists of models, modes, protocols and LoRA ranks; overrides for every other setting)
expands into one `FoldTask` per fold of each run. A task trains its fold into the same run directory that
`run_cross_validation` uses, so a sweep leaves exactly the files a sequential run leaves, and the book reads them
the same way. Finished folds are skipped, an interrupted fold resumes from its last epoch checkpoint, and a task
that fails is retried up to `retries` times, then reported with its error. Each task logs to `<fold>/train.log`;
the sweep's state (done, running, failed, attempts, errors) is kept in `<cache>/sweeps/<id>/status.json`.

    python -m helpers sweep --profile paper --models openai/whisper-small,openai/whisper-large-v2 \\
        --executor ray --address auto --gpus-per-task 1
"""

from __future__ import annotations

import logging
import os
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from torch import device as _torch_device

from ..config import RunConfig, make_config
from ..errors import ConfigError
from ..io import atomic_json, cache_root, fingerprint, parse_list
from ..models.weights import resolve_whisper_source
from ..progress import progress
from .runs import PreparedRun, RunResults, collect_run, prepare_run, run_features, train_run_fold

__all__ = ["SweepSpec", "FoldTask", "SweepReport", "plan_sweep", "run_fold_task", "run_sweep", "EXECUTORS",
           "ray_usage_stats_off"]

EXECUTORS = ("local", "ray")
RAY_USAGE_STATS = "RAY_USAGE_STATS_ENABLED"  # Ray's switch for its usage statistics, sent over the network
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSpec:
    """The grid: every combination of models x protocols x modes x ranks, all other settings from the profile.

    Empty lists mean the profile's value. Ranks apply to LoRA runs only (a frozen run has no adapter) and set
    alpha = 2 x rank, as r=32/alpha=64, unless `overrides` fixes alpha.
    """

    profile: str = "demo"
    models: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("lora", "frozen")
    protocols: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, kind in (("models", str), ("modes", str), ("protocols", str), ("ranks", int)):
            object.__setattr__(self, name, parse_list(getattr(self, name), kind, name=f"SweepSpec.{name}"))
        grid = {"model", "mode", "protocol", "rank"} & set(self.overrides)
        if grid:
            raise ConfigError(f"SweepSpec.overrides sets {sorted(grid)}: give them as the lists models/modes/"
                              "protocols/ranks instead")
        if not self.modes:
            raise ConfigError("SweepSpec.modes is empty: give 'lora', 'frozen' or both")

    def configs(self) -> list[RunConfig]:
        """One RunConfig per run of the grid (each validated), without duplicates, in a stable order."""
        base = make_config(self.profile, **self.overrides)
        out: list[RunConfig] = []
        for model in self.models or (base.model,):
            for protocol in self.protocols or (base.protocol,):
                for mode in self.modes:
                    for rank in (self.ranks or (base.rank,)) if mode == "lora" else (base.rank,):
                        grid = dict(model=model, protocol=protocol, mode=mode)
                        if self.ranks and mode == "lora":
                            grid.update(rank=rank, alpha=self.overrides.get("alpha", 2 * rank))
                        config = make_config(self.profile, **{**self.overrides, **grid})
                        if config not in out:
                            out.append(config)
        return out

    def sweep_id(self) -> str:
        return f"{self.profile}-{fingerprint(asdict(self), length=10)}"


@dataclass(frozen=True)
class FoldTask:
    """One fold of one run: what a worker trains."""

    run_index: int
    fold_index: int
    name: str  # "<run directory name>/<fold name>"


@dataclass
class SweepReport:
    """Every task's state after a sweep, and the runs it belongs to."""

    runs: list[PreparedRun]
    tasks: pd.DataFrame  # name, state, attempts, seconds, error, log
    status_file: Path
    results: list[RunResults]  # every run whose folds are all finished (its folds.csv/summary.csv written)

    @property
    def failed(self) -> pd.DataFrame:
        return self.tasks[self.tasks["state"] == "failed"]

    @property
    def complete(self) -> bool:
        return bool(len(self.tasks)) and bool((self.tasks["state"].isin(["done", "skipped"])).all())


def _task_device_type(config: RunConfig, executor: str, gpus_per_task: float) -> str | None:
    """The device type the tasks will train on (a GPU cluster's driver may have no GPU); None = as here."""
    if executor != "ray":
        return None
    device = str(config.device)
    if device.startswith("cuda:"):
        raise ConfigError(f"device={device!r}: a Ray task sees only the GPU it was given, as 'cuda'; use "
                          "device='cuda' or 'auto'")
    if device == "cuda" and not gpus_per_task:
        raise ConfigError("device='cuda' with gpus_per_task=0: Ray hides every GPU from such tasks; give "
                          "--gpus-per-task 1 (or device='auto'/'cpu')")
    if device == "auto":
        return "cuda" if gpus_per_task > 0 else "cpu"
    return _torch_device(device).type


def plan_sweep(spec: SweepSpec, *, executor: str = "local", gpus_per_task: float = 0,
               cache_dir: str | Path | None = None) -> tuple[list[PreparedRun], list[FoldTask]]:
    """Prepare every run of `spec` (corpus, folds, run directory, features) and list its fold tasks.

    Models are resolved and features computed here, once (tiny.en is converted; a hub model must be in the cache or
    `allow_download` set), so concurrent tasks never race to write them. Frozen-encoder outputs need the model on
    a GPU, so the first frozen task of a run computes them (tasks that start together may each do so once).
    """
    cache = cache_root(cache_dir).resolve()  # absolute: workers on other processes or nodes see the same path
    configs = spec.configs()
    for model in dict.fromkeys(c.model for c in configs):
        resolve_whisper_source(model, allow_download=configs[0].allow_download, cache_dir=cache)
    runs = [prepare_run(c, cache_dir=cache, device_type=_task_device_type(c, executor, gpus_per_task))
            for c in configs]
    for run in progress(runs, desc="features", unit="run", leave=False):
        run_features(run, load=False)  # log-mel features once per corpus and input length, before any task starts
    tasks = [FoldTask(r, i, f"{run.run_dir.name}/{fold.name}") for r, run in enumerate(runs)
             for i, fold in enumerate(run.folds)]
    return runs, tasks


def run_fold_task(run: PreparedRun, fold_index: int) -> dict:
    """Train one fold wherever this runs, logging to `<fold>/train.log`; returns a short summary."""
    fold_dir = run.run_dir / run.folds[fold_index].name
    fold_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("helpers")
    handler = logging.FileHandler(fold_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    previous_level = log.level
    log.setLevel(logging.INFO)
    started = time.time()
    try:
        log.info("task %s/%s starts on %s (pid %d)", run.run_dir.name, fold_dir.name, platform.node(), os.getpid())
        result = train_run_fold(run, fold_index)
        log.info("task finished in %.1f s", time.time() - started)
        return dict(fold=result["fold"], test_uar=result["test_uar"], host=platform.node(), pid=os.getpid(),
                    started=started, finished=time.time())
    except BaseException:
        log.error("task failed:\n%s", traceback.format_exc())
        raise
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
        handler.close()


class _Status:
    """Task states, written atomically to status.json at every change."""

    def __init__(self, path: Path, spec: SweepSpec, runs: list[PreparedRun], tasks: list[FoldTask], executor: str):
        self.path, self.spec, self.executor = path, spec, executor
        self.rows = {t.name: dict(name=t.name, state="pending", attempts=0, seconds=None, error=None, host=None,
                                  pid=None, started=None, finished=None,
                                  log=str(runs[t.run_index].run_dir / runs[t.run_index].folds[t.fold_index].name
                                          / "train.log")) for t in tasks}
        path.parent.mkdir(parents=True, exist_ok=True)

    def set(self, name: str, **values) -> None:
        self.rows[name].update(values)
        counts = pd.Series([r["state"] for r in self.rows.values()]).value_counts().to_dict()
        payload = dict(spec=asdict(self.spec), executor=self.executor, counts=counts, tasks=list(self.rows.values()),
                       updated=time.strftime("%Y-%m-%d %H:%M:%S"))
        atomic_json(self.path, payload, default=str)

    def counts(self) -> dict[str, int]:
        states = [r["state"] for r in self.rows.values()]
        return {s: states.count(s) for s in ("done", "skipped", "running", "failed") if states.count(s)}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values()))


def _where(summary) -> dict:
    """Host and wall-clock span of a finished task, from the summary it returned."""
    summary = summary if isinstance(summary, dict) else {}
    return {k: summary.get(k) for k in ("host", "pid", "started", "finished")}


def _describe(err: BaseException) -> str:
    """`Type: message` of a task's error (for a Ray task, of the exception raised inside it)."""
    try:
        from ray.exceptions import RayTaskError
    except ImportError:
        RayTaskError = ()  # noqa: N806
    cause = err.cause if RayTaskError and isinstance(err, RayTaskError) and err.cause is not None else err
    return f"{type(cause).__name__}: {cause}".strip()[:2000]


def run_sweep(spec: SweepSpec, *, executor: str = "local", address: str | None = None, retries: int = 1,
              gpus_per_task: float | None = None, cpus_per_task: float = 1, cache_dir: str | Path | None = None,
              task: Callable[[PreparedRun, int], dict] = run_fold_task) -> SweepReport:
    """Run every unfinished fold task of `spec` with `executor` ("local": here, one after another; "ray": one Ray
    task per fold on the cluster at `address`, or a local Ray instance when `address` is None).

    A failed task is retried up to `retries` times, then reported (the sweep goes on with the others).
    `gpus_per_task` defaults to 1 when the Ray cluster has GPUs, else 0 (CPU slots of `cpus_per_task`).
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}; choose one of {EXECUTORS}")
    if retries < 0:
        raise ConfigError(f"retries={retries} must be 0 or more")
    started_ray = executor == "ray" and _connect_ray(address)
    try:
        if executor == "ray" and gpus_per_task is None:
            import ray

            gpus_per_task = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        gpus_per_task = gpus_per_task or 0
        runs, tasks = plan_sweep(spec, executor=executor, gpus_per_task=gpus_per_task, cache_dir=cache_dir)
        status = _Status(cache_root(cache_dir) / "sweeps" / spec.sweep_id() / "status.json", spec, runs, tasks,
                         executor)
        todo = []
        for t in tasks:
            if runs[t.run_index].fold_done(t.fold_index):
                status.set(t.name, state="skipped")
            else:
                todo.append(t)
        logger.info("sweep %s: %d runs, %d fold tasks, %d already finished, %d to run with %s", spec.sweep_id(),
                    len(runs), len(tasks), len(tasks) - len(todo), len(todo), executor)
        try:
            if executor == "local":
                _run_local(runs, todo, status, retries, task)
            else:
                _run_ray(runs, todo, status, retries, task, gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task)
        finally:  # interrupted or not, status.json says what is finished and what is not
            for name, row in status.rows.items():
                if row["state"] in ("running", "retrying", "pending"):
                    status.set(name, state="interrupted")
        # folds.csv and summary.csv of every finished run, as a sequential run writes them
        return SweepReport(runs, status.frame(), status.path,
                           [collect_run(run) for run in runs if not run.missing_folds()])
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _run_local(runs, todo, status: _Status, retries: int, task) -> None:
    bar = progress(todo, desc="sweep", unit="task")
    for t in bar:
        for attempt in range(1, retries + 2):
            status.set(t.name, state="running", attempts=attempt)
            start = time.perf_counter()
            try:
                summary = task(runs[t.run_index], t.fold_index)
            except Exception as err:  # noqa: BLE001 - reported in the status and retried, never swallowed
                final = attempt > retries
                status.set(t.name, state="failed" if final else "retrying", error=_describe(err),
                           seconds=time.perf_counter() - start)
                logger.warning("%s: attempt %d failed: %s", t.name, attempt, _describe(err))
                continue
            status.set(t.name, state="done", seconds=time.perf_counter() - start, error=None, **_where(summary))
            break
        bar.set_postfix(status.counts())


def ray_usage_stats_off() -> str:
    """Turn Ray's usage statistics off (`RAY_USAGE_STATS_ENABLED=0`) unless the user set that variable; returns
    its value. Ray reads it when it starts, and its workers inherit it: on by default, a local sweep would try to
    reach Ray's servers a minute in, though a local run needs no network."""
    return os.environ.setdefault(RAY_USAGE_STATS, "0")


def _connect_ray(address: str | None) -> bool:
    """Connect to the Ray cluster at `address` ("auto" = the one `ray start` made here), or start a local one.

    Returns whether this call started Ray (and so should shut it down). Ray's usage statistics are turned off first
    (`ray_usage_stats_off`), so a local sweep makes no network attempt.
    """
    ray_usage_stats_off()
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray: pip install 'ray==2.60.0' (the same on every node)") from err
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        kwargs["_node_ip_address"] = "127.0.0.1"  # a local instance needs no network
    ray.init(address=address, **kwargs)
    return True


def _run_ray(runs, todo, status: _Status, retries: int, task, *, gpus_per_task: float, cpus_per_task: float) -> None:
    import ray

    remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(task)
    run_refs = {}  # each prepared run goes to the object store once, whatever its number of folds
    in_flight: dict = {}
    start: dict[str, float] = {}

    def submit(t: FoldTask, attempt: int) -> None:
        if t.run_index not in run_refs:
            run_refs[t.run_index] = ray.put(runs[t.run_index])
        in_flight[remote.remote(run_refs[t.run_index], t.fold_index)] = (t, attempt)
        start[t.name] = time.perf_counter()
        status.set(t.name, state="running", attempts=attempt)  # queued or running on a worker

    for t in todo:
        submit(t, 1)
    bar = progress(total=len(todo), desc="sweep (ray)", unit="task")
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            t, attempt = in_flight.pop(ref)
            try:
                summary = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a task error or a crashed worker: retried, then reported
                logger.warning("%s: attempt %d failed: %s", t.name, attempt, _describe(err))
                if attempt <= retries:
                    status.set(t.name, state="retrying", error=_describe(err))
                    submit(t, attempt + 1)
                    continue
                status.set(t.name, state="failed", error=_describe(err), seconds=time.perf_counter() - start[t.name])
            else:
                where = _where(summary)  # time on the worker, not in Ray's queue
                status.set(t.name, state="done", error=None, seconds=where["finished"] - where["started"], **where)
            bar.update(1)
            bar.set_postfix(status.counts())
    finally:
        for ref in in_flight:  # interrupted: do not leave tasks running on the cluster
            ray.cancel(ref, force=True)
        bar.close()
