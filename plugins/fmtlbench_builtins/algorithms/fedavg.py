"""FedAvg (McMahan et al., 2017) over the exchanged parameter groups."""

from __future__ import annotations

from collections.abc import Sequence

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, Update
from fmtlbench.maths import weighted_mean

torch = lazy.module("torch")


class FedAvg(Algorithm):
    """Weighted mean of the exchanged groups, loaded into every client."""

    name = "fedavg"

    def aggregate(
        self, round: int, updates: Sequence[Update]
    ) -> dict[int, dict[str, torch.Tensor]]:
        mean = weighted_mean([u.state for u in updates], self.weights(updates))
        return {
            u.client: {k: mean[k] for k in self.exchanged_keys(u.client) if k in mean}
            for u in updates
        }


@hookimpl
def register_algorithms():
    return [FedAvg]
