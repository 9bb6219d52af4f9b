"""Materialise a scenario into a manifest: concrete sample ids per client, with a content hash.

Per dataset, every client of that dataset (single- and multi-task alike) receives a disjoint
share of the dataset's training split, so no image is in two clients and no local test image
leaks into another client's training data. Each client's share is then split into local train
and local test (9:1 by default) for P-FL evaluation.

Partitioners are plugins, so ``materialise`` checks what they return instead of trusting it:
a split that overlaps, drops an image or misses the size rule is an error naming the
partitioner, never a silently wrong experiment.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from fmtlbench.components import Dataset, Partitioner
from fmtlbench.errors import ConfigError, FmtlbenchError
from fmtlbench.scenario import ScenarioSpec

if TYPE_CHECKING:  # pragma: no cover
    from fmtlbench.config import DataConfig
    from fmtlbench.registry import Registry


class PartitionError(FmtlbenchError):
    """A partitioner returned a split that breaks its contract (overlap, loss, wrong sizes)."""


class ClientManifest(BaseModel):
    """One client's data: dataset, tasks, local train ids and local test ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    dataset: str
    tasks: list[str]
    train: list[str]
    test: list[str]


class Manifest(BaseModel):
    """A materialised partition; ``digest`` (SHA-256 of the canonical JSON) identifies it in
    tracking, so two runs with the same hash trained on exactly the same client data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str
    partitioner: str
    partitioner_params: dict[str, Any] = Field(default_factory=dict)
    seed: int
    clients: list[ClientManifest]

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

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


def local_test_count(size: int, fraction: float) -> int:
    """How many of a client's ``size`` images are its local test set: ``fraction`` of them,
    rounded, but at least one test and one training image."""
    return min(size - 1, max(1, round(size * fraction)))


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


def check_split(
    parts: Sequence[Sequence[str]], ids: Sequence[str], counts: Sequence[int], who: str
) -> None:
    """Raise ``PartitionError`` unless ``parts`` is a disjoint cover of ``ids`` with exactly
    ``counts`` ids per client."""
    if len(parts) != len(counts):
        raise PartitionError(f"{who} returned {len(parts)} parts for {len(counts)} clients")
    sizes = [len(p) for p in parts]
    if sizes != list(counts):
        raise PartitionError(f"{who} returned parts of sizes {sizes}; the size rule needs {counts}")
    seen: set[str] = set()
    for part in parts:
        overlap = seen.intersection(part)
        if overlap or len(set(part)) != len(part):
            twice = sorted(overlap) or sorted({i for i in part if list(part).count(i) > 1})
            raise PartitionError(f"{who} gave image {twice[0]!r} to more than one client")
        seen.update(part)
    if seen != set(ids):
        missing, foreign = sorted(set(ids) - seen), sorted(seen - set(ids))
        what = [f"dropped image {missing[0]!r}"] if missing else []
        what += [f"invented image {foreign[0]!r} (not in the split)"] if foreign else []
        raise PartitionError(f"{who} {' and '.join(what)}")


def materialise(
    spec: ScenarioSpec,
    datasets: Mapping[str, Dataset],
    partitioner: Partitioner,
    seed: int,
) -> Manifest:
    """Build the manifest of ``spec`` for ``seed``."""
    shares = spec.client_shares()
    members: dict[str, list[int]] = {}
    tasks: list[list[str]] = []
    owners: list[str] = []
    for group in spec.groups:
        if group.dataset not in datasets:
            raise ConfigError(
                f"scenario '{spec.name}' needs dataset '{group.dataset}', which was not opened"
            )
        for _ in range(group.count):
            members.setdefault(group.dataset, []).append(len(owners))
            tasks.append(resolve_tasks(group.tasks, datasets[group.dataset]))
            owners.append(group.dataset)
    assigned: dict[int, list[str]] = {}
    for name, clients in members.items():
        ids = datasets[name].ids("train")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"dataset '{name}' lists a training id twice in its split file")
        wanted = [shares[i] for i in clients]
        counts = share_counts(len(ids), wanted)
        if min(counts) < 2:
            small = clients[counts.index(min(counts))]
            raise ConfigError(
                f"dataset '{name}' has {len(ids)} training images for {len(clients)} clients; "
                f"client {small}'s share gives it {min(counts)}, but every client needs at least "
                "2 (one local train, one local test): use fewer clients or more data"
            )
        parts = partitioner.split(ids, wanted, seed, datasets[name])
        check_split(parts, ids, counts, f"partitioner '{partitioner.name}' on dataset '{name}'")
        for index, part in zip(clients, parts, strict=True):
            assigned[index] = list(part)
    out = []
    for index, dataset in enumerate(owners):
        ids = list(assigned[index])
        random.Random(f"{seed}:local-split:{index}").shuffle(ids)
        n_test = local_test_count(len(ids), spec.local_test_fraction)
        out.append(
            ClientManifest(
                index=index,
                dataset=dataset,
                tasks=tasks[index],
                train=sorted(ids[n_test:]),
                test=sorted(ids[:n_test]),
            )
        )
    return Manifest(
        scenario=spec.name,
        partitioner=partitioner.name,
        partitioner_params=partitioner.params.model_dump(mode="json"),
        seed=seed,
        clients=out,
    )


def build_manifest(
    spec: ScenarioSpec, data: DataConfig, registry: Registry, seed: int
) -> tuple[Manifest, dict[str, Dataset]]:
    """Open the datasets ``spec`` uses (real or synthetic twin), instantiate its partitioner
    and materialise the manifest: what a run does before building models, for tools such as
    ``fmtlbench scenarios show`` that need the partition without training."""
    from fmtlbench.data import component_params, open_dataset

    datasets = {
        name: open_dataset(registry.get("dataset", name), data)
        for name in dict.fromkeys(g.dataset for g in spec.groups)
    }
    cls = registry.get("partitioner", spec.partitioner)
    partitioner = cls(component_params(cls, spec.partitioner_params, "scenario.partitioner_params"))
    return materialise(spec, datasets, partitioner, seed), datasets
