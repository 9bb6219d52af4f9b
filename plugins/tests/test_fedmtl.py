"""FedMTL: MOCHA's relationship step and the coupling's value and gradient."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from fmtlbench_builtins.algorithms.fedmtl import FedMTL, precision
from toy_clients import Live, make, updates

from fmtlbench import traffic


def models(seed: int = 0, k: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"encoder.a": torch.randn(3, generator=g), "decoder.b": torch.randn(2, 2, generator=g)}
        for _ in range(k)
    ]


def test_precision_is_the_inverse_of_the_normalised_square_root():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 4))
    a = w.T @ w
    root = scipy.linalg.sqrtm(a).real
    expected = np.linalg.inv(root / np.trace(root))
    assert np.allclose(precision(torch.tensor(a), 1e-7).numpy(), expected)


def test_coupling_value_and_gradient_match_the_trace_formula():
    states = models()
    fedmtl = make(FedMTL, states, lam=0.3)
    trained = models(seed=1)
    fedmtl.aggregate(1, updates(trained))
    omega = fedmtl.omega
    w = torch.stack([torch.cat([s["encoder.a"], s["decoder.b"].reshape(-1)]) for s in trained])
    w = w.T.double().requires_grad_(True)  # d x K, columns are clients
    full = 0.3 * torch.trace(w @ omega @ w.T)
    full.backward()
    context = fedmtl.context(1)
    live = Live(trained[1])
    value = fedmtl.client_loss(live.view(), context)
    value.backward()
    assert value.item() == pytest.approx(full.item(), rel=1e-5)
    grad = torch.cat([live.p0.grad, live.p1.grad.reshape(-1)]).double()
    assert torch.allclose(grad, w.grad[:, 1], atol=1e-5)


def test_each_client_downloads_the_other_models():
    states = models(k=4)
    fedmtl = make(FedMTL, states)
    context = fedmtl.context(2)
    sent = traffic.context_bytes(context, fedmtl.groups[2], set())
    assert sent["encoder"] == 3 * 3 * 4 and sent["decoder"] == 3 * 4 * 4  # K - 1 = 3 models
    assert sent["context"] == 4 * 8 + 8  # a row of Omega and the constant, float64
    assert fedmtl.aggregate(1, updates(models(seed=2, k=4))) == {}  # models stay with clients
    assert torch.allclose(fedmtl.omega, fedmtl.omega.T)


def test_partial_entries_are_coupled_among_their_holders():
    states = models()
    del states[2]["decoder.b"]
    fedmtl = make(FedMTL, states, lam=1.0)
    trained = models(seed=4)
    del trained[2]["decoder.b"]
    fedmtl.aggregate(1, updates(trained))
    omega = fedmtl.omega
    # an independent double loop over entries and the pairs of clients holding them
    by_hand = 0.0
    for name in ("encoder.a", "decoder.b"):
        holders = [j for j, s in enumerate(trained) if name in s]
        for j in holders:
            for m in holders:
                dot = float((trained[j][name].double() * trained[m][name].double()).sum())
                by_hand += omega[j, m].item() * dot
    live = Live(trained[0])
    value = fedmtl.client_loss(live.view(), fedmtl.context(0))
    assert value.item() == pytest.approx(by_hand, rel=1e-5)
    assert "decoder.b" not in fedmtl.context(0)["models"][2]
