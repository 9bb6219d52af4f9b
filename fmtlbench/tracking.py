"""MLflow tracking of federated runs: one MLflow run per federated run.

The engine talks to this small class only, so the rest of the code never imports mlflow. A
local SQLite store is the default; any tracking URI (a server included) works. Artifacts of a
SQLite store go next to its database file rather than into the working directory.

Several processes may share one store (parallel runs, sweep workers). MLflow creates a new
SQLite database's schema with migrations that are not safe to run twice at once, so the store
is created under a file lock beside the database (``prepare_store``), and a write that meets
"database is locked" is retried with bounded back-off instead of failing the run.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

from filelock import FileLock, Timeout  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from fmtlbench.errors import ConfigError  # noqa: E402

BATCH = 100  # MLflow accepts at most this many params/tags per log_batch call
NOTE_TAG = "fmtlbench.status_note"  # why a run ended as it did, and how to resume it
LOCK_WAIT = 120.0  # seconds to wait for another process that is creating the store
LOCKED_BUDGET = 60.0  # seconds of retries of one write that meets "database is locked"

T = TypeVar("T")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    return None


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: beside the database of a SQLite store."""
    db = sqlite_path(uri)
    if db is not None:
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def _lock(uri: str) -> FileLock | None:
    db = sqlite_path(uri)
    if db is None:
        return None
    return FileLock(str(db.resolve()) + ".lock", timeout=LOCK_WAIT)


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_locked(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; while SQLite says another process holds the database, wait and retry.

    MLflow already waits up to its busy timeout per statement; this covers what is left (a
    lock met while a transaction begins), with jittered exponential back-off so processes that
    collided do not collide again, and a total budget so a stuck store still ends the run.
    """
    deadline = time.monotonic() + LOCKED_BUDGET
    delay = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


def _experiment_id(client: MlflowClient, uri: str, experiment: str) -> str:
    found = retry_locked(client.get_experiment_by_name, experiment)
    if found is not None:
        return found.experiment_id
    try:
        return retry_locked(
            client.create_experiment, experiment, artifact_location=artifact_location(uri)
        )
    except Exception:
        # another process (e.g. on a shared server, where no file lock applies) created it
        # between our look-up and our create: use theirs
        found = retry_locked(client.get_experiment_by_name, experiment)
        if found is None:
            raise
        return found.experiment_id


def prepare_store(uri: str, experiment: str | None = None) -> str | None:
    """Create the tracking store (and the experiment, if named) once, safely across processes.

    Idempotent. A parent that starts parallel workers on one store (the sweep) calls it before
    starting them; every ``Tracker`` calls it too, so two runs started at the same moment in an
    empty folder do not both run MLflow's schema migrations. Returns the experiment id.
    """
    lock = _lock(uri)
    if lock is None:
        client = MlflowClient(tracking_uri=uri)
        return _experiment_id(client, uri, experiment) if experiment else None
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"tracking.uri {uri}: another process has held {lock.lock_file} for more than "
            f"{LOCK_WAIT:.0f} s; if no fmtlbench process is running, delete that file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"tracking.uri {uri}: cannot create the lock file {lock.lock_file} ({exc}); "
            "use a folder you can write to, e.g. --tracking-uri sqlite:///mlflow.db"
        ) from None
    try:
        client = MlflowClient(tracking_uri=uri)
        # the first query builds the store object, which creates and migrates the schema
        retry_locked(client.search_experiments, max_results=1)
        return _experiment_id(client, uri, experiment) if experiment else None
    finally:
        lock.release()


class Tracker:
    """Creates, feeds and closes one MLflow run."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment_id = prepare_store(uri, experiment)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return retry_locked(fn, *args, **kwargs)

    def start(self, run_name: str | None, tags: Mapping[str, str]) -> str:
        run = self._call(
            self.client.create_run,
            self.experiment_id,
            run_name=run_name,
            tags={k: str(v) for k, v in tags.items()},
        )
        self.run_id = run.info.run_id
        return self.run_id

    def resume(self, run_id: str) -> None:
        self.run_id = run_id
        self._call(self.client.update_run, run_id, status="RUNNING")

    def log_params(self, params: Mapping[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self._call(self.client.log_batch, self.run_id, params=items[i : i + BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self._call(self.client.log_batch, self.run_id, tags=items[i : i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self._call(self.client.log_batch, self.run_id, metrics=items[i : i + 1000])

    def log_json(self, obj: Any, path: str) -> None:
        self._call(
            self.client.log_text, self.run_id, json.dumps(obj, indent=2, sort_keys=True), path
        )

    def log_text(self, text: str, path: str) -> None:
        self._call(self.client.log_text, self.run_id, text, path)

    def finish(self, status: str, note: str | None = None) -> None:
        """Close the run as FINISHED, FAILED or KILLED, with a reason tag when not finished."""
        if self.run_id is None:
            return
        if note:
            self._call(self.client.set_tag, self.run_id, NOTE_TAG, note[:5000])
        elif NOTE_TAG in self._call(self.client.get_run, self.run_id).data.tags:
            # a resumed run that finishes must not keep its old "interrupted" note
            self._call(self.client.delete_tag, self.run_id, NOTE_TAG)
        self._call(self.client.set_terminated, self.run_id, status=status)

    def get_run(self, run_id: str) -> Any:
        """Another run (e.g. the delta-percent reference): its status, tags and latest metrics."""
        return self._call(self.client.get_run, run_id)
