"""Bytes actually sent per round, checked against the model's state dict computed here.

Every exchanged state-dict entry costs numel x bytes per element: 4 for float32 weights and
BN running statistics, 8 for the int64 ``num_batches_tracked`` counters. So for FedAvg (all
groups) with 4 identical NYUD clients, one round moves 4 x S up and 4 x S down, i.e.
2 x 4 x S bytes, with S = sum over the state dict of numel x element size.
"""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from fmtlbench.runner import execute

#: Element sizes written out here rather than taken from ``Tensor.element_size``.
DTYPE_BYTES = {torch.float32: 4, torch.int64: 8}


def _bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * DTYPE_BYTES[t.dtype] for t in state.values())


def _history(run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in MlflowClient().get_metric_history(run_id, name)}


@pytest.fixture(scope="module")
def fedavg(tmp_path_factory):
    from conftest import tiny_overrides

    from fmtlbench.config import build_config

    tmp = tmp_path_factory.mktemp("traffic")
    config = build_config(
        None,
        tiny_overrides(
            tmp,
            algorithm={"name": "fedavg"},
            arch={"name": "md"},
            backbone={"name": "resnet18"},
            scenario="iid1",
            training={"rounds": 2, "eval_initial": False},
        ),
    )
    return execute(config)


def test_fedavg_md_resnet18_moves_two_times_four_times_the_state_dict(fedavg):
    fed = fedavg.federation
    assert len(fed.clients) == 4 and all(c.dataset.name == "nyudv2" for c in fed.clients)
    state = fed.model_of(0).state_dict()
    assert all(fed.model_of(k).state_dict().keys() == state.keys() for k in range(4))
    assert any(t.dtype == torch.int64 for t in state.values())  # the 8-byte BN counters
    size = _bytes(state)
    up = _history(fedavg.run_id, "comm/up_bytes")
    down = _history(fedavg.run_id, "comm/down_bytes")
    assert up == {1: 4 * size, 2: 4 * size}
    assert down == {1: 4 * size, 2: 4 * size}
    assert up[1] + down[1] == 2 * 4 * size
    # the per-client, per-group figures add up to the same total
    for k in range(4):
        per_group = {
            name: value
            for name, value in fedavg.history[1].items()
            if name.startswith(f"comm/client{k}/up/")
        }
        assert sum(per_group.values()) == size


def test_encoder_only_fedavg_sends_only_the_encoder(tiny_config):
    outcome = execute(
        tiny_config(
            algorithm={"name": "fedavg", "params": {"share": "encoder"}},
            training={"rounds": 1, "eval_initial": False},
        )
    )
    model = outcome.federation.model_of(0)
    parameters = {name for name, _ in model.named_parameters()}
    state = model.state_dict()
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.") and k in parameters}
    stats = {k: v for k, v in state.items() if k.startswith("encoder.") and k not in parameters}
    assert encoder and stats and len(encoder) + len(stats) < len(state)
    metrics = outcome.history[1]
    for k in range(4):
        for direction in ("up", "down"):
            sent = {
                name.rsplit("/", 1)[1]: value
                for name, value in metrics.items()
                if name.startswith(f"comm/client{k}/{direction}/")
            }
            assert sent == {"encoder": _bytes(encoder), "encoder.stats": _bytes(stats)}
    assert metrics["comm/up_bytes"] == 4 * (_bytes(encoder) + _bytes(stats))
    assert metrics["comm/down_bytes"] == metrics["comm/up_bytes"]
