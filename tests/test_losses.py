"""Task losses against naive numpy loops written here, independent of fmtlbench.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmtlbench.errors import ConfigError
from fmtlbench.losses import multitask_loss, task_loss
from fmtlbench.tasks import IGNORE, TaskSpec

N, H, W = 2, 5, 6
SEMSEG = TaskSpec("semseg", channels=4, classes=4)
DEPTH = TaskSpec("depth", channels=1)
NORMALS = TaskSpec("normals", channels=3)
EDGE = TaskSpec("edge", channels=1, pos_weight=0.8)
SALIENCY = TaskSpec("saliency", channels=1)  # pos_weight None: balanced by the batch


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _ignore_some(target: torch.Tensor, g: torch.Generator, share: float = 0.3) -> torch.Tensor:
    """Set about ``share`` of the pixels (same pixels in every channel) to IGNORE."""
    mask = torch.rand(target.shape[0], *target.shape[-2:], generator=g) < share
    out = target.clone()
    if out.dim() == 4:
        out[mask.unsqueeze(1).expand_as(out)] = IGNORE
    else:
        out[mask] = IGNORE
    return out


def _bce_numpy(x: np.ndarray, y: np.ndarray, w: float) -> float:
    """Balanced BCE by an explicit loop over valid pixels (plain sigmoid is fine for |x| < 5)."""
    terms = []
    for xi, yi in zip(x.ravel(), y.ravel(), strict=True):
        if yi == IGNORE:
            continue
        s = 1 / (1 + math.exp(-xi))
        terms.append(-(w * yi * math.log(s) + (1 - w) * (1 - yi) * math.log(1 - s)))
    return sum(terms) / len(terms)


def test_cross_entropy_matches_a_pixel_loop() -> None:
    g = _gen()
    logits = torch.randn(N, 4, H, W, generator=g)
    target = _ignore_some(torch.randint(0, 4, (N, H, W), generator=g), g)
    x, t = logits.double().numpy(), target.numpy()
    terms = []
    for n in range(N):
        for i in range(H):
            for j in range(W):
                if t[n, i, j] == IGNORE:
                    continue
                z = x[n, :, i, j]
                terms.append(math.log(np.exp(z).sum()) - z[t[n, i, j]])
    assert 0 < len(terms) < N * H * W
    assert task_loss(SEMSEG, logits, target).item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_depth_l1_on_valid_pixels_only() -> None:
    g = _gen()
    pred = torch.rand(N, 1, H, W, generator=g) * 5
    target = _ignore_some(torch.rand(N, 1, H, W, generator=g) * 5 + 0.1, g)
    p, t = pred.double().numpy(), target.double().numpy()
    valid = t != IGNORE
    expected = np.abs(p[valid] - t[valid]).mean()
    assert task_loss(DEPTH, pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_depth_l1_hand_value() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 9.0]).reshape(1, 1, 2, 2)
    target = torch.tensor([1.5, 1.0, float(IGNORE), 0.0]).reshape(1, 1, 2, 2)
    # valid: |1-1.5| and |2-1|; 255 is ignored and depth 0 means "no reading".
    assert task_loss(DEPTH, pred, target).item() == pytest.approx(0.75)


def test_nan_in_an_invalid_depth_pixel_does_not_poison_the_gradient() -> None:
    # Some depth files hold NaN where the sensor had no reading; NaN is not > 0, so invalid.
    pred = torch.tensor([1.0, 2.0]).reshape(1, 1, 1, 2).requires_grad_()
    target = torch.tensor([3.0, float("nan")]).reshape(1, 1, 1, 2)
    loss = task_loss(DEPTH, pred, target)
    loss.backward()
    assert loss.item() == pytest.approx(2.0)
    assert pred.grad.tolist() == [[[[-1.0, 0.0]]]]


def test_normals_l1_mean_over_valid_pixels_and_channels() -> None:
    g = _gen()
    raw = torch.randn(N, 3, H, W, generator=g)
    pred = raw / raw.norm(dim=1, keepdim=True)
    t = torch.randn(N, 3, H, W, generator=g)
    target = _ignore_some(t / t.norm(dim=1, keepdim=True), g)
    p, tt = pred.double().numpy(), target.double().numpy()
    diffs = []
    for n in range(N):
        for i in range(H):
            for j in range(W):
                if tt[n, 0, i, j] != IGNORE:
                    diffs.extend(abs(p[n, c, i, j] - tt[n, c, i, j]) for c in range(3))
    assert task_loss(NORMALS, pred, target).item() == pytest.approx(np.mean(diffs), rel=1e-5)


def test_edge_balanced_bce_with_fixed_weight() -> None:
    g = _gen()
    logits = torch.randn(N, 1, H, W, generator=g) * 2
    target = _ignore_some((torch.rand(N, 1, H, W, generator=g) < 0.3).float(), g)
    expected = _bce_numpy(logits.double().numpy(), target.double().numpy(), 0.8)
    assert task_loss(EDGE, logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_saliency_weight_defaults_to_negative_share_of_batch() -> None:
    g = _gen()
    logits = torch.randn(N, 1, H, W, generator=g) * 2
    target = _ignore_some((torch.rand(N, 1, H, W, generator=g) < 0.3).float(), g)
    t = target.double().numpy()
    valid = t != IGNORE
    w = (t[valid] == 0).sum() / valid.sum()
    assert 0.5 < w < 1
    expected = _bce_numpy(logits.double().numpy(), t, w)
    assert task_loss(SALIENCY, logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_edge_gradient_matches_hand_derivation() -> None:
    # d/dx of -(w y log s + (1-w)(1-y) log(1-s)) = (1-w)(1-y) s - w y (1-s), divided by the
    # number of valid pixels; ignored pixels get no gradient.
    g = _gen()
    logits = (torch.randn(N, 1, H, W, generator=g) * 2).double().requires_grad_()
    target = _ignore_some((torch.rand(N, 1, H, W, generator=g) < 0.3).double(), g)
    task_loss(EDGE, logits, target).backward()
    x, y = logits.detach().numpy(), target.numpy()
    valid = y != IGNORE
    s = 1 / (1 + np.exp(-x))
    w = 0.8
    expected = np.where(valid, (1 - w) * (1 - y) * s - w * y * (1 - s), 0.0) / valid.sum()
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_bce_is_stable_for_large_logits() -> None:
    # x = +-100 with the wrong label: log(1 - sigmoid(100)) = -100 - log(1 + e^-100) ~ -100.
    logits = torch.tensor([100.0, -100.0]).reshape(1, 1, 1, 2)
    target = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2)
    # mean of (1-w)*100 and w*100 with w = 0.8
    assert task_loss(EDGE, logits, target).item() == pytest.approx((0.2 * 100 + 0.8 * 100) / 2)


@pytest.mark.parametrize("spec", [SEMSEG, DEPTH, NORMALS, EDGE, SALIENCY], ids=lambda s: s.name)
def test_all_ignore_batch_gives_zero_loss_and_zero_gradient(spec: TaskSpec) -> None:
    pred = torch.randn(N, spec.channels, H, W, requires_grad=True)
    shape = (N, H, W) if spec.classes else (N, spec.channels, H, W)
    target = torch.full(shape, float(IGNORE))
    target = target.long() if spec.classes else target
    loss = task_loss(spec, pred, target)
    loss.backward()
    assert loss.item() == 0.0
    assert pred.grad is not None and torch.equal(pred.grad, torch.zeros_like(pred))


def test_unknown_task_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="'albedo'"):
        task_loss(TaskSpec("albedo", channels=3), torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_mismatched_target_shape_is_refused() -> None:
    # An N x H x W depth target would broadcast against N x 1 x H x W into N x N x H x W.
    with pytest.raises(ConfigError, match="depth"):
        task_loss(DEPTH, torch.rand(N, 1, H, W), torch.rand(N, H, W))


def test_multitask_loss_weights_tasks_and_logs_unweighted_values() -> None:
    g = _gen()
    logits = torch.randn(N, 1, H, W, generator=g)
    edge_t = (torch.rand(N, 1, H, W, generator=g) < 0.5).float()
    depth_p = torch.rand(N, 1, H, W, generator=g)
    depth_t = torch.rand(N, 1, H, W, generator=g) + 0.5
    edge_ref = _bce_numpy(logits.double().numpy(), edge_t.double().numpy(), 0.8)
    depth_ref = np.abs(depth_p.double().numpy() - depth_t.double().numpy()).mean()
    total, logged = multitask_loss(
        {"edge": EDGE, "depth": DEPTH, "normals": NORMALS},  # normals has no prediction: skipped
        {"edge": logits, "depth": depth_p},
        {"edge": edge_t, "depth": depth_t},
    )
    assert total.item() == pytest.approx(50 * edge_ref + 1 * depth_ref, rel=1e-5)
    assert logged == pytest.approx({"edge": edge_ref, "depth": depth_ref}, rel=1e-5)


def test_multitask_loss_names_a_task_without_target() -> None:
    with pytest.raises(ConfigError, match="'depth'.*targets"):
        multitask_loss({"depth": DEPTH}, {"depth": torch.rand(1, 1, 2, 2)}, {})
