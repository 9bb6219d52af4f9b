"""Hand-sized clients for the algorithm tests: a few named vectors instead of a model, so every
expected value can be worked out by hand or by a naive loop in the test."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fmtlbench.components import Algorithm, ClientInfo, Update
from fmtlbench.exchange import ExchangeView

State = dict[str, torch.Tensor]


def group_of(name: str) -> str:
    """Toy tagging: the group is the name's first segment (``encoder.w`` -> encoder), with
    ``.stats`` for names ending in ``running_mean``."""
    head = name.split(".")[0].split("/")[-1]
    return f"{head}.stats" if name.endswith("running_mean") else head


def make(
    cls: type[Algorithm],
    states: Sequence[State],
    sizes: Sequence[int] | None = None,
    **params: object,
) -> Algorithm:
    """``cls`` with ``params``, set up on ``states`` (one per client, groups from the names)."""
    sizes = list(sizes or [10] * len(states))
    infos = [ClientInfo(k, "toy", ("t",), sizes[k]) for k in range(len(states))]
    algorithm = cls(cls.Params(**params))
    algorithm.setup(infos, list(states), [{n: group_of(n) for n in s} for s in states])
    return algorithm


def updates(states: Sequence[State], sizes: Sequence[int] | None = None) -> list[Update]:
    sizes = list(sizes or [10] * len(states))
    return [Update(k, sizes[k], dict(s)) for k, s in enumerate(states)]


class Live(nn.Module):
    """Trainable copies of some named tensors, seen through exchange names like a client model."""

    def __init__(self, tensors: State) -> None:
        super().__init__()
        self.names = {}
        for i, (name, value) in enumerate(tensors.items()):
            self.register_parameter(f"p{i}", nn.Parameter(value.detach().clone()))
            self.names[f"p{i}"] = name

    def view(self) -> ExchangeView:
        return ExchangeView(self, self.names)
