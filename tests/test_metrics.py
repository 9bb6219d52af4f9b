"""Streaming meters against hand values and naive numpy computations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmtlbench.errors import DataError
from fmtlbench.metrics import make_meter
from fmtlbench.tasks import IGNORE, TaskSpec

SEMSEG = TaskSpec("semseg", channels=5, classes=5)
DEPTH = TaskSpec("depth", channels=1)
NORMALS = TaskSpec("normals", channels=3)
EDGE = TaskSpec("edge", channels=1, pos_weight=0.8)
SALIENCY = TaskSpec("saliency", channels=1)


def _onehot_logits(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose argmax is ``labels`` (N x H x W -> N x C x H x W)."""
    return torch.nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def _random_batch(spec: TaskSpec, g: torch.Generator, n: int = 2, h: int = 8, w: int = 10):
    """A prediction and a target with roughly a quarter of the pixels ignored."""
    drop = torch.rand(n, 1, h, w, generator=g) < 0.25
    if spec.name == "semseg":
        pred = torch.randn(n, spec.channels, h, w, generator=g)
        target = torch.randint(0, spec.channels, (n, h, w), generator=g)
        return pred, target.masked_fill(drop.squeeze(1), IGNORE)
    if spec.name == "depth":
        pred = torch.rand(n, 1, h, w, generator=g) * 4
        target = torch.rand(n, 1, h, w, generator=g) * 4 + 0.5
    elif spec.name == "normals":
        pred, target = (torch.randn(n, 3, h, w, generator=g) for _ in range(2))
        pred = pred / pred.norm(dim=1, keepdim=True)
        target = target / target.norm(dim=1, keepdim=True)
    else:
        pred = torch.randn(n, 1, h, w, generator=g) * 2
        target = (torch.rand(n, 1, h, w, generator=g) < 0.3).float()
    return pred, target.masked_fill(drop.expand_as(target), IGNORE)


def _run(spec: TaskSpec, batches) -> dict[str, float]:
    meter = make_meter(spec)
    for pred, target in batches:
        meter.update(pred, target)
    return meter.compute()


# --------------------------------------------------------------------------- segmentation
def test_miou_hand_example_with_absent_and_prediction_only_classes() -> None:
    # 4 classes. GT [0 0 1 1], prediction [0 1 1 2]:
    # class 0: TP 1, union 2 -> 1/2; class 1: TP 1, union 3 -> 1/3;
    # class 2: only predicted -> IoU 0, counted; class 3: absent everywhere -> excluded.
    spec = TaskSpec("semseg", channels=4, classes=4)
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = _onehot_logits(torch.tensor([[[0, 1, 1, 2]]]), 4)
    out = _run(spec, [(pred, target)])
    assert out["miou"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3 * 100)
    assert out["pixel_acc"] == pytest.approx(50.0)


def test_miou_matches_a_python_loop_confusion_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    c = SEMSEG.classes
    target = torch.randint(0, 3, (2, 6, 7), generator=g)  # GT uses classes 0..2 only
    labels = torch.randint(0, 4, (2, 6, 7), generator=g)  # class 3 only predicted, 4 nowhere
    target[0, 0, :3] = IGNORE
    conf = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(target.flatten().tolist(), labels.flatten().tolist(), strict=True):
        if t != IGNORE:
            conf[t, p] += 1
    ious = []
    for k in range(c):
        tp, fn, fp = conf[k, k], conf[k].sum() - conf[k, k], conf[:, k].sum() - conf[k, k]
        if tp + fn + fp > 0:
            ious.append(tp / (tp + fn + fp))
    assert len(ious) == 4  # class 4 excluded, class 3 (prediction only) included
    out = _run(SEMSEG, [(_onehot_logits(labels, c), target)])
    assert out["miou"] == pytest.approx(np.mean(ious) * 100)
    assert out["pixel_acc"] == pytest.approx(np.trace(conf) / conf.sum() * 100)


def test_segmentation_label_out_of_range_is_a_data_error() -> None:
    target = torch.tensor([[[0, 7]]])
    with pytest.raises(DataError, match="label 7"):
        make_meter(SEMSEG).update(torch.zeros(1, 5, 1, 2), target)


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("spec", [SEMSEG, DEPTH, NORMALS, EDGE, SALIENCY], ids=lambda s: s.name)
def test_two_batches_equal_one_pass_over_their_concatenation(spec: TaskSpec) -> None:
    g = torch.Generator().manual_seed(2)
    first, second = _random_batch(spec, g, n=1), _random_batch(spec, g, n=3)
    joined = tuple(torch.cat(pair) for pair in zip(first, second, strict=True))
    streamed, whole = _run(spec, [first, second]), _run(spec, [joined])
    assert streamed.keys() == whole.keys()
    assert streamed == pytest.approx(whole, rel=1e-9)


# --------------------------------------------------------------------------- depth
def test_depth_rmse_is_pooled_over_the_set() -> None:
    g = torch.Generator().manual_seed(3)
    a, b = _random_batch(DEPTH, g, n=1), _random_batch(DEPTH, g, n=2)
    p = np.concatenate([a[0].double().numpy(), b[0].double().numpy()])
    t = np.concatenate([a[1].double().numpy(), b[1].double().numpy()])
    valid = t != IGNORE
    out = _run(DEPTH, [a, b])
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((p[valid] - t[valid]) ** 2)), rel=1e-9)
    assert out["abs_rel"] == pytest.approx(
        np.mean(np.abs(p[valid] - t[valid]) / t[valid]), rel=1e-9
    )


def test_depth_hand_value() -> None:
    pred = torch.tensor([2.0, 1.0, 5.0]).reshape(1, 1, 1, 3)
    target = torch.tensor([1.0, 1.0, float(IGNORE)]).reshape(1, 1, 1, 3)
    out = _run(DEPTH, [(pred, target)])
    assert out["rmse"] == pytest.approx(math.sqrt((1 + 0) / 2))
    assert out["abs_rel"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- normals
def test_normals_hand_value() -> None:
    # errors 90 and 0 degrees, and a zero prediction, which counts as 90 (cosine 0), not 0
    pred = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 0, 0]]).T.reshape(1, 3, 1, 3)
    target = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]).T.reshape(1, 3, 1, 3)
    out = _run(NORMALS, [(pred, target)])
    assert out["mean"] == pytest.approx(60.0)
    assert out["median"] == pytest.approx(90.0, abs=0.005)
    assert out["rmse"] == pytest.approx(math.sqrt(2 * 90**2 / 3))
    assert out["within_11_25"] == pytest.approx(100 / 3)
    assert out["within_30"] == pytest.approx(100 / 3)


def test_normals_metrics_match_numpy() -> None:
    g = torch.Generator().manual_seed(4)
    batches = [_random_batch(NORMALS, g, n=2, h=16, w=20) for _ in range(2)]
    # Tilt half the targets towards the prediction so that every threshold band is populated.
    for pred, target in batches:
        keep = target[:, :1] != IGNORE
        mixed = target + 3 * pred
        mixed = mixed / mixed.norm(dim=1, keepdim=True)
        target.copy_(torch.where(keep & (torch.rand(keep.shape, generator=g) < 0.5), mixed, target))
    p = np.concatenate([b[0].double().numpy() for b in batches]).transpose(0, 2, 3, 1)
    t = np.concatenate([b[1].double().numpy() for b in batches]).transpose(0, 2, 3, 1)
    valid = t[..., 0] != IGNORE
    cos = np.clip((p[valid] * t[valid]).sum(-1), -1, 1)
    angles = np.degrees(np.arccos(cos))
    out = _run(NORMALS, batches)
    assert out["mean"] == pytest.approx(angles.mean(), rel=1e-7)
    assert out["rmse"] == pytest.approx(np.sqrt((angles**2).mean()), rel=1e-7)
    assert abs(out["median"] - np.median(angles)) <= 0.005 + 1e-9  # half a 0.01-degree bin
    for key, limit in [("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30)]:
        share = (angles < limit).mean() * 100
        assert 0 < share < 100
        assert out[key] == pytest.approx(share)


def test_normals_median_of_even_count_is_between_the_middle_values() -> None:
    # Angles of about 10.3 and 20.6 degrees about the z axis: numpy's median is their mean.
    rad = np.radians([10.3, 20.6])
    pred = torch.tensor([[np.sin(r), 0.0, np.cos(r)] for r in rad]).T.reshape(1, 3, 1, 2).float()
    target = torch.tensor([[0.0, 0.0, 1.0]] * 2).T.reshape(1, 3, 1, 2)
    p = pred.double().numpy().reshape(3, 2)
    exact = np.median(np.degrees(np.arctan2(np.hypot(p[0], p[1]), p[2])))
    assert exact == pytest.approx(15.45, abs=1e-5)
    assert abs(_run(NORMALS, [(pred, target)])["median"] - exact) <= 0.005 + 1e-9


# --------------------------------------------------------------------------- edge
def test_edge_loss_is_balanced_bce_pooled_over_the_set() -> None:
    g = torch.Generator().manual_seed(5)
    batches = [_random_batch(EDGE, g, n=n) for n in (1, 3)]
    x = np.concatenate([b[0].double().numpy() for b in batches]).ravel()
    y = np.concatenate([b[1].double().numpy() for b in batches]).ravel()
    w, total, count = 0.8, 0.0, 0
    for xi, yi in zip(x, y, strict=True):
        if yi != IGNORE:
            s = 1 / (1 + math.exp(-xi))
            total -= w * yi * math.log(s) + (1 - w) * (1 - yi) * math.log(1 - s)
            count += 1
    assert _run(EDGE, batches)["loss"] == pytest.approx(total / count, rel=1e-9)


# --------------------------------------------------------------------------- saliency
def test_saliency_maxf_and_iou_match_a_brute_force_search() -> None:
    g = torch.Generator().manual_seed(6)
    batches = [_random_batch(SALIENCY, g, n=2, h=12, w=12) for _ in range(2)]
    # Make the logits informative so the best threshold is not at the edge of the range.
    for pred, target in batches:
        pred.add_(2.0 * (target == 1).float())
    x = np.concatenate([b[0].double().numpy() for b in batches]).ravel()
    y = np.concatenate([b[1].double().numpy() for b in batches]).ravel()
    keep = y != IGNORE
    prob, truth = 1 / (1 + np.exp(-x[keep])), y[keep] > 0.5
    best, iou = 0.0, None
    for k in range(1, 100):
        guess = prob >= k / 100
        tp = np.sum(guess & truth)
        precision = tp / guess.sum() if guess.sum() else 0.0
        recall = tp / truth.sum()
        if precision + recall:
            best = max(best, 1.3 * precision * recall / (0.3 * precision + recall))
        if k == 50:
            iou = tp / np.sum(guess | truth)
    out = _run(SALIENCY, batches)
    assert out["maxf"] == pytest.approx(best * 100, rel=1e-9)
    assert out["iou"] == pytest.approx(iou * 100, rel=1e-9)


# --------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("spec", [SEMSEG, DEPTH, NORMALS, EDGE, SALIENCY], ids=lambda s: s.name)
def test_nothing_valid_gives_nan_not_an_error(spec: TaskSpec) -> None:
    pred, target = _random_batch(spec, torch.Generator().manual_seed(7))
    target = torch.full_like(target, IGNORE)
    out = _run(spec, [(pred, target)])
    assert out and all(math.isnan(v) for v in out.values())


def test_unknown_task_has_no_meter() -> None:
    with pytest.raises(KeyError, match="albedo"):
        make_meter(TaskSpec("albedo", channels=3))
