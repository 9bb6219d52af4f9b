"""FedAvg (McMahan et al., 2017) over the exchanged parameter groups."""

from __future__ import annotations

from collections.abc import Sequence

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, Update
from fmtlbench.errors import IncompatibleError
from fmtlbench.maths import weighted_mean

torch = lazy.module("torch")


class FedAvg(Algorithm):
    """Weighted mean of the exchanged groups, loaded into every client."""

    name = "fedavg"

    def on_setup(self) -> None:
        self.refuse_domain_decoders()

    def refuse_domain_decoders(self) -> None:
        """FedAvg is one global model loaded into every client. When clients come from several
        datasets and exchange decoder entries that only one domain's clients hold (the
        multi-decoder architecture: a decoder per task of that dataset), there is no such
        model: each domain would get its own decoder average, which is not FedAvg. The study
        leaves these cells NULL (FedAvg-MD in its cross-domain table) and reports FedAvg-E;
        so this refuses them instead of running something else under FedAvg's name."""
        datasets = {c.dataset for c in self.clients}
        if len(datasets) < 2:
            return
        held: dict[str, set[str]] = {}
        for k, client in enumerate(self.clients):
            for name in self.exchanged_names(k):
                if self.groups[k][name] == "decoder":
                    held.setdefault(name, set()).add(client.dataset)
        partial = sorted(n for n, where in held.items() if where != datasets)
        if partial:
            domains = ", ".join(sorted(datasets))
            raise IncompatibleError(
                f"{self.name} averages one global model, but clients of {domains} "
                f"have domain-specific decoders (e.g. '{partial[0]}' is held by "
                f"{', '.join(sorted(held[partial[0]]))} clients only), as with the multi-decoder "
                "architecture across datasets: exchange the encoder only "
                "(--set algorithm.params.share=encoder, the study's FedAvg-E) or use --arch tc"
            )

    def aggregate(
        self, round: int, updates: Sequence[Update]
    ) -> dict[int, dict[str, torch.Tensor]]:
        mean = weighted_mean([u.entries for u in updates], self.weights(updates))
        return {
            u.client: {n: mean[n] for n in self.exchanged_names(u.client) if n in mean}
            for u in updates
        }


@hookimpl
def register_algorithms():
    return [FedAvg]
