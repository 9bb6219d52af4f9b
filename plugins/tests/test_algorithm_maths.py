"""The server-side maths shared by the algorithms, against naive loops and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fmtlbench.maths import (
    cagrad_coefficients,
    cagrad_weights,
    combine,
    common_keys,
    cosine_distances,
    gram_of,
    mix,
    project_conflicts,
    squared_distances,
)


def random_states(k: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"a": torch.randn(2, 3, generator=g), "b": torch.randn(4, generator=g)} for _ in range(k)
    ]


def flat(state, keys=("a", "b")) -> torch.Tensor:
    return torch.cat([state[k].reshape(-1) for k in keys]).double()


def test_gram_combine_and_mix_match_flattened_vectors():
    states = random_states(3)
    centre = {"a": torch.ones(2, 3), "b": torch.full((4,), 2.0)}
    rows = torch.stack([flat(s) - flat(centre) for s in states])
    assert torch.allclose(gram_of(states, ["a", "b"], centre), rows @ rows.T)
    coef = [0.5, -1.0, 2.0]
    out = combine(states, coef, ["a", "b"], centre=centre, base=centre)
    expected = flat(centre) + sum(c * r for c, r in zip(coef, rows, strict=True))
    assert torch.allclose(flat(out), expected, atol=1e-6)
    matrix = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    mixed = mix(states, matrix, ["a", "b"])
    assert torch.allclose(flat(mixed[0]), flat(states[0]))
    assert torch.allclose(
        flat(mixed[1]), 0.2 * flat(states[0]) + 0.3 * flat(states[1]) + 0.5 * flat(states[2])
    )
    ints = [{"n": torch.tensor(10)}, {"n": torch.tensor(13)}]
    assert combine(ints, [0.5, 0.5], ["n"])["n"].item() == 12  # 11.5 rounds to even
    assert common_keys([{"a": 1, "b": 2}, {"b": 3}]) == ["b"]


def test_distances_by_hand():
    # vectors (0,0), (3,4), (0,2)
    vectors = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    gram = vectors @ vectors.T
    assert squared_distances(gram).tolist() == [[0, 25, 4], [25, 0, 13], [4, 13, 0]]
    cos = cosine_distances(gram)
    assert cos[1, 2].item() == pytest.approx(1 - 8 / (5 * 2))
    assert cos[0, 1].item() == 1.0  # the zero vector is related to nothing


def test_pcgrad_projection_by_hand():
    # d1 = (1, 0), d2 = (-1, 1) conflict: d1 - (-1/2) d2 = (0.5, 0.5); d2 - (-1/1) d1 = (0, 1)
    vectors = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    projected = project_conflicts(vectors @ vectors.T, [[1], [0]]) @ vectors
    assert projected.tolist() == [[0.5, 0.5], [0.0, 1.0]]


def naive_pcgrad(vectors: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    out = []
    for i, own in enumerate(vectors):
        p = own.clone()
        for j in orders[i]:
            dot = p @ vectors[j]
            if dot < 0:
                p = p - dot / (vectors[j] @ vectors[j]) * vectors[j]
        out.append(p)
    return torch.stack(out)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_projection_matches_a_naive_loop(seed):
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(5, 7, generator=g, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    orders = [[int(j) for j in rng.permutation([j for j in range(5) if j != i])] for i in range(5)]
    coef = project_conflicts(vectors @ vectors.T, orders)
    assert torch.allclose(coef @ vectors, naive_pcgrad(vectors, orders))


def objective(w: np.ndarray, gram: np.ndarray, p: np.ndarray, c: float) -> np.ndarray:
    """g_w . g0 + c |g0| |g_w| for a batch of weight rows ``w``."""
    g0 = np.sqrt(p @ gram @ p)
    gw = np.sqrt(np.clip(np.einsum("ni,ij,nj->n", w, gram, w), 0, None))
    return w @ gram @ p + c * g0 * gw


def simplex_grid(k: int, steps: int) -> np.ndarray:
    points = [
        [i / steps for i in combo] + [1 - sum(combo) / steps]
        for combo in itertools.product(range(steps + 1), repeat=k - 1)
        if sum(combo) <= steps
    ]
    return np.array(points)


@pytest.mark.parametrize(("k", "steps", "seed"), [(2, 20000, 0), (2, 20000, 1), (3, 300, 2)])
def test_cagrad_weights_match_a_brute_force_grid(k, steps, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(k, 6))
    vectors[1] = -0.8 * vectors[0] + 0.3 * rng.normal(size=6)  # a real conflict
    gram = vectors @ vectors.T
    p = np.full(k, 1 / k)
    c = 0.4
    grid = simplex_grid(k, steps)
    values = objective(grid, gram, p, c)
    best = grid[np.argmin(values)]
    w = cagrad_weights(torch.tensor(gram), p.tolist(), c).numpy()
    assert w.min() >= 0 and w.sum() == pytest.approx(1)
    assert objective(w[None], gram, p, c)[0] <= values.min() + 1e-9
    assert np.abs(w - best).max() <= 2 / steps + 1e-6
    # the update, built explicitly from the vectors with the grid's weights
    g0 = p @ vectors
    gw = best @ vectors
    direct = (g0 + c * np.linalg.norm(g0) * gw / np.linalg.norm(gw)) / (1 + c**2)
    got = cagrad_coefficients(torch.tensor(gram), p.tolist(), c).numpy() @ vectors
    assert np.allclose(got, direct, atol=5e-3 * np.linalg.norm(direct))


def test_cagrad_update_improves_the_worst_client_over_the_mean():
    vectors = np.array([[1.0, 0.0], [-0.9, 0.3]])
    gram = vectors @ vectors.T
    d = cagrad_coefficients(torch.tensor(gram), [0.5, 0.5], 0.4).numpy() @ vectors
    mean = vectors.mean(axis=0)
    assert min(vectors @ d) > min(vectors @ mean)
    assert np.allclose(cagrad_coefficients(torch.tensor(gram), [0.5, 0.5], 0.0), [0.5, 0.5])
