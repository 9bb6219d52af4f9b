"""MLflow tracking of federated runs: one MLflow run per federated run.

The engine talks to this small class only, so the rest of the code never imports mlflow. A
local SQLite store is the default; any tracking URI (a server included) works. Artifacts of a
SQLite store go next to its database file rather than into the working directory.

Several processes may share one store (parallel runs, sweep workers). MLflow creates a new
SQLite database's schema with migrations that are not safe to run twice at once, so the store
is created under a file lock beside the database (``prepare_store``), and a write that meets
"database is locked" is retried with bounded back-off instead of failing the run.

A tracking server may vanish during a run. Every call has a bounded timeout and retry budget
(``tracking.timeout_s`` / ``retries`` / ``backoff_s``, handed to MLflow's own HTTP knobs), so a
lost server costs seconds, not minutes. From then on the run's records go to an outbox, a
JSON-lines file beside its checkpoint; the runner stops at the round boundary and says how to
resume. The outbox is re-uploaded by ``fmtlbench tracking flush`` or first thing on
``--resume``. Metric steps already in the store are never logged again, so a round redone after
a resume (or an outbox flushed twice) appears once per metric.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

import requests  # noqa: E402
from filelock import FileLock, Timeout  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from fmtlbench.atomic import fsync_folder
from fmtlbench.config import TrackingConfig  # noqa: E402
from fmtlbench.errors import ConfigError, DataError, TrackingError, TrackingLost  # noqa: E402

BATCH = 100  # MLflow accepts at most this many params/tags per log_batch call
NOTE_TAG = "fmtlbench.status_note"  # why a run ended as it did, and how to resume it
LOCK_WAIT = 120.0  # seconds to wait for another process that is creating the store
LOCKED_BUDGET = 60.0  # seconds of retries of one write that meets "database is locked"
OUTBOX = "outbox.jsonl"  # records a lost store did not take, beside the run's checkpoint

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


# ------------------------------------------------------------------------- bounded calls
#: MLflow's HTTP knobs, read from the environment at every request, and the settings that
#: fill them for this project's calls.
_HTTP_KNOBS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "timeout_s",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "retries",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "backoff_s",
}


@contextmanager
def http_budget(settings: TrackingConfig) -> Iterator[None]:
    """Give MLflow's HTTP client the run's timeout and retry budget for the calls inside.

    MLflow looks its knobs up in the environment at each request, so they are set for the
    duration of a call and the previous values put back: other MLflow users in the process
    (the leaderboard, a notebook) keep theirs.
    """
    saved = {name: os.environ.get(name) for name in _HTTP_KNOBS}
    os.environ.update({name: str(getattr(settings, f)) for name, f in _HTTP_KNOBS.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def unreachable(exc: BaseException) -> str | None:
    """Why the store gave no answer (refused connection, timeout, errors until the retries ran
    out), or None when ``exc`` is an answer: a refused write is a bug or bad input, and keeping
    it for later would only fail again."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, requests.exceptions.InvalidURL):
            return None
        if isinstance(cause, requests.exceptions.Timeout | TimeoutError):
            return "no answer in time"
        if isinstance(cause, requests.exceptions.RetryError):
            return "the server answered with errors until the retries ran out"
        if isinstance(cause, requests.exceptions.ConnectionError | ConnectionError):
            text = str(cause).lower()  # requests reports read timeouts that used up the
            if "timed out" in text:  # retries as a ConnectionError
                return "no answer in time"
            return "connection refused" if "refused" in text else "connection lost"
        cause = cause.__cause__ or cause.__context__
    return None


def _store_error(uri: str, reason: str, settings: TrackingConfig) -> TrackingError:
    return TrackingError(
        f"tracking.uri {uri}: the tracking store does not answer ({reason}; "
        f"{settings.retries + 1} attempts of at most {settings.timeout_s} s each); start the "
        "server, raise tracking.timeout_s / tracking.retries, or use a local store with "
        "--tracking-uri sqlite:///mlflow.db"
    )


def _bounded(settings: TrackingConfig, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` within the HTTP budget, with lock retries; no answer becomes one TrackingError."""
    try:
        with http_budget(settings):
            return retry_locked(fn, *args, **kwargs)
    except Exception as exc:
        reason = unreachable(exc)
        if reason is None:
            raise
        raise _store_error(settings.uri, reason, settings) from None


# ------------------------------------------------------------------------------- outbox
class Outbox:
    """Tracking records a lost store did not take, one JSON object a line, in sending order.

    Each append is one ``O_APPEND`` write followed by fsync, so a record is either whole on
    disk or (writer killed mid-write) a torn last line; the torn tail is dropped by the next
    append and ignored by readers. Its record was never kept, and the round it belonged to
    was not checkpointed either, so a resume logs it again.
    """

    OPS = ("metrics", "params", "tags", "text", "finish")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, record: Mapping[str, Any]) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                whole = os.pread(fd, size, 0).rfind(b"\n") + 1
                os.ftruncate(fd, whole)
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_folder(self.path.parent)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").split("\n")
        out = []
        for number, line in enumerate(lines[:-1], 1):  # lines[-1]: "" or a torn record
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                ok = isinstance(record, dict) and record.get("op") in self.OPS
            except ValueError:
                ok = False
            if not ok or not isinstance(record.get("run"), str):
                raise DataError(
                    f"{self.path} line {number}: not a tracking record of fmtlbench; restore "
                    "the file or delete that line"
                )
            out.append(record)
        return out

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.path.parent.exists():
            fsync_folder(self.path.parent)


def outbox_files(target: Path) -> list[Path]:
    """The outbox of ``target``: the file itself, a run's checkpoint folder, or the checkpoint
    root (every run's outbox under it)."""
    target = Path(target)
    if target.is_file():
        return [target]
    if (target / OUTBOX).is_file():
        return [target / OUTBOX]
    found = sorted(target.glob(f"*/{OUTBOX}")) if target.is_dir() else []
    if not found:
        raise DataError(
            f"{target}: no {OUTBOX} here or in its sub-folders; give the run's checkpoint "
            "folder (<checkpoint_dir>/<run id>) named in the message of the stopped run"
        )
    return found


def flush(target: Path, uri: str | None = None) -> list[tuple[str, int]]:
    """Upload the outboxes under ``target`` (to ``uri``, or the store each record names) and
    delete them; returns (run id, records sent) per outbox. Safe to repeat."""
    sent = []
    for path in outbox_files(target):
        records = Outbox(path).records()
        if not records:
            Outbox(path).clear()
            continue
        first = records[0]
        tracker = Tracker(uri or first["uri"], None)
        tracker.attach(first["run"], path.parent)
        sent.append((first["run"], tracker.flush()))
    return sent


# ------------------------------------------------------------------------------ tracker
class Tracker:
    """Creates, feeds and closes one MLflow run.

    Writes go through ``_write``: sent at once while the store answers, kept in the outbox
    (see ``keep_in``) after it stopped answering, in which case ``lost`` says why. Reads and
    run creation cannot wait, so they raise one ``TrackingError`` instead.
    """

    def __init__(
        self, uri: str, experiment: str | None, settings: TrackingConfig | None = None
    ) -> None:
        self.uri = uri
        self.settings = settings or TrackingConfig(uri=uri)
        if self.settings.uri != uri:
            self.settings = self.settings.model_copy(update={"uri": uri})
        self.experiment_id = _bounded(self.settings, prepare_store, uri, experiment)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None
        self.outbox: Outbox | None = None
        self.lost: str | None = None
        self._logged: dict[str, set[int]] = {}  # steps each metric already has in the store

    @classmethod
    def of(cls, settings: TrackingConfig) -> Tracker:
        return cls(settings.uri, settings.experiment, settings)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return _bounded(self.settings, fn, *args, **kwargs)

    # -- the run
    def start(self, run_name: str | None, tags: Mapping[str, str]) -> str:
        run = self._call(
            self.client.create_run,
            self.experiment_id,
            run_name=run_name,
            tags={k: str(v) for k, v in tags.items()},
        )
        self.run_id = run.info.run_id
        self._logged = {}
        return self.run_id

    def attach(self, run_id: str, folder: Path | None = None) -> None:
        """Feed an existing run: learn which metric steps it has, keep unsent records in
        ``folder``."""
        self.run_id = run_id
        run = self._call(self.client.get_run, run_id)
        self._logged = {
            key: {m.step for m in self._call(self.client.get_metric_history, run_id, key)}
            for key in run.data.metrics
        }
        if folder is not None:
            self.keep_in(folder)

    def resume(self, run_id: str, folder: Path | None = None) -> None:
        """Reopen an interrupted run: the records its last session kept go first."""
        self.attach(run_id, folder)
        self.flush()
        self._call(self.client.update_run, run_id, status="RUNNING")

    def keep_in(self, folder: Path) -> None:
        """Where records go once the store is lost: the run's checkpoint folder."""
        self.outbox = Outbox(Path(folder) / OUTBOX)

    def flush(self) -> int:
        """Send the outbox's records in order, then delete it; returns how many were sent.
        Metric steps the store already has are skipped, so a repeated flush adds nothing."""
        if self.outbox is None:
            return 0
        records = self.outbox.records()
        for record in records:
            if record["run"] != self.run_id:
                raise DataError(
                    f"{self.outbox.path}: holds records of run {record['run']}, not of run "
                    f"{self.run_id}; it belongs in <checkpoint_dir>/{record['run']}"
                )
            try:
                self._call(self._apply, record)
            except TrackingError as exc:
                raise TrackingError(
                    f"{exc}. The unsent records stay in {self.outbox.path}; repeat once the "
                    "server answers"
                ) from None
        self.outbox.clear()
        return len(records)

    # -- writes
    def _write(self, record: dict[str, Any]) -> None:
        record = {"run": self.run_id, "uri": self.uri, **record}
        if self.lost is None:
            try:
                with http_budget(self.settings):
                    retry_locked(self._apply, record)
                return
            except Exception as exc:
                reason = unreachable(exc)
                if reason is None:
                    raise
                if self.outbox is None:
                    raise _store_error(self.uri, reason, self.settings) from None
                self.lost = reason
        assert self.outbox is not None
        self.outbox.append(record)

    def _apply(self, record: Mapping[str, Any]) -> None:
        getattr(self, f"_send_{record['op']}")(record)

    def _send_metrics(self, record: Mapping[str, Any]) -> None:
        step = int(record["step"])
        items = [
            Metric(k, float(v), int(record["time"]), step)
            for k, v in record["values"].items()
            if step not in self._logged.get(k, ())
        ]
        for i in range(0, len(items), 1000):
            chunk = items[i : i + 1000]
            self.client.log_batch(record["run"], metrics=chunk)
            for m in chunk:
                self._logged.setdefault(m.key, set()).add(step)

    def _send_params(self, record: Mapping[str, Any]) -> None:
        items = [Param(k, v) for k, v in record["values"].items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(record["run"], params=items[i : i + BATCH])

    def _send_tags(self, record: Mapping[str, Any]) -> None:
        items = [RunTag(k, v) for k, v in record["values"].items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(record["run"], tags=items[i : i + BATCH])

    def _send_text(self, record: Mapping[str, Any]) -> None:
        self.client.log_text(record["run"], record["text"], record["path"])

    def _send_finish(self, record: Mapping[str, Any]) -> None:
        run, note = record["run"], record.get("note")
        if note:
            self.client.set_tag(run, NOTE_TAG, note[:5000])
        elif NOTE_TAG in self.client.get_run(run).data.tags:
            # a resumed run that finishes must not keep its old "interrupted" note
            self.client.delete_tag(run, NOTE_TAG)
        self.client.set_terminated(run, status=record["status"])

    def log_params(self, params: Mapping[str, str]) -> None:
        self._write({"op": "params", "values": {k: str(v)[:6000] for k, v in params.items()}})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._write({"op": "tags", "values": {k: str(v) for k, v in tags.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log one step; a metric that already has this step (a round redone after a resume)
        keeps its first value, which an exact resume reproduces anyway."""
        values = {k: float(v) for k, v in metrics.items()}
        self._write(
            {"op": "metrics", "step": step, "time": int(time.time() * 1000), "values": values}
        )

    def log_json(self, obj: Any, path: str) -> None:
        self.log_text(json.dumps(obj, indent=2, sort_keys=True), path)

    def log_text(self, text: str, path: str) -> None:
        self._write({"op": "text", "path": path, "text": text})

    def finish(self, status: str, note: str | None = None) -> None:
        """Close the run as FINISHED, FAILED or KILLED, with a reason tag when not finished."""
        if self.run_id is None:
            return
        self._write({"op": "finish", "status": status, "note": note})

    def stopped(self, round: int, resume: str) -> TrackingLost:
        """The error that ends a run whose store was lost, once its checkpoint is saved."""
        assert self.outbox is not None and self.lost is not None
        return TrackingLost(
            f"tracking server {self.uri} lost ({self.lost}) during round {round}: run "
            f"{self.run_id} stopped with its checkpoint of round {round}, and what it could not "
            f"send is kept in {self.outbox.path}. Once the server answers, resume with: "
            f"{resume} (it uploads the kept records first), or upload them alone with: "
            f"fmtlbench tracking flush {self.outbox.path.parent}"
        )

    def get_run(self, run_id: str) -> Any:
        """Another run (e.g. the delta-percent reference): its status, tags and latest metrics."""
        return self._call(self.client.get_run, run_id)
