"""Server-side CAGrad: the conflict-averse step from client updates, applied to the global model."""

from __future__ import annotations

import numpy as np
import torch
from fmtlbench_builtins.algorithms.cagrad import CAGrad
from toy_clients import make, updates


def brute_force_step(deltas: np.ndarray, c: float, steps: int = 20000) -> np.ndarray:
    """CAGrad's update for two vectors, its weight found on a fine grid of the simplex."""
    g0 = deltas.mean(axis=0)
    t = np.linspace(0, 1, steps + 1)[:, None]
    gw = t * deltas[0] + (1 - t) * deltas[1]
    values = gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw, axis=1)
    best = gw[np.argmin(values)]
    return (g0 + c * np.linalg.norm(g0) * best / np.linalg.norm(best)) / (1 + c**2)


def test_step_matches_brute_force_and_is_taken_from_the_global_model():
    cagrad = make(CAGrad, [{"encoder.w": torch.zeros(2)}, {"encoder.w": torch.zeros(2)}])
    first = np.array([[1.0, 0.0], [-0.9, 0.3]])
    ups = updates([{"encoder.w": torch.tensor(row, dtype=torch.float32)} for row in first])
    payloads = cagrad.aggregate(1, ups)
    global_1 = brute_force_step(first, 0.4)
    assert np.allclose(payloads[0]["encoder.w"].numpy(), global_1, atol=1e-4)
    assert np.allclose(payloads[1]["encoder.w"].numpy(), global_1, atol=1e-4)
    # round 2: the deltas are the uploads minus the new global model
    deltas = np.array([[0.5, -0.2], [-0.1, 0.4]])
    uploads = [{"encoder.w": torch.tensor(global_1 + d, dtype=torch.float32)} for d in deltas]
    payloads = cagrad.aggregate(2, updates(uploads))
    expected = global_1 + brute_force_step(deltas, 0.4)
    assert np.allclose(payloads[0]["encoder.w"].numpy(), expected, atol=1e-4)


def test_c_zero_is_fedavg():
    cagrad = make(CAGrad, [{"encoder.w": torch.zeros(2)}] * 3, c=0.0)
    rows = [torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 0.0]), torch.tensor([5.0, 1.0])]
    payloads = cagrad.aggregate(1, updates([{"encoder.w": r} for r in rows]))
    assert torch.allclose(payloads[2]["encoder.w"], torch.tensor([1.0, 1.0]))
