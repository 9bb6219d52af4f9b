"""Reading federated runs back from MLflow into ``Record`` objects.

Only finished runs count (an interrupted or failed run would bias every statistic), and the
leaderboard's own runs are skipped. Each run is read once: its tags, its latest metric values
(the final evaluation), the per-round histories the curves and cost tables need, and - only
when clients hold different datasets - its partition manifest, which says which dataset each
``client{k}/...`` metric belongs to.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from fmtlbench.errors import ConfigError, FmtlbenchError
from fmtlbench.leaderboard.records import PARAM_PREFIX, Record, method_labels
from fmtlbench.leaderboard.reference import check_reference
from fmtlbench.leaderboard.targets import COSTS
from fmtlbench.metric_keys import ClientMetric, TaskMetric, Traffic, client_label
from fmtlbench.tasks import known_tasks, primary_metric

#: Tag marking the leaderboard's own MLflow runs.
KIND_TAG = "fmtlbench.kind"
LEADERBOARD_KIND = "leaderboard"
PAGE = 1000
#: MLflow param prefix of ``training.metrics.primary`` (``RunConfig.flat``): a run's choice of
#: primaries, read back so that its record ranks by the metric it was configured with.
CHOSEN_PRIMARY_PARAM = "training.metrics.primary."


def tracking_client(uri: str):
    """An ``MlflowClient`` for ``uri`` (import deferred: mlflow is slow to import)."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment ``name``; a clear error when it does not exist."""
    try:
        found = client.get_experiment_by_name(name)
    except Exception as exc:
        msg = f"cannot reach the MLflow store {uri}: {exc}".splitlines()[0]
        raise FmtlbenchError(msg) from None
    if found is None:
        raise ConfigError(
            f"experiment '{name}' does not exist in {uri}; pass --experiment NAME "
            "(the name given to `fmtlbench run --experiment`) or --tracking-uri"
        )
    return found.experiment_id


def filter_string(filters: Mapping[str, str]) -> str:
    """An MLflow search filter matching finished runs carrying all ``filters`` tags."""
    clauses = ["attributes.status = 'FINISHED'"]
    for key, value in filters.items():
        if "'" in value or "`" in key:
            raise ConfigError(f"--tag {key}={value}: quotes are not allowed in tag filters")
        clauses.append(f"tags.`{key}` = '{value}'")
    return " AND ".join(clauses)


def search(client, exp_id: str, filters: Mapping[str, str]) -> list:
    """All finished federated runs of the experiment with the given tags, newest first."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp_id],
            filter_string(filters),
            max_results=PAGE,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return [
        r
        for r in runs
        if "algorithm" in r.data.tags and r.data.tags.get(KIND_TAG) != LEADERBOARD_KIND
    ]


def chosen_primaries(params: Mapping[str, str]) -> dict[str, str]:
    """``{task: metric}`` a run chose instead of the default primaries (from its params)."""
    n = len(CHOSEN_PRIMARY_PARAM)
    return {k[n:]: v for k, v in params.items() if k.startswith(CHOSEN_PRIMARY_PARAM)}


def primary_keys(
    metrics: Mapping[str, float], chosen: Mapping[str, str] | None = None
) -> dict[TaskMetric, float]:
    """The client-mean value of each task's primary metric (``tasks.primary_metric`` with the
    run's ``chosen`` primaries) among a run's metrics."""
    out = {}
    installed = set(known_tasks())
    for name, value in metrics.items():
        key = TaskMetric.read(name)
        if key is None or key.task not in installed:  # a kind not installed here: unread
            continue
        if key.metric == primary_metric(key.task, chosen)[0]:
            out[key] = float(value)
    return out


def client_datasets(client, run, datasets: set[str]) -> Callable[[int], str | None]:
    """Client index -> dataset: trivial with one dataset, else read from the manifest."""
    if len(datasets) <= 1:
        only = next(iter(datasets), None)
        return lambda k: only
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, "manifest.json", tmp)
            manifest = json.loads(Path(path).read_text())
        except Exception as exc:
            raise FmtlbenchError(
                f"run {run.info.run_id}: cannot read its manifest.json artifact ({exc}); "
                "it is needed to tell which dataset each client's metrics belong to"
            ) from None
    return {int(c["index"]): c["dataset"] for c in manifest["clients"]}.get


def to_record(client, run, method: str, history: bool = True) -> Record:
    """One MLflow run as a ``Record``; ``history=False`` skips the per-round histories
    (enough for a reference run, whose final metrics are all Δ% needs)."""
    metrics = run.data.metrics
    chosen = chosen_primaries(run.data.params)
    final = primary_keys(metrics, chosen)
    record = Record(
        method=method,
        seed=run.data.tags.get("seed", "?"),
        source=run.info.run_id,
        tags=dict(run.data.tags),
        final=final,
        lower={k: primary_metric(k.task, chosen)[1] for k in final},
        start_time=int(run.info.start_time or 0),
    )
    if not history:
        return record
    datasets = client_datasets(client, run, {k.dataset for k in final})
    for name, value in metrics.items():
        if Traffic.read(name) is not None:
            record.last_round[name] = float(value)
        each = ClientMetric.read(name)
        if each is None:
            continue
        key = TaskMetric(each.setting, datasets(each.client) or "?", each.task, each.metric)
        if key in final:
            record.clients[(client_label(each.client), key)] = float(value)
    wanted = [str(k) for k in final] + [n for names in COSTS.values() for n in names]
    for name in wanted:
        if name in metrics:
            points = client.get_metric_history(run.info.run_id, name)
            record.history[name] = {int(m.step): float(m.value) for m in points}
    return record


def collect(client, exp_id: str, filters: Mapping[str, str]) -> list[Record]:
    """The records of all matching finished runs, labelled by method."""
    runs = search(client, exp_id, filters)
    labels = method_labels(
        {**r.data.tags, **{k: v for k, v in r.data.params.items() if k.startswith(PARAM_PREFIX)}}
        for r in runs
    )
    return [to_record(client, run, label) for run, label in zip(runs, labels, strict=True)]


def reference_candidates(client, exp_id: str, tags: Mapping[str, str]) -> list[Record]:
    """Finished runs of the experiment carrying ``tags`` (the reference rule's algorithm and
    architecture), of any scenario: the rule picks iid1 or the run's own scenario."""
    runs = search(client, exp_id, tags)
    return [to_record(client, run, "reference", history=False) for run in runs]


def run_record(client, run_id: str) -> Record:
    """The run ``run_id`` as a reference record; a clear error when it does not exist or has
    not FINISHED (``reference.check_reference``)."""
    try:
        run = client.get_run(run_id)
    except Exception:
        raise ConfigError(
            f"--reference {run_id}: no such MLflow run in this tracking store"
        ) from None
    check_reference(run)
    record = to_record(client, run, run.data.tags.get("algorithm", "reference"), history=False)
    if not record.final:
        raise ConfigError(f"--reference {run_id}: the run has no evaluated task metrics")
    return record
