"""Materialise a scenario into a manifest: concrete sample ids per client, with a content hash.

Per dataset, every client of that dataset (single- and multi-task alike) receives a disjoint
share of the dataset's training split, so no image is in two clients and no local test image
leaks into another client's training data. Each client's share is then split into local train
and local test (9:1 by default) for P-FL evaluation.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from fmtlbench.components import Dataset, Partitioner
from fmtlbench.errors import ConfigError
from fmtlbench.scenario import ScenarioSpec


class ClientManifest(BaseModel):
    """One client's data: dataset, tasks, local train ids and local test ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    dataset: str
    tasks: list[str]
    train: list[str]
    test: list[str]


class Manifest(BaseModel):
    """A materialised partition; ``digest`` identifies it in tracking."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str
    partitioner: str
    seed: int
    clients: list[ClientManifest]

    def canonical(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


def share_counts(total: int, shares: Sequence[float]) -> list[int]:
    """Integer sizes proportional to ``shares`` that sum to ``total`` (largest remainder).

    Each size is within one of its exact proportional value, and nothing is dropped.
    """
    weight = float(sum(shares))
    exact = [total * s / weight for s in shares]
    counts = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def resolve_tasks(group_tasks: list[str] | str, dataset: Dataset) -> list[str]:
    offered = list(dataset.tasks)
    if group_tasks == "all":
        return offered
    unknown = [t for t in group_tasks if t not in dataset.tasks]
    if unknown:
        raise ConfigError(
            f"dataset '{dataset.name}' has no task {', '.join(map(repr, unknown))}; "
            f"its tasks are {', '.join(offered)}"
        )
    return list(group_tasks)


def materialise(
    spec: ScenarioSpec,
    datasets: Mapping[str, Dataset],
    partitioner: Partitioner,
    seed: int,
) -> Manifest:
    """Build the manifest of ``spec`` for ``seed``."""
    members: dict[str, list[tuple[int, float]]] = {}
    tasks: list[list[str]] = []
    owners: list[str] = []
    for group in spec.groups:
        for share in group.client_shares():
            members.setdefault(group.dataset, []).append((len(owners), share))
            tasks.append(resolve_tasks(group.tasks, datasets[group.dataset]))
            owners.append(group.dataset)
    assigned: dict[int, list[str]] = {}
    for name, clients in members.items():
        ids = datasets[name].ids("train")
        if len(ids) < 2 * len(clients):
            raise ConfigError(
                f"dataset '{name}' has {len(ids)} training images for {len(clients)} clients; "
                "each client needs at least 2 (one local train, one local test)"
            )
        parts = partitioner.split(ids, [s for _, s in clients], seed, datasets[name])
        for (index, _), part in zip(clients, parts, strict=True):
            assigned[index] = list(part)
    out = []
    for index, dataset in enumerate(owners):
        ids = list(assigned[index])
        random.Random(f"{seed}:local-split:{index}").shuffle(ids)
        n_test = min(len(ids) - 1, max(1, round(len(ids) * spec.local_test_fraction)))
        out.append(
            ClientManifest(
                index=index,
                dataset=dataset,
                tasks=tasks[index],
                train=sorted(ids[n_test:]),
                test=sorted(ids[:n_test]),
            )
        )
    return Manifest(scenario=spec.name, partitioner=partitioner.name, seed=seed, clients=out)
