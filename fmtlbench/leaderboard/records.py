"""The leaderboard's view of a run: final metrics, per-client values and metric histories.

MLflow runs and rows of a published CSV both become ``Record`` objects, so everything after
collection (Δ%, statistics, tables, plots) works the same for both sources.

Task metrics are ``fmtlbench.metric_keys.TaskMetric`` keys (setting, dataset, task, metric),
the layout every run logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fmtlbench.config import DEFAULT_WEIGHTING
from fmtlbench.metric_keys import TaskMetric

#: MLflow params of a run that hold its algorithm's hyper-parameters.
PARAM_PREFIX = "algorithm.params."


@dataclass
class Record:
    """The numbers of one run (or one method and seed of a published table).

    ``final``: client-mean value of each task metric at the last evaluation. ``clients``: the
    same per client, keyed by (client label, metric key); empty when only means are known.
    ``lower``: whether each metric improves downwards. ``history``: MLflow metric name ->
    {round: value} for the Δ% curves and cost accounting (empty for CSV records).
    ``last_round``: the last logged value of the per-client, per-group traffic metrics.
    """

    method: str
    seed: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    final: dict[TaskMetric, float] = field(default_factory=dict)
    clients: dict[tuple[str, TaskMetric], float] = field(default_factory=dict)
    lower: dict[TaskMetric, bool] = field(default_factory=dict)
    history: dict[str, dict[int, float]] = field(default_factory=dict)
    last_round: dict[str, float] = field(default_factory=dict)
    start_time: int = 0

    def keys(self, setting: str) -> list[TaskMetric]:
        """The metric keys of ``setting``, in a stable order."""
        return sorted((k for k in self.final if k.setting == setting), key=str)


def method_labels(tag_sets: Iterable[Mapping[str, str]]) -> list[str]:
    """A short method name per run: the algorithm, ``-E`` when only the encoder is shared,
    plus arch and backbone when they vary among the runs, plus any algorithm parameter
    (keys ``algorithm.params.*``, e.g. FedProx's ``mu``) that varies among the runs of that
    algorithm, plus ``+NAME`` for a client-side task weighting other than the study's. Labels
    stay short but never merge different methods."""
    tag_sets = list(tag_sets)
    varying = [tag for tag in ("arch", "backbone") if len({t.get(tag, "") for t in tag_sets}) > 1]
    params: dict[str, set[str]] = {}
    for tags in tag_sets:
        for key in tags:
            if key.startswith(PARAM_PREFIX) and key != f"{PARAM_PREFIX}share":
                algorithm = tags.get("algorithm", "?")
                params.setdefault(algorithm, set()).add(key)
    labels = []
    for tags in tag_sets:
        algorithm = tags.get("algorithm", "?")
        label = algorithm + ("-E" if tags.get("share") == "encoder" else "")
        weighting = tags.get("weighting", DEFAULT_WEIGHTING)  # runs before the tag: the study's
        if weighting != DEFAULT_WEIGHTING:
            label += f" +{weighting}"
        for tag in varying:
            label += f" {tags.get(tag, '?')}"
        peers = [t for t in tag_sets if t.get("algorithm", "?") == algorithm]
        for key in sorted(params.get(algorithm, ())):
            if len({t.get(key) for t in peers}) > 1:
                label += f" {key.removeprefix(PARAM_PREFIX)}={tags.get(key, '?')}"
        labels.append(label)
    return labels


def latest_per_method_seed(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Keep the newest record of every (method, seed); return (kept, superseded).

    A repeated run of the same method and seed is a re-run, not another sample: counting it
    twice would inflate the statistics' sample size.
    """
    newest: dict[tuple[str, str], Record] = {}
    for record in records:
        key = (record.method, record.seed)
        if key not in newest or record.start_time > newest[key].start_time:
            newest[key] = record
    kept = [r for r in records if newest[(r.method, r.seed)] is r]
    return kept, [r for r in records if newest[(r.method, r.seed)] is not r]
