"""The pre-flight check: everything that can only fail later, tried before any data is read.

Why: a checkpoint folder that cannot be written used to fail after round 1 had trained, a dead
tracking server hung the run for minutes before the first round, and a reference run that was
still RUNNING gave no Δ% at all. Each of those is knowable in a second, so ``run`` (through
``runner.execute``) and ``sweep`` (before its first cell) call ``check`` first, and every
problem ends as one ``ConfigError`` naming the setting and the fix.

The checks, in order: dataset-keyed settings name installed datasets; the checkpoint and cache
folders can be written (a probe file is created and removed; folders the probe had to create
are removed again, so a refused run leaves nothing behind); the checkpoint folder's disk has
room for one checkpoint (estimated from the models' sizes, built on PyTorch's "meta" device:
shapes without memory); the tracking store answers within seconds and can be written; a
``reference`` run has FINISHED on the same data kind and evaluated every task of this run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmtlbench.config import MetricsConfig, RunConfig, TrainingConfig
from fmtlbench.errors import ConfigError

#: Seconds one HTTP call of the store probe may take, and its retries (MLflow's defaults are
#: 120 s and 7 retries with back-off: minutes before a dead server is reported).
PROBE_TIMEOUT, PROBE_RETRIES = 5, 0
#: Tries of the folder probe when a parallel run removes a folder it made while we probe it.
PROBE_ATTEMPTS = 20
#: First bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: A checkpoint holds every client's state plus the algorithm's server state and delivery
#: record, which hold at most about as much again (anchors, per-client cloud models).
CHECKPOINT_FACTOR = 2


@dataclass
class Checked:
    """What the checks found that the run uses: the reference run's final metrics (or None)
    and the estimated size of one checkpoint in bytes."""

    reference: dict[str, float] | None
    checkpoint_bytes: int


def check(config: RunConfig, registry) -> Checked:
    """Every pre-flight check for one run (see the module docstring); raises ``ConfigError``."""
    from fmtlbench.choices import resolve_components
    from fmtlbench.config_keys import check_dataset_keys

    check_dataset_keys(config, registry)
    chosen = resolve_components(config, registry)
    check_metric_libraries(config)
    check_data_root(config.data.root)
    check_folder(config.checkpoint_dir, "checkpoint_dir")
    check_folder(config.data.cache_dir, "data.cache_dir")
    needed = checkpoint_bytes(config, chosen, registry)
    check_space(config.checkpoint_dir, needed)
    check_store(config.tracking.uri, config.tracking.experiment)
    reference = None
    if config.reference:
        keys = evaluated_keys(chosen["scenario"], registry, config.training.metrics)
        reference = check_reference_run(config, keys)
    return Checked(reference, needed)


def check_all(configs: Iterable[RunConfig], registry) -> None:
    """``check`` for the cells of a sweep, each distinct folder, store and reference once."""
    from fmtlbench.choices import resolve_components
    from fmtlbench.config_keys import check_dataset_keys

    configs = list(configs)
    done: set[Any] = set()

    def once(key: Any) -> bool:
        new = key not in done
        done.add(key)
        return new

    space: dict[Path, int] = {}
    sizes: dict[str, int] = {}
    for config in configs:
        check_dataset_keys(config, registry)
        check_metric_libraries(config)
        check_data_root(config.data.root)
        for path, field in ((config.checkpoint_dir, "checkpoint_dir"),
                            (config.data.cache_dir, "data.cache_dir")):  # fmt: skip
            if once(("folder", Path(path).resolve())):
                check_folder(path, field)
        chosen = resolve_components(config, registry)
        folder = Path(config.checkpoint_dir).resolve()
        # cells differing only in algorithm or seed have models of one size: built once
        shape = json.dumps([config.backbone.name, config.arch.model_dump(), config.scenario,
                            config.clients, config.training.resolution], default=str)  # fmt: skip
        if shape not in sizes:
            sizes[shape] = checkpoint_bytes(config, chosen, registry)
        space[folder] = max(space.get(folder, 0), sizes[shape])
        if once(("store", config.tracking.uri, config.tracking.experiment)):
            check_store(config.tracking.uri, config.tracking.experiment)
        if config.reference and once(("reference", config.tracking.uri, config.reference)):
            keys = evaluated_keys(chosen["scenario"], registry, config.training.metrics)
            check_reference_run(config, keys)
    for folder, size in space.items():
        check_space(folder, size)


# ---------------------------------------------------------------------------- folders
def check_metric_libraries(config: RunConfig) -> None:
    """A chosen primary (odsF, say) whose task kind cannot compute it here (pyEdgeEval
    missing) is refused: Δ% would have no value to use. (A metric merely logged beside the
    primary is skipped with one line by the runner instead.)"""
    from fmtlbench.tasks import kind_of

    for task, metric in config.training.metrics.primary.items():
        why = kind_of(task).unavailable(metric)
        if why:
            raise ConfigError(f"training.metrics.primary.{task}={metric} {why}")


def check_data_root(root: Path | None) -> None:
    """Refuse a data root that is not a folder; it is only ever read, so never probed."""
    if root is not None and not Path(root).expanduser().is_dir():
        what = "is a file" if Path(root).expanduser().exists() else "does not exist"
        raise ConfigError(
            f"data.root {root} {what}; give the folder holding NYUDv2/ etc. (--data-root), "
            "or unset it (and FMTLBENCH_DATA_ROOT) to use the synthetic twins"
        )


def check_folder(path: Path, field: str, fix: str | None = None) -> None:
    """Refuse a folder setting that cannot hold files: a file on its path, or no permission.

    The probe creates the missing folders and a probe file, then removes all it created, so
    the check is exact (``os.access`` says yes to root on a read-only mount) and leaves no trace
    (only when runs probe one new folder at the same moment may an empty folder remain).
    """
    path = Path(path).expanduser()
    fix = fix or f"give a folder you can write to (--set {field}=PATH)"
    for part in (path, *path.parents):
        try:  # one stat: a parallel probe may create or remove the folder between two calls
            mode = part.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            break
        where = "" if part == path else f" (its parent {part} is a file)"
        raise ConfigError(f"{field} {path} is not a folder{where}; {fix}")
    for attempt in range(PROBE_ATTEMPTS):
        try:
            _probe(path)
            return
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and attempt + 1 < PROBE_ATTEMPTS:
                continue  # a parallel run's probe removed a folder it made while we used it
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"{field} {path} cannot be written ({reason}); {fix}") from None


def _probe(path: Path) -> None:
    """Create the missing folders of ``path`` and a probe file in it, then remove them."""
    created: list[Path] = []
    name = f".fmtlbench-probe-{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
    try:
        for part in reversed((path, *path.parents)):
            if not part.exists():
                try:
                    part.mkdir()
                except FileExistsError:
                    continue  # made by a parallel run just now: not ours to remove
                created.append(part)
        fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        (path / name).unlink()
    finally:
        for part in reversed(created):
            with contextlib.suppress(OSError):
                part.rmdir()


def _existing(path: Path) -> Path:
    path = Path(path).expanduser().absolute()
    return next(p for p in (path, *path.parents) if p.exists())


def check_space(folder: Path, needed: int) -> None:
    """Refuse a checkpoint folder whose disk has less room than one checkpoint needs."""
    free = shutil.disk_usage(_existing(folder)).free
    if free < needed:
        raise ConfigError(
            f"checkpoint_dir {folder}: one checkpoint of this run needs about "
            f"{needed / 1e6:.1f} MB, only {free / 1e6:.1f} MB are free "
            f"({os.strerror(errno.ENOSPC)}); free some space or set checkpoint_dir to another "
            "disk (--set checkpoint_dir=PATH)"
        )


# ---------------------------------------------------------------------------- sizes
def _structures(scenario, registry) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(dataset, tasks, client count) of each client group, tasks resolved from "all"."""
    for group in scenario.groups:
        known = registry.get("dataset", group.dataset).tasks
        tasks = list(known) if group.tasks == "all" else [t for t in group.tasks if t in known]
        yield group.dataset, tuple(tasks), group.count


def checkpoint_bytes(config: RunConfig, chosen: dict[str, Any], registry) -> int:
    """Estimated bytes of one checkpoint: each client's model state, times
    ``CHECKPOINT_FACTOR`` for the algorithm's state.

    Models are built on the meta device (no memory, no initialisation, no RNG draws); the
    backbone with its default parameters, since where its initial weights come from does not
    change its size and reading a weight file is work this check must not do.
    """
    import torch

    from fmtlbench.model import build_model

    backbone = registry.get("backbone", config.backbone.name)()
    sizes: dict[tuple[str, tuple[str, ...]], int] = {}
    total = 0
    for dataset, tasks, count in _structures(chosen["scenario"], registry):
        key = (dataset, tasks)
        if key not in sizes:
            known = registry.get("dataset", dataset).tasks
            specs = {t: known[t] for t in tasks}
            resolution = tuple(TrainingConfig.per_dataset(config.training.resolution, dataset))
            with torch.device("meta"):
                model = build_model(backbone, chosen["arch"], specs, resolution)
            sizes[key] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        total += count * sizes[key]
    return CHECKPOINT_FACTOR * total


# ---------------------------------------------------------------------------- tracking
def _short_http():
    """MLflow's HTTP budget cut to the probe's seconds for the calls inside (the tracking
    module owns how the budget reaches MLflow)."""
    from fmtlbench import tracking
    from fmtlbench.config import TrackingConfig

    return tracking.http_budget(
        TrackingConfig(timeout_s=PROBE_TIMEOUT, retries=PROBE_RETRIES, backoff_s=0)
    )


def _store_fix(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return (
            "start the server (e.g. `mlflow server --host 127.0.0.1 --port 5000`) or give "
            "another --tracking-uri"
        )
    return "give a store you can write to, e.g. --tracking-uri sqlite:///mlflow.db"


def _reason(exc: BaseException) -> str:
    """One short line for an MLflow failure: the innermost OS error of the chain when there
    is one ("[Errno 111] Connection refused"), else MLflow's own message, shortened."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror
        inner = inner.__cause__ or inner.__context__
    return " ".join(str(exc).split())[:240] or type(exc).__name__


def check_store(uri: str, experiment: str) -> None:
    """Refuse a tracking store that is unreachable, not a database or not writable, in seconds.

    A SQLite file is checked for its header and folder first; then the store is opened and the
    experiment looked up or created (the first write of every run, made here under short HTTP
    timeouts instead of MLflow's minutes). The budget is the tracking module's ``http_budget``, cut
    to the probe's seconds.
    """
    from fmtlbench import tracking

    db = tracking.sqlite_path(uri)
    if db is not None:
        db = db.expanduser()
        if db.is_dir():
            raise ConfigError(f"tracking.uri {uri}: {db} is a folder, not a database file; "
                              f"{_store_fix(uri)}")  # fmt: skip
        if db.is_file() and db.stat().st_size:
            with open(db, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
            if head != SQLITE_MAGIC:
                raise ConfigError(
                    f"tracking.uri {uri}: {db} is not an SQLite database; move it away or "
                    "give a new file name, e.g. --tracking-uri sqlite:///mlflow.db"
                )
        check_folder(db.parent, f"tracking.uri {uri}: folder", _store_fix(uri))
    try:
        with _short_http():
            experiment_id = tracking.prepare_store(uri, experiment)
            found = tracking.MlflowClient(tracking_uri=uri).get_experiment(experiment_id)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raises becomes one line
        raise ConfigError(f"tracking.uri {uri}: the store cannot be used ({_reason(exc)}); "
                          f"{_store_fix(uri)}") from None  # fmt: skip
    if found is not None and found.lifecycle_stage == "deleted":
        raise ConfigError(
            f"tracking.experiment '{experiment}' is deleted in {uri}; restore it (`mlflow "
            f"experiments restore --experiment-id {experiment_id}`) or give another --experiment"
        )


# ---------------------------------------------------------------------------- reference
def evaluated_keys(scenario, registry, metrics: MetricsConfig | None = None) -> list[str]:
    """The metric keys a Δ% reference must hold: the primary metric of every (dataset, task)
    of the scenario, globally and personally evaluated (``Engine.reference_keys``), with the
    primaries the run's ``metrics`` settings choose."""
    from fmtlbench.engine import primary_keys

    metrics = metrics or MetricsConfig()
    pairs = []
    for dataset, tasks, _ in _structures(scenario, registry):
        known = registry.get("dataset", dataset).tasks
        pairs += [(dataset, task, metrics.apply(known[task])) for task in tasks]
    return primary_keys(pairs)


def data_kind(config: RunConfig) -> str:
    """The ``data`` tag a run of ``config`` gets: real data under a data root, else twins."""
    return "real" if config.data.root is not None else "synthetic"


def check_reference_run(config: RunConfig, keys: list[str]) -> dict[str, float]:
    """The reference run's final metrics, if it FINISHED on the same data kind and holds every
    key in ``keys``; else a ``ConfigError`` naming the run and what is wrong."""
    from fmtlbench import tracking
    from fmtlbench.leaderboard.reference import check_reference

    ref, uri = config.reference, config.tracking.uri
    try:
        with _short_http():
            client = tracking.MlflowClient(tracking_uri=uri)
            run = tracking.retry_locked(client.get_run, ref)
    except Exception as exc:  # noqa: BLE001 - MLflow's not-found is a plain MlflowException
        raise ConfigError(
            f"reference run '{ref}' not found in {uri} ({_reason(exc)}); give the run id of a "
            "finished run of this store as --reference"
        ) from None
    check_reference(run)
    kind, theirs = data_kind(config), run.data.tags.get("data")
    if theirs is not None and theirs != kind:
        raise ConfigError(
            f"reference run '{ref}' was trained on {theirs} data, this run on {kind} data; "
            "give a reference of the same data kind as --reference"
        )
    metrics = dict(run.data.metrics)
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise ConfigError(
            f"reference run '{ref}' lacks {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}: a delta-percent reference must be "
            "evaluated on the same datasets and tasks as this run"
        )
    return metrics
