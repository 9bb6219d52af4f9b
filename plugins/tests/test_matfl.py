"""MaT-FL: clients grouped by the direction of their encoder deviation, encoders averaged."""

from __future__ import annotations

import numpy as np
import torch
from fmtlbench_builtins.algorithms.matfl import MaTFL, cluster
from toy_clients import make, updates


def two_camps(noise: float = 0.05, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Clients 0-2 move the encoder along u, clients 3-5 along v (u and v orthogonal)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=12)
    u, v = np.eye(12)[0], np.eye(12)[1]
    out = []
    for k, (direction, size) in enumerate(
        [(u, 1.0), (u, 1.5), (u, 0.8), (v, 1.2), (v, 0.9), (v, 1)]
    ):
        w = base + size * direction + noise * rng.normal(size=12)
        out.append(
            {
                "encoder.w": torch.tensor(w, dtype=torch.float32),
                "encoder.bn.running_mean": torch.tensor([float(k)]),
                "decoder.head": torch.tensor([10.0 * k]),
            }
        )
    return out


def test_groups_follow_the_constructed_camps_and_encoders_average_within():
    states = two_camps()
    matfl = make(MaTFL, states)
    payloads = matfl.aggregate(1, updates(states))
    assert matfl.labels == [0, 0, 0, 1, 1, 1]
    for camp in ([0, 1, 2], [3, 4, 5]):
        mean = torch.stack([states[i]["encoder.w"] for i in camp]).mean(dim=0)
        stats = sum(float(i) for i in camp) / 3
        for i in camp:
            assert torch.allclose(payloads[i]["encoder.w"], mean, atol=1e-6)
            assert payloads[i]["encoder.bn.running_mean"].item() == stats
            assert "decoder.head" not in payloads[i]  # decoders stay local by default


def test_share_all_also_averages_decoders_within_a_group():
    states = two_camps()
    payloads = make(MaTFL, states, share="all").aggregate(1, updates(states))
    assert payloads[4]["decoder.head"].item() == 40.0  # mean of 30, 40, 50


def test_clustering_against_scipy_called_directly():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform

    rng = np.random.default_rng(3)
    points = rng.normal(size=(7, 4))
    distances = squareform(pdist(points, metric="cosine"))
    ours = cluster(torch.tensor(distances), 3)
    theirs = fcluster(linkage(pdist(points, metric="cosine"), "average"), 3, "maxclust")
    # same partition, whatever the label names
    assert len({(a, b) for a, b in zip(ours, theirs, strict=True)}) == len(set(ours)) == 3
    assert cluster(torch.zeros(2, 2), 2) == [0, 1]  # fewer clients than groups: singletons
