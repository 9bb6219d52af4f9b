"""Client-side task weightings: the default is the study's loss bit for bit, uncertainty and DWA
match hand-computed numbers, and the Jacobian weightings give torchjd's own update."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from fmtlbench_builtins.weightings.jacobian import MGDA, AlignedMTL, NashMTL, UPGrad
from fmtlbench_builtins.weightings.loss import DWA, Equal, Fixed, Uncertainty, dwa_weights
from torchjd import aggregation

from fmtlbench.components import Phase
from fmtlbench.errors import ConfigError
from fmtlbench.losses import multitask_loss, task_losses
from fmtlbench.model import build_model
from fmtlbench.registry import load_registry
from fmtlbench.training import split_parameters, train_local

NYUD = load_registry().get("dataset", "nyudv2").tasks
CPU = torch.device("cpu")


def specs(*names: str) -> dict:
    return {t: NYUD[t] for t in names}


def small_model(arch: str = "md", tasks: tuple[str, ...] = ("depth", "edge", "normals")):
    registry = load_registry()
    backbone = registry.get("backbone", "resnet18")
    decoder = registry.get("decoder", arch)
    torch.manual_seed(0)
    return build_model(
        backbone(backbone.Params(weights="scratch")),
        decoder(decoder.Params(widths=(8, 8, 8, 8, 8), convs=1)),
        specs(*tasks),
        (32, 32),
    )


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(2, 3, 32, 32, generator=g),
        "depth": torch.rand(2, 1, 32, 32, generator=g) + 0.5,
        "edge": (torch.rand(2, 1, 32, 32, generator=g) > 0.8).float(),
        "normals": torch.nn.functional.normalize(torch.randn(2, 3, 32, 32, generator=g), dim=1),
    }


def started(weighting, names=("depth", "edge"), state=None):
    weighting.begin(0, specs(*names), state or {}, CPU)
    return weighting


# --------------------------------------------------------------------------- equal
def test_equal_is_the_study_loss_and_gradient_bit_for_bit():
    model = small_model()
    data = batch()
    preds = model(data["image"], list(model.tasks))
    study, _ = multitask_loss(model.tasks, preds, data)
    study_grads = torch.autograd.grad(study, list(model.parameters()), retain_graph=True)
    equal = started(Equal(), tuple(model.tasks))
    mine = equal.combine(task_losses(model.tasks, preds, data))
    mine_grads = torch.autograd.grad(mine, list(model.parameters()))
    assert torch.equal(mine, study)
    assert all(torch.equal(a, b) for a, b in zip(mine_grads, study_grads, strict=True))
    assert equal.weights() == {"depth": 1.0, "edge": 50.0, "normals": 10.0}


def test_training_with_equal_moves_the_model_exactly_like_the_default_training():
    """Two AdamW steps through ``train_local``: the weighting path and the study's path give
    identical states and losses, so default results cannot move."""
    plain, weighted = small_model(), small_model()
    loader = [batch(0), batch(1)]
    run = dict(phases=[Phase()], epochs=1, lr=1e-2, weight_decay=1e-4, context=None)
    a = train_local(plain, loader, plain.tasks, extra_loss=lambda m, c: None, **run)
    b = train_local(
        weighted,
        loader,
        weighted.tasks,
        extra_loss=lambda m, c: None,
        weighting=started(Equal(), tuple(weighted.tasks)),
        **run,
    )
    assert a == b
    sa, sb, start = plain.state_dict(), weighted.state_dict(), small_model().state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], start[k]) for k in sa)  # the steps did train


# --------------------------------------------------------------------------- fixed
def test_fixed_uses_the_given_weights_per_client_and_refuses_a_missing_task():
    fixed = Fixed(Fixed.Params(weights={"depth": 2.0, "edge": 3.0}, clients={1: {"edge": 0.5}}))
    fixed.begin(1, specs("depth", "edge"), {}, CPU)
    loss = fixed.combine({"depth": torch.tensor(4.0), "edge": torch.tensor(10.0)})
    assert float(loss) == 2.0 * 4.0 + 0.5 * 10.0
    with pytest.raises(ConfigError, match="no weight for task.*normals"):
        fixed.check(0, specs("depth", "normals"), "fp32")


# --------------------------------------------------------------------------- uncertainty
def test_uncertainty_loss_and_log_variance_gradients_by_hand():
    """s_depth = 0, s_edge = ln 2, L_depth = 2, L_edge = 0.5, q = (1, 50):
    L = ½(1·1·2 + 0) + ½(½·50·0.5 + ln 2) = 1 + 6.25 + ln(2)/2 = 7.596573590279973;
    dL/ds_t = ½(1 - e^{-s_t} q_t L_t) = (-0.5, -5.75)."""
    w = started(Uncertainty(), state={"log_var": {"depth": 0.0, "edge": math.log(2.0)}})
    loss = w.combine({"depth": torch.tensor(2.0), "edge": torch.tensor(0.5)})
    assert float(loss.detach()) == pytest.approx(7.596573590279973, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, w.parameters())
    assert grad.tolist() == pytest.approx([-0.5, -5.75], rel=1e-6)
    assert w.weights() == pytest.approx({"depth": 0.5, "edge": 12.5}, rel=1e-6)
    assert w.state_dict()["log_var"] == pytest.approx({"depth": 0.0, "edge": math.log(2.0)})


def test_uncertainty_log_variances_are_trained_without_decay_and_carried_to_the_next_round():
    """From s_t = 1, AdamW's first step moves s_t by lr against the sign of its gradient
    ½(1 - e^{-1} q_t L_t); weight decay 0.5 on the model must not reach s_t (it would take
    another lr·0.5·s_t = 0.005 off)."""
    model = small_model(tasks=("depth", "edge"))
    w = started(Uncertainty(Uncertainty.Params(init=1.0)))
    losses = train_local(model, [batch()], model.tasks, [Phase()], 1, 1e-2, 0.5,
                         lambda m, c: None, None, weighting=w)  # fmt: skip
    after = w.state_dict()["log_var"]
    for task in ("depth", "edge"):
        gradient = 0.5 * (1 - math.exp(-1.0) * NYUD[task].loss_weight * losses[task])
        assert after[task] == pytest.approx(1.0 - 0.01 * math.copysign(1, gradient), abs=1e-6)
    nxt = started(Uncertainty(), state={"log_var": after})
    assert nxt.log_var.tolist() == pytest.approx([after["depth"], after["edge"]])


# --------------------------------------------------------------------------- DWA
def test_dwa_weights_by_hand():
    """Ratios r = (0.5/1, 3/2) = (0.5, 1.5), τ = 2: w = 2·e^{r/2}/Σe^{r/2}, i.e.
    w_depth = 2/(1 + e^{0.5}) = 0.7550813375962908 and w_edge = 2 - w_depth."""
    history = [{"depth": 1.0, "edge": 2.0}, {"depth": 0.5, "edge": 3.0}]
    w = dwa_weights(history, ["depth", "edge"], 2.0)
    assert w["depth"] == pytest.approx(0.7550813375962908, rel=1e-12)
    assert w["edge"] == pytest.approx(1.2449186624037092, rel=1e-12)
    assert dwa_weights(history[:1], ["depth", "edge"], 2.0) == {"depth": 1.0, "edge": 1.0}


def test_dwa_counts_epochs_across_rounds_through_its_state():
    dwa = started(DWA())
    for means in ({"depth": 1.0, "edge": 2.0}, {"depth": 0.5, "edge": 3.0}):
        dwa.epoch_start()
        assert dwa.w == {"depth": 1.0, "edge": 1.0}  # the first two epochs
        dwa.epoch_end(means)
    later = started(DWA(), state=dwa.state_dict())  # the client's next round
    later.epoch_start()
    loss = later.combine({"depth": torch.tensor(2.0), "edge": torch.tensor(0.1)})
    w_depth = 2 / (1 + math.exp(0.5))
    assert float(loss.detach()) == pytest.approx(
        w_depth * 1 * 2.0 + (2 - w_depth) * 50 * 0.1, rel=1e-6
    )
    assert later.weights() == pytest.approx({"depth": w_depth, "edge": (2 - w_depth) * 50})


# --------------------------------------------------------------------------- Jacobian
DIRECT = {
    UPGrad: lambda n: aggregation.UPGrad(),
    MGDA: lambda n: aggregation.MGDA(),
    AlignedMTL: lambda n: aggregation.AlignedMTL(),
    NashMTL: lambda n: aggregation.NashMTL(n_tasks=n),
}


@pytest.mark.parametrize("cls", list(DIRECT), ids=lambda c: c.name)
def test_jacobian_weighting_gives_torchjds_update_on_conflicting_gradients(cls):
    """L_depth = a·θ and L_edge = b·θ with a·b < 0; the rows torchjd sees are q_t ∇L_t =
    (1·a, 50·b). A parameter φ of depth alone gets depth's own gradient q·2φ."""
    a, b = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([-1.0, 0.5, -0.1])
    assert float(a @ b) < 0
    theta = torch.tensor([0.3, -0.2, 0.7], requires_grad=True)
    phi = torch.tensor([1.5, -2.0], requires_grad=True)
    w = started(cls())
    losses = {"depth": a @ theta + (phi**2).sum(), "edge": b @ theta}
    w.backward(losses, [theta], [phi])
    expected = DIRECT[cls](2)(torch.stack([1.0 * a, 50.0 * b]))
    assert torch.allclose(theta.grad, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(phi.grad, 2 * phi.detach())
    weights = w.weights()
    combined = weights["depth"] * a + weights["edge"] * b  # logged weights reproduce the update
    assert torch.allclose(combined, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [UPGrad, MGDA, AlignedMTL], ids=lambda c: c.name)
def test_jacobian_weighting_on_one_task_is_the_plain_gradient(cls):
    theta = torch.tensor([0.3, -0.2, 0.7], requires_grad=True)
    w = started(cls(), names=("edge",))
    w.backward({"edge": (theta**2).sum()}, [theta], [])
    assert torch.allclose(theta.grad, 50.0 * 2 * theta.detach(), rtol=1e-5)


def test_shared_parameters_are_the_encoder_under_md_and_all_but_the_heads_under_tc():
    md = split_parameters(small_model("md"))
    assert {n for n, t in md.items() if t is None} == {n for n in md if n.startswith("encoder.")}
    assert {t for t in md.values()} == {None, "depth", "edge", "normals"}
    tc = split_parameters(small_model("tc"))
    specific = {n for n, t in tc.items() if t is not None}
    assert specific and all(n.startswith("decoder.heads.") for n in specific)
    assert any(n.startswith("decoder.embedding.") and t is None for n, t in tc.items())


def moved(arch: str, weighting) -> tuple[set[str], dict, dict]:
    """Parameters one local step changes, the losses and the weights it logged."""
    model = small_model(arch)
    before = copy.deepcopy(model.state_dict())
    w = started(weighting, tuple(model.tasks))
    losses = train_local(model, [batch()], model.tasks, [Phase()], 1, 1e-2, 1e-4,
                         lambda m, c: None, None, weighting=w)  # fmt: skip
    after = model.state_dict()
    names = {n for n, _ in model.named_parameters() if not torch.equal(before[n], after[n])}
    return names, losses, w.weights()


@pytest.mark.parametrize("arch", ["md", "tc"])
def test_upgrad_trains_md_and_tc_models_in_one_local_step(arch):
    """The step reaches every parameter the study's step reaches (resnet18's zero-initialised
    residual branches leave some biases without gradient in either), with positive weights."""
    names, losses, weights = moved(arch, UPGrad())
    reference, _, _ = moved(arch, Equal())
    assert names == reference
    assert any(n.startswith("encoder.") for n in names)
    assert set(weights) == set(NYUD) & set(losses) and all(v > 0 for v in weights.values())
    assert set(losses) == {"depth", "edge", "normals", "total"}


def test_jacobian_weightings_refuse_fp16():
    with pytest.raises(ConfigError, match="fp16"):
        UPGrad().check(0, specs("depth", "edge"), "fp16")
