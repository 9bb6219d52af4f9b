"""Shared tensor helpers against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from fmtlbench import maths
from fmtlbench.maths import delta, flatten, gram, nbytes, unflatten, weighted_mean
from fmtlbench.schedule import round_lr


def test_weighted_mean_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(10)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(20)}
    out = weighted_mean([a, b], [0.25, 0.75])
    assert torch.equal(out["w"], torch.tensor([2.5, 5.0]))
    assert out["n"].dtype == torch.int64 and int(out["n"]) == 18  # 2.5 + 15 = 17.5 -> 18


def test_weighted_mean_renormalises_over_holders():
    a = {"enc": torch.tensor([0.0]), "semseg": torch.tensor([4.0])}
    b = {"enc": torch.tensor([2.0])}
    c = {"enc": torch.tensor([4.0]), "semseg": torch.tensor([8.0])}
    out = weighted_mean([a, b, c], [0.5, 0.25, 0.25])
    assert out["enc"].item() == pytest.approx(0 * 0.5 + 2 * 0.25 + 4 * 0.25)
    # semseg held by a (0.5) and c (0.25): weights 2/3 and 1/3
    assert out["semseg"].item() == pytest.approx(4 * 2 / 3 + 8 / 3)


def test_flatten_roundtrip_gram_delta_and_bytes():
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([7.0])}
    vec = flatten(state, ["a", "b"])
    assert vec.tolist() == [0, 1, 2, 3, 4, 5, 7]
    back = unflatten(vec, state, ["a", "b"])
    assert all(torch.equal(back[k], state[k]) for k in state)
    rows = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert gram(rows).tolist() == [[5.0, 1.0], [1.0, 10.0]]
    assert delta({"a": torch.tensor([3.0])}, {"a": torch.tensor([1.0])})["a"].item() == 2.0
    assert nbytes(state) == 7 * 4


def test_round_lr_warmup_then_cosine():
    base = 1e-3
    assert round_lr(base, 1, 10, 1) == pytest.approx(base / 2)
    assert round_lr(base, 2, 10, 1) == pytest.approx(base)
    # cosine over the 9 post-warm-up rounds: round 2 + 4.5 is half-way
    mid = round_lr(base, 6, 10, 1)
    assert mid == pytest.approx(
        base * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 4 / 9))
    )
    assert round_lr(base, 10, 10, 0) < round_lr(base, 9, 10, 0) < base


def test_gram_of_float32_states_matches_float64_reference() -> None:
    """The float32 per-key matmuls agree with one float64 matmul over the flattened states."""
    gen = torch.Generator().manual_seed(3)
    shapes = {"a.weight": (64, 32, 3, 3), "a.bias": (64,), "b.weight": (10, 640)}
    states = [
        {k: torch.randn(s, generator=gen) * 0.01 + 1.0 for k, s in shapes.items()} for _ in range(5)
    ]
    centre = {k: sum(st[k] for st in states) / len(states) for k in shapes}
    keys = list(shapes)
    rows = torch.stack(
        [
            torch.cat([(st[k].double() - centre[k].double()).reshape(-1) for k in keys])
            for st in states
        ]
    )
    expected = rows @ rows.T
    got = maths.gram_of(states, keys, centre)
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())


def test_combine_and_mix_match_float64_reference() -> None:
    """The float32 weighted sums agree with float64 sums written out term by term."""
    gen = torch.Generator().manual_seed(4)
    states = [{"w": torch.randn(50, 7, generator=gen) + 2.0} for _ in range(4)]
    coef = [0.1, -0.4, 0.7, 0.25]
    base = {"w": torch.randn(50, 7, generator=gen)}
    centre = {"w": torch.randn(50, 7, generator=gen)}
    expected = base["w"].double() + sum(
        c * (s["w"].double() - centre["w"].double()) for c, s in zip(coef, states, strict=True)
    )
    got = maths.combine(states, coef, ["w"], centre=centre, base=base)["w"]
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5)
    matrix = torch.tensor([coef, coef[::-1]], dtype=torch.float64)
    rows = maths.mix(states, matrix, ["w"])
    for i, row in enumerate(matrix.tolist()):
        ref = sum(c * s["w"].double() for c, s in zip(row, states, strict=True))
        assert torch.allclose(rows[i]["w"].double(), ref, rtol=1e-5, atol=1e-5)


def test_gram_of_centred_on_weighted_mean_by_hand() -> None:
    """Centring on the states' own weighted mean equals centring on that mean written out."""
    states = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 2.0])}]
    # mean with weights (0.25, 0.75) is (0.25, 1.5): deviations (0.75, -1.5) and (-0.25, 0.5)
    got = maths.gram_of(states, ["w"], mean_weights=[0.25, 0.75])
    expected = torch.tensor([[2.8125, -0.9375], [-0.9375, 0.3125]], dtype=torch.float64)
    assert torch.allclose(got, expected)
    with pytest.raises(ValueError):
        maths.gram_of(states, ["w"], centre=states[0], mean_weights=[0.5, 0.5])


def test_proximal_term_is_one_fused_op_with_the_plain_formulas_value_and_gradient():
    gen = torch.Generator().manual_seed(3)
    shapes = [(64, 3, 7, 7), (64,), (1,), (512, 256), (3, 3)]
    live = {
        f"p{i}": torch.nn.Parameter(torch.randn(s, generator=gen)) for i, s in enumerate(shapes)
    }
    live["p1"].requires_grad_(False)  # a frozen entry (e.g. FedRep's head phase) gets no grad
    anchors = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=gen) for n, p in live.items()}
    mu = 0.37
    loss = 0.5 * mu * maths.squared_distance(live, anchors)
    # one autograd node for all entries, not a chain of small ops per entry
    node = loss.grad_fn.next_functions[0][0]
    assert type(node).__name__ == "_SquaredDistanceBackward"
    assert len(node.next_functions) == len(live)
    loss.backward()
    # reference: the plain formula, in float64, entry by entry
    expected = (
        0.5
        * mu
        * sum(
            float(((p.detach().double() - anchors[n].double()) ** 2).sum()) for n, p in live.items()
        )
    )
    assert loss.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(expected, rel=2e-6)
    for n, p in live.items():
        if not p.requires_grad:
            assert p.grad is None
            continue
        reference = mu * (p.detach().double() - anchors[n].double())
        assert torch.allclose(p.grad.double(), reference, rtol=1e-6, atol=1e-7), n
    # only the names of the anchors count; no anchors, no term
    part = maths.squared_distance(live, {"p2": anchors["p2"]}).detach()
    assert float(part) == pytest.approx(float(((live["p2"].detach() - anchors["p2"]) ** 2).sum()))
    assert float(maths.squared_distance(live, {})) == 0.0
