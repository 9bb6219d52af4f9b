"""MLflow tracking of federated runs: one MLflow run per federated run.

The engine talks to this small class only, so the rest of the code never imports mlflow. A
local SQLite store is the default; any tracking URI (a server included) works. Artifacts of a
SQLite store go next to its database file rather than into the working directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

BATCH = 100  # MLflow accepts at most this many params/tags per log_batch call
NOTE_TAG = "fmtlbench.status_note"  # why a run ended as it did, and how to resume it


def artifact_location(uri: str) -> str | None:
    """Artifact root for new experiments: beside the database of a SQLite store."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


class Tracker:
    """Creates, feeds and closes one MLflow run."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=artifact_location(uri)
            )
        self.run_id: str | None = None

    def start(self, run_name: str | None, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}
        )
        self.run_id = run.info.run_id
        return self.run_id

    def resume(self, run_id: str) -> None:
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def log_params(self, params: Mapping[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_json(self, obj: Any, path: str) -> None:
        self.client.log_text(self.run_id, json.dumps(obj, indent=2, sort_keys=True), path)

    def log_text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def finish(self, status: str, note: str | None = None) -> None:
        """Close the run as FINISHED, FAILED or KILLED, with a reason tag when not finished."""
        if self.run_id is None:
            return
        if note:
            self.client.set_tag(self.run_id, NOTE_TAG, note[:5000])
        elif NOTE_TAG in self.client.get_run(self.run_id).data.tags:
            # a resumed run that finishes must not keep its old "interrupted" note
            self.client.delete_tag(self.run_id, NOTE_TAG)
        self.client.set_terminated(self.run_id, status=status)

    def final_metrics(self, run_id: str) -> dict[str, float]:
        """Latest value of every metric of another run (e.g. the delta-percent reference)."""
        return dict(self.client.get_run(run_id).data.metrics)
