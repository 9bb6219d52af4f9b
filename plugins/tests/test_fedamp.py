"""FedAMP: attention weights, personalised cloud models and the proximal pull, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from fmtlbench_builtins.algorithms.fedamp import FedAMP
from toy_clients import Live, make, updates


def clients() -> list[dict[str, torch.Tensor]]:
    # squared distances: |w0 - w1|^2 = 1, |w0 - w2|^2 = 4, |w1 - w2|^2 = 5
    return [
        {"encoder.w": torch.tensor([0.0, 0.0]), "decoder.x": torch.tensor([1.0])},
        {"encoder.w": torch.tensor([1.0, 0.0])},
        {"encoder.w": torch.tensor([0.0, 2.0]), "decoder.x": torch.tensor([3.0])},
    ]


def test_attention_weights_and_cloud_models_by_hand():
    states = clients()
    fedamp = make(FedAMP, states, alpha=0.5, sigma=2.0)
    payloads = fedamp.aggregate(1, updates(states))
    # xi_ij = alpha * A'(d^2) = (alpha / sigma) * exp(-d^2 / sigma)
    x01, x02, x12 = 0.25 * math.exp(-0.5), 0.25 * math.exp(-2.0), 0.25 * math.exp(-2.5)
    expected = torch.tensor(
        [[1 - x01 - x02, x01, x02], [x01, 1 - x01 - x12, x12], [x02, x12, 1 - x02 - x12]],
        dtype=torch.float64,
    )
    assert torch.allclose(fedamp.xi, expected)
    assert torch.allclose(payloads[0]["encoder.w"], torch.tensor([x01, 2 * x02]))
    assert torch.allclose(payloads[1]["encoder.w"], torch.tensor([1 - x01 - x12, 2 * x12]))
    # decoder.x is held by clients 0 and 2 only: their weights renormalised
    x00 = 1 - x01 - x02
    assert payloads[0]["decoder.x"].item() == pytest.approx((x00 * 1 + x02 * 3) / (x00 + x02))
    assert "decoder.x" not in payloads[1]


def test_too_large_a_step_is_capped_to_a_convex_combination():
    near = [{"encoder.w": torch.tensor([0.0, float(k) * 1e-3])} for k in range(3)]
    fedamp = make(FedAMP, near, alpha=1.0, sigma=1.0)
    payloads = fedamp.aggregate(1, updates(near))
    # xi_ij ~ exp(0) = 1 for both others: the row sums past 1, so they are halved, xi_ii = 0
    half = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(fedamp.xi, half, atol=1e-5)
    assert torch.allclose(payloads[0]["encoder.w"], torch.tensor([0.0, 1.5e-3]), atol=1e-8)


def test_distant_models_get_no_attention():
    far = [{"encoder.w": torch.tensor([10.0 * k, 0.0])} for k in range(3)]
    payloads = make(FedAMP, far).aggregate(1, updates(far))
    for k in range(3):  # exp(-100) ~ 4e-44: u_i = w_i (full personalisation)
        assert torch.allclose(payloads[k]["encoder.w"], far[k]["encoder.w"], atol=1e-30)


def test_proximal_term_has_the_gradient_lambda_over_alpha_times_w_minus_u():
    states = clients()
    fedamp = make(FedAMP, states, alpha=0.5, sigma=2.0, lam=3.0)
    payloads = fedamp.aggregate(1, updates(states))
    anchor = fedamp.context(0)
    assert anchor["encoder.w"] is payloads[0]["encoder.w"]  # not downloaded twice
    w = torch.tensor([2.0, -1.0])
    live = Live({"encoder.w": w, "decoder.x": torch.tensor([0.0])})
    loss = fedamp.client_loss(live.view(), anchor)
    loss.backward()
    u = payloads[0]["encoder.w"]
    assert torch.allclose(live.p0.grad, 3.0 / 0.5 * (w - u))
    expected_x = 3.0 / 0.5 * (0.0 - payloads[0]["decoder.x"])
    assert torch.allclose(live.p1.grad, expected_x)


@pytest.mark.parametrize("clip", [True, False])
def test_rows_past_one_are_clipped_and_counted_or_left_as_the_paper_has_them(clip):
    states = clients()  # squared distances 1 (0-1), 4 (0-2), 5 (1-2)
    fedamp = make(FedAMP, states, alpha=3.0, sigma=1.0, clip=clip)
    payloads = fedamp.aggregate(1, updates(states))
    x01, x02, x12 = 3 * math.exp(-1.0), 3 * math.exp(-4.0), 3 * math.exp(-5.0)
    # rows 0 and 1 sum past 1 (1.159 and 1.124), row 2 does not (0.075)
    assert x01 + x02 > 1 and x01 + x12 > 1 and x02 + x12 < 1
    row2 = [x02, x12, 1 - x02 - x12]
    if clip:
        s0, s1 = x01 + x02, x01 + x12
        expected = [[0.0, x01 / s0, x02 / s0], [x01 / s1, 0.0, x12 / s1], row2]
    else:
        expected = [[1 - x01 - x02, x01, x02], [x01, 1 - x01 - x12, x12], row2]
    assert torch.allclose(fedamp.xi, torch.tensor(expected, dtype=torch.float64))
    assert fedamp.round_metrics() == {
        "clipped_rows": 2.0 if clip else 0.0,
        "min_self_weight": pytest.approx(0.0 if clip else 1 - x01 - x02, abs=1e-6),
    }
    # u_0 = sum_j xi_0j w_j with w_0 = 0, w_1 = (1, 0), w_2 = (0, 2)
    u0 = [expected[0][1], 2 * expected[0][2]]
    assert torch.allclose(payloads[0]["encoder.w"], torch.tensor(u0))
    u2 = [row2[1], 2 * row2[2]]  # the unclipped row is the same under both
    assert torch.allclose(payloads[2]["encoder.w"], torch.tensor(u2))
    # decoder.x (clients 0 and 2 only): unclipped, row 0's weights among the holders total
    # 1 - x01 < 0, so client 0 keeps its own entry rather than dividing by a negative sum
    x00 = expected[0][0]
    own = (x00 * 1 + expected[0][2] * 3) / (x00 + expected[0][2]) if clip else 1.0
    assert payloads[0]["decoder.x"].item() == pytest.approx(own)


def test_no_row_past_one_is_clipped():
    states = clients()
    fedamp = make(FedAMP, states, alpha=0.5, sigma=2.0)
    fedamp.aggregate(1, updates(states))
    x01, x02 = 0.25 * math.exp(-0.5), 0.25 * math.exp(-2.0)
    assert fedamp.round_metrics() == {
        "clipped_rows": 0.0,
        "min_self_weight": pytest.approx(1 - x01 - x02, abs=1e-6),  # row 0 attends most
    }


def test_a_client_attending_to_no_one_gets_its_own_tensors_and_the_others_are_mixed():
    # clients 0 and 1 are close (attention exp(-1) each way), client 2 is 40 away: exp(-1600)
    # is exactly 0 in float64, so row 2 of xi is the identity's
    states = [
        {"encoder.w": torch.tensor([0.0, 0.0])},
        {"encoder.w": torch.tensor([1.0, 0.0])},
        {"encoder.w": torch.tensor([0.0, 40.0])},
    ]
    fedamp = make(FedAMP, states, alpha=0.5, sigma=1.0)
    payloads = fedamp.aggregate(1, updates(states))
    x = 0.5 * math.exp(-1.0)
    assert fedamp.xi[2].tolist() == [0.0, 0.0, 1.0]
    assert payloads[2]["encoder.w"] is states[2]["encoder.w"]  # its own tensor, not a copy
    # (distances come from a float32 Gram with entries ~1e3: a few digits are lost)
    assert torch.allclose(payloads[0]["encoder.w"], torch.tensor([x, 0.0]), atol=1e-4)
    assert torch.allclose(payloads[1]["encoder.w"], torch.tensor([1 - x, 0.0]), atol=1e-4)
