"""Ray as an executor: the cells of a sweep as Ray tasks, on a local Ray or an existing cluster.

Ray is an optional extra (``pip install "fmtlbench[ray]"``), so this module imports it only
inside methods: ``fmtlbench list`` shows the executor on a machine without Ray, and using it
there is one clear error naming the extra to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import CellEvent, Executor, Params
from fmtlbench.errors import ConfigError

#: URI schemes of tracking stores that live on this machine's disk: other machines of a Ray
#: cluster cannot reach them.
LOCAL_STORES = ("sqlite:", "file:")
#: Addresses meaning "a Ray started here for this sweep" rather than an existing cluster.
LOCAL_ADDRESSES = (None, "", "local")


def _ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs Ray; install it with: pip install \"fmtlbench[ray]\""
        ) from None
    return ray


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (a Ray worker may run elsewhere)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri.removeprefix("sqlite:///")
        if not Path(path).is_absolute():
            return f"sqlite:///{Path(path).resolve()}"
    return uri


def is_local_store(uri: str) -> bool:
    """Whether ``uri`` names a store on this machine's disk (SQLite, file, a bare path)."""
    return uri.startswith(LOCAL_STORES) or "://" not in uri


def tracking_uris(cells: Sequence[Any]) -> set[str]:
    """The tracking URIs the cells will write to: a cell's ``tracking.uri`` (a run config or
    its dict form) or, for cells that carry none, the process default."""
    uris = set()
    for cell in cells:
        tracking = (
            cell.get("tracking") if isinstance(cell, dict) else getattr(cell, "tracking", None)
        )
        uri = tracking.get("uri") if isinstance(tracking, dict) else getattr(tracking, "uri", None)
        uris.add(uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    return uris


def _run_cell(fn: Callable[[Any], Any], cell: Any, threads: int, env: dict[str, str]) -> Any:
    """Body of one cell's Ray task: this process's threads and paths as the driver's, then
    ``fn(cell)``. Two tasks on two cores each using every core would only fight over them."""
    os.environ.update(env)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    cwd = env.get("FMTLBENCH_DRIVER_CWD")
    if cwd and Path(cwd).is_dir():
        os.chdir(cwd)  # relative paths of the cell (checkpoints, data) mean the same here
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - a cell function that does not use torch
        pass
    return fn(cell)


def _reason(exc: BaseException) -> str:
    """One line saying why a cell failed: the cell's own exception, or what Ray saw."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class RayParams(Params):
    """Where Ray runs and what each run may use."""

    address: str | None = Field(
        None,
        description="Ray cluster address (auto, ray://host:port); none: RAY_ADDRESS or a "
        "local Ray started for the sweep",
    )
    cpus_per_run: float = Field(1.0, gt=0, description="CPUs reserved by each run (its threads)")
    gpus_per_run: float = Field(0.0, ge=0, description="GPUs per run; fractions share a GPU")
    workers: int = Field(2, ge=1, description="client-parallel actors within one run")
    cpus_per_worker: float = Field(
        1.0, gt=0, description="CPUs of each client actor (its torch threads)"
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs of each client actor")


class RayExecutor(Executor):
    """Runs sweep cells as Ray tasks in parallel, locally or on a Ray cluster."""

    name = "ray"
    Params = RayParams

    def address(self) -> str | None:
        """The cluster to join (``None``: start a local Ray)."""
        address = self.params.address or os.environ.get("RAY_ADDRESS")
        return None if address in LOCAL_ADDRESSES else address

    def check_tracking(self, cells: Sequence[Any]) -> None:
        """Refuse up front a tracking store that workers on other machines cannot reach."""
        address = self.address()
        if address is None:
            return
        for uri in sorted(tracking_uris(cells)):
            if is_local_store(uri):
                raise ConfigError(
                    f"tracking.uri '{uri}' is a store on this machine's disk, which workers of "
                    f"the Ray cluster at '{address}' cannot reach; use an MLflow server URI "
                    "(e.g. --set tracking.uri=http://host:5000)"
                )

    def _connect(self, ray: Any) -> bool:
        """Join (or start) Ray; True when this call started it, so the sweep stops it."""
        if ray.is_initialized():
            return False
        address = self.address()
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        return True

    def _slots(self, ray: Any) -> int:
        """How many cells fit on the cluster at once under the per-run resources."""
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 0) // self.params.cpus_per_run)
        if self.params.gpus_per_run > 0:
            slots = min(slots, int(total.get("GPU", 0) // self.params.gpus_per_run))
        if slots < 1:
            raise ConfigError(
                f"no Ray node offers cpus_per_run={self.params.cpus_per_run} and "
                f"gpus_per_run={self.params.gpus_per_run} (cluster has {dict(total)}); "
                "lower them or add nodes"
            )
        return slots

    def run_cells(self, fn: Any, cells: Sequence[Any]) -> Iterator[CellEvent]:
        """Each cell is one Ray task holding ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs
        (Ray sets ``CUDA_VISIBLE_DEVICES`` for it). At most as many tasks as fit are in flight,
        so a ``started`` event means the cell got its resources. A task's exception, a dead
        worker or an out-of-memory kill is that cell's ``failed`` event. On
        ``KeyboardInterrupt`` (or when the caller stops iterating) the running tasks are
        cancelled - Ray raises KeyboardInterrupt inside them, so their runs end KILLED and
        resumable - and the interrupt propagates."""
        self.check_tracking(cells)
        ray = _ray()
        started_here = self._connect(ray)
        threads = max(1, int(self.params.cpus_per_run))
        env = {"FMTLBENCH_DRIVER_CWD": os.getcwd()} if self.address() is None else {}
        uris = tracking_uris(cells)
        if len(uris) == 1:  # every worker writes the same store as the driver would
            env["MLFLOW_TRACKING_URI"] = absolute_tracking_uri(uris.pop())
        task = ray.remote(_run_cell).options(
            num_cpus=self.params.cpus_per_run,
            num_gpus=self.params.gpus_per_run,
            max_retries=0,  # a failed cell is reported, not silently re-run
        )
        running: dict[Any, int] = {}
        done = False
        try:
            slots = self._slots(ray)
            pending = list(enumerate(cells))
            fn_ref = ray.put(fn)
            while pending or running:
                while pending and len(running) < slots:
                    index, cell = pending.pop(0)
                    running[task.remote(fn_ref, cell, threads, env)] = index
                    yield CellEvent(index, "started")
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    index = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the cell's error, a crash, an OOM kill
                        yield CellEvent(index, "failed", error=_reason(exc))
                    else:
                        yield CellEvent(index, "finished", result=result)
            done = True
        finally:
            if not done and running:
                self._cancel(ray, list(running))
            if started_here:
                ray.shutdown()

    @staticmethod
    def _cancel(ray: Any, refs: list[Any], grace: float = 60.0) -> None:
        """Interrupt running cells and give them time to record KILLED before Ray stops."""
        for ref in refs:
            ray.cancel(ref, force=False)
        ray.wait(refs, num_returns=len(refs), timeout=grace)

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        """Client jobs of one round on ``workers`` Ray actors, results in job order.

        Each actor unpickles ``fn`` once (the engine's worker: that builds the client data and
        working models in the actor) and keeps it for every later round of the run. The
        round's jobs are put in Ray's object store once and every actor reads its jobs from
        there, so tensors several clients share (a broadcast global model) travel once.
        """
        if not jobs:
            return
        ray = _ray()
        pool = self._pool(ray, fn)
        jobs_ref = ray.put(list(jobs))
        refs = [pool[i % len(pool)].run.remote(jobs_ref, i) for i in range(len(jobs))]
        try:
            for ref in refs:
                yield ray.get(ref)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=False)
            raise

    def _pool(self, ray: Any, fn: Callable[[Any], Any]) -> list[Any]:
        """The client actors of the run ``fn`` belongs to, started on first use."""
        held = getattr(self, "_actors", None)
        if held is not None and held[0] is fn:
            return held[1]
        self.close()
        self._started = self._connect(ray)
        actor = ray.remote(ClientActor).options(
            num_cpus=self.params.cpus_per_worker,
            num_gpus=self.params.gpus_per_worker,
            max_restarts=0,
        )
        threads = max(1, int(self.params.cpus_per_worker))
        fn_ref = ray.put(fn)
        actors = [
            actor.remote([fn_ref], threads, _driver_env()) for _ in range(self.params.workers)
        ]
        ray.get([a.ready.remote() for a in actors])  # surface a failing build here, once
        self._actors = (fn, actors)
        return actors

    def close(self) -> None:
        """Stop the client actors (and a Ray this executor started for them)."""
        held = getattr(self, "_actors", None)
        self._actors = None
        if held is None:
            return
        ray = _ray()
        for actor in held[1]:
            ray.kill(actor)
        if getattr(self, "_started", False):
            ray.shutdown()
            self._started = False


def _driver_env() -> dict[str, str]:
    """Environment a client actor takes from the driver: the working directory (relative
    data and cache paths) and the cache/data roots the driver uses."""
    env = {k: v for k, v in os.environ.items() if k.startswith("FMTLBENCH_")}
    env["FMTLBENCH_DRIVER_CWD"] = os.getcwd()
    return env


def assigned_device(ray: Any) -> str | None:
    """The device Ray gave this process: with a GPU reserved, Ray has narrowed
    ``CUDA_VISIBLE_DEVICES`` to it, so it is ``cuda:0`` here; ``None`` keeps the run's own."""
    return "cuda:0" if ray.get_gpu_ids() else None


class ClientActor:
    """A Ray actor holding one worker (client data and working models) for a whole run."""

    def __init__(self, fn: list[Any], threads: int, env: dict[str, str]) -> None:
        import ray
        import torch

        os.environ.update(env)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        cwd = env.get("FMTLBENCH_DRIVER_CWD")
        if cwd and Path(cwd).is_dir():
            os.chdir(cwd)
        torch.set_num_threads(threads)
        device = assigned_device(ray)
        if device is not None:  # read by fmtlbench.worker.Worker.from_config
            os.environ["FMTLBENCH_WORKER_DEVICE"] = device
        # unpickled only now, with threads and device set: building the worker happens here
        fn = ray.get(fn[0])
        self.fn = fn

    def ready(self) -> bool:
        return True

    def run(self, jobs: list[Any], index: int) -> Any:
        return self.fn(jobs[index])


@hookimpl
def register_executors():
    return [RayExecutor]
