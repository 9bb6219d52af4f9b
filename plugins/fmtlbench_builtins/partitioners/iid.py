"""The study's partition rule, with its defects fixed: one seeded permutation per dataset."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fmtlbench import hookimpl
from fmtlbench.components import Dataset, Partitioner
from fmtlbench.partition import share_counts


class RandomPartitioner(Partitioner):
    """Seeded random permutation of a dataset split, cut into disjoint shares (IID)."""

    name = "iid"
    randomised = True

    def split(
        self, ids: Sequence[str], shares: Sequence[float], seed: int, dataset: Dataset
    ) -> list[list[str]]:
        order = list(ids)
        random.Random(f"{seed}:{dataset.name}:permutation").shuffle(order)
        out, start = [], 0
        for count in share_counts(len(order), shares):
            out.append(order[start : start + count])
            start += count
        return out


@hookimpl
def register_partitioners():
    return [RandomPartitioner]
