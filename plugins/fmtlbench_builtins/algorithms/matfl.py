"""MaT-FL (Cai et al., 2023): dynamic grouping of clients by their encoders.

Each round the server measures how every client's encoder deviates from the (weighted) mean
encoder, clusters the clients by the cosine distance between those deviations (agglomerative,
average linkage, ``groups`` clusters) and averages the encoders within each cluster only, so
clients pulling the shared representation in different directions stop overwriting each
other. Decoders stay local by default; ``share=all`` also averages, within a cluster, the
decoder entries its members hold in common. Angles come from the K x K Gram matrix of the
deviations (centred first, so nothing is lost to cancellation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams, Update
from fmtlbench.maths import cosine_distances, gram_of, weighted_mean

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class MaTFLParams(AlgorithmParams):
    """What is averaged within a group, and how many groups."""

    share: Literal["all", "encoder"] = Field(
        "encoder",
        description="averaged within each group: the encoder (paper: decoders stay local), or "
        "also the decoder entries the group's members hold in common",
    )
    groups: int = Field(2, ge=1, description="number of client groups formed each round")


def cluster(distances: torch.Tensor, groups: int) -> list[int]:
    """Group labels 0, 1, ... (numbered by first member) from average-linkage clustering."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    k = distances.shape[0]
    if k <= groups:
        return list(range(k))
    condensed = squareform(distances.to(torch.float64).numpy(), checks=False)
    raw = fcluster(linkage(condensed, method="average"), t=groups, criterion="maxclust")
    first: dict[int, int] = {}
    return [first.setdefault(int(label), len(first)) for label in raw]


class MaTFL(Algorithm):
    """Encoders averaged within groups of clients clustered by their encoder deviations."""

    name = "matfl"
    Params = MaTFLParams
    server_state = ("labels",)

    def on_setup(self) -> None:
        self.encoder = self.common_parameters("groups clients by encoder deviations", {"encoder"})
        self.labels: list[int] = [0] * len(self.clients)

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        states = [u.entries for u in updates]
        weights = self.weights(updates)
        angles = cosine_distances(gram_of(states, self.encoder, mean_weights=weights))
        self.labels = cluster(angles, self.params.groups)
        payloads: dict[int, State] = {}
        for label in sorted(set(self.labels)):
            members = [i for i, g in enumerate(self.labels) if g == label]
            if len(members) == 1:  # a group of one keeps its model: nothing to send
                continue
            average = weighted_mean([states[i] for i in members], [weights[i] for i in members])
            for i in members:
                k = updates[i].client
                payloads[k] = {n: average[n] for n in self.exchanged_names(k)}
        return payloads


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [MaTFL]
