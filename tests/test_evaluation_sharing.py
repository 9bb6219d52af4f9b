"""Evaluation keyed by model identity: identical client models are evaluated once per split."""

from __future__ import annotations

import pytest
import torch

from fmtlbench.engine import Engine
from fmtlbench.evaluation import evaluate, state_digest
from fmtlbench.federation import build_federation
from fmtlbench.registry import load_registry


def test_digest_sees_names_dtypes_shapes_values_and_buffers():
    base = {"w": torch.arange(6.0).reshape(2, 3), "bn.running_mean": torch.zeros(3)}
    same = {k: v.clone() for k, v in base.items()}
    assert state_digest(base) == state_digest(same)
    assert state_digest(base) == state_digest(dict(reversed(list(base.items()))))
    stats = {**same, "bn.running_mean": torch.tensor([0.0, 0.0, 1e-7])}
    variants = [
        stats,  # a buffer only (BatchNorm statistics change the forward pass in eval mode)
        {**same, "w": same["w"].reshape(3, 2)},  # same bytes, other shape
        {**same, "w": same["w"].to(torch.float64)},  # other dtype
        {"v": same["w"], "bn.running_mean": same["bn.running_mean"]},  # other name
        {**same, "w": same["w"].t()},  # a non-contiguous view: other values in order
    ]
    digests = {state_digest(v) for v in variants}
    assert state_digest(base) not in digests and len(digests) == len(variants)
    # the memo (one tensor held by several states is hashed once) changes no digest
    memo: dict = {}
    for state in (base, same, *variants, base):
        assert state_digest(state, memo) == state_digest(state)


@pytest.fixture(scope="module")
def fedavg_engine(tmp_path_factory):
    from conftest import tiny_overrides

    from fmtlbench.config import build_config

    tmp = tmp_path_factory.mktemp("sharing")
    # two rounds, evaluated every second: round 1 trains and aggregates without evaluating
    training = {"rounds": 2, "eval_every": 2, "eval_initial": False}
    config = build_config(None, tiny_overrides(tmp, training=training))
    assert config.scenario == "iid1" and config.algorithm.name == "fedavg"
    fed = build_federation(config, load_registry())
    assert len(fed.clients) == 4
    engine = Engine(fed)
    engine.run_round(1)
    return engine


def _count_forwards(model: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    return calls, model.register_forward_hook(hook)


def test_fedavg_evaluates_the_global_model_once_on_the_official_split(fedavg_engine):
    engine = fedavg_engine
    fed = engine.fed
    (model,) = fed.models.values()
    digests = {state_digest(s) for s in fed.states}
    assert len(digests) == 1  # FedAvg: every client holds the aggregated model

    official = fed.global_tests["nyudv2"]
    g_batches = len(official)
    p_batches = [len(c.test) for c in fed.clients]
    calls, handle = _count_forwards(model)
    try:
        ev = engine.evaluate(2)  # the last evaluation: every metric, odsF too
    finally:
        handle.remove()
    # G-FL: one pass over the official split instead of four; P-FL: each local test set once
    assert calls[0] == g_batches + sum(p_batches)
    assert calls[0] < 4 * g_batches + sum(p_batches)
    assert ev.shared == 3 and ev.evaluated == 1 + 4
    metrics = engine.evaluation_metrics(ev)
    assert metrics["eval/shared"] == 3.0 and metrics["eval/evaluated"] == 5.0

    # the same numbers as evaluating every client on its own (P-FL sets differ, never shared)
    for k, client in enumerate(fed.clients):
        assert ev.per_client["G"][k] == evaluate(fed.load(k), official, client.specs)
    # rows are copies: editing one client's row leaves the others alone
    ev.per_client["G"][0]["depth"]["rmse"] = -1.0
    assert ev.per_client["G"][1]["depth"]["rmse"] != -1.0


def test_different_models_are_each_evaluated(fedavg_engine):
    engine = fedavg_engine
    fed = engine.fed
    saved = list(fed.states)
    try:
        # client 2 differs from the others in one BatchNorm running mean only
        key = next(k for k in fed.states[2] if k.endswith("running_mean"))
        fed.states[2] = {**fed.states[2], key: fed.states[2][key] + 0.5}
        (model,) = fed.models.values()
        calls, handle = _count_forwards(model)
        try:
            ev = engine.evaluate(2)  # the last evaluation: every metric, odsF too
        finally:
            handle.remove()
        official = fed.global_tests["nyudv2"]
        assert calls[0] == 2 * len(official) + sum(len(c.test) for c in fed.clients)
        assert ev.shared == 2 and ev.evaluated == 2 + 4
        assert ev.per_client["G"][2] == evaluate(fed.load(2), official, fed.clients[2].specs)
        assert ev.per_client["G"][2] != ev.per_client["G"][0]
    finally:
        fed.states[:] = saved
