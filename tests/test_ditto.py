"""Ditto (the example package examples/fmtlbench-ditto) on the personalised-client contract:
the personal model's pull by hand, the federated model equal to FedAvg's bit for bit, P-FL of
the personal models, the kit's contract, and a resumed run equal to the uninterrupted one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from fmtlbench.exchange import ExchangeView
from fmtlbench.testing import check_algorithm_cell
from fmtlbench.testing.algorithms import kit_registry
from fmtlbench.testing.tiny import TINY_DECODER

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "fmtlbench-ditto"
sys.path.insert(0, str(PACKAGE))
from fmtlbench_ditto.ditto import Ditto  # noqa: E402

sys.path.remove(str(PACKAGE))

REGISTRY = kit_registry(Ditto)


class Vector(nn.Module):
    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(values))


def test_the_personal_gradient_is_the_pull_toward_the_federated_model() -> None:
    """(lam/2)||v - w||^2 has gradient lam (v - w): v = (1, -2), w = (0.5, 1), lam = 0.5."""
    personal = Vector([1.0, -2.0])
    view = ExchangeView(personal, {"w": "encoder.w"})
    received = {"encoder.w": torch.tensor([0.5, 1.0])}
    loss = Ditto(Ditto.Params(lam=0.5)).personal_loss(view, received)
    assert float(loss.detach()) == pytest.approx(0.25 * (0.5**2 + 3.0**2))
    loss.backward()
    assert personal.w.grad.tolist() == pytest.approx([0.25, -1.5])
    assert Ditto(Ditto.Params(lam=0.0)).personal_loss(view, received) is None


def config(tmp: Path, algorithm: dict, rounds: int = 2):
    from conftest import tiny_overrides

    from fmtlbench.config import build_config

    decoder = REGISTRY.get("decoder", "md").Params.model_fields
    return build_config(
        None,
        tiny_overrides(
            tmp,
            scenario="iid1",
            clients=2,
            algorithm=algorithm,
            backbone={"name": "test-pyramid"},
            arch={"name": "md", "params": {k: v for k, v in TINY_DECODER.items() if k in decoder}},
            energy={"enabled": False},
            training={
                "rounds": rounds,
                "eval_initial": False,
                "resolution": {"default": [32, 40]},
                "eval_resolution": {"default": [32, 40]},
            },
        ),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny real runs, same seed: FedAvg, and Ditto with a strong and with no pull."""
    from fmtlbench.runner import execute

    tmp = tmp_path_factory.mktemp("ditto")
    algorithms = {
        "fedavg": {"name": "fedavg"},
        "ditto": {"name": "ditto", "params": {"lam": 1.0}},
        "ditto0": {"name": "ditto", "params": {"lam": 0.0}},
    }
    return {
        label: execute(config(tmp / label, algorithm), registry=REGISTRY)
        for label, algorithm in algorithms.items()
    }


def metrics(outcome) -> dict[str, float]:
    return dict(MlflowClient().get_run(outcome.run_id).data.metrics)


def test_the_federated_model_follows_fedavg_exactly(runs) -> None:
    fedavg, ditto = runs["fedavg"].federation, runs["ditto"].federation
    for a, b in zip(fedavg.states, ditto.states, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    g = {k: v for k, v in metrics(runs["fedavg"]).items() if k.startswith("G/")}
    assert g and all(metrics(runs["ditto"])[k] == v for k, v in g.items())


def test_p_fl_evaluates_the_personal_models(runs) -> None:
    ditto = runs["ditto"].federation
    assert len(ditto.personal_states) == 2
    for personal, federated in zip(ditto.personal_states, ditto.states, strict=True):
        assert any(not torch.equal(personal[k], federated[k]) for k in federated)
    fedavg_p, ditto_p = metrics(runs["fedavg"]), metrics(runs["ditto"])
    p_keys = [k for k in fedavg_p if k.startswith("P/")]
    assert p_keys and any(fedavg_p[k] != ditto_p[k] for k in p_keys)
    tags = {label: MlflowClient().get_run(o.run_id).data.tags for label, o in runs.items()}
    assert tags["ditto"]["pfl_model"] == "personal" and tags["fedavg"]["pfl_model"] == "federated"


def test_a_stronger_pull_keeps_the_personal_model_nearer_the_federated_one(runs) -> None:
    """lam = 1 against lam = 0 on the same data and seeds: the pull's gradient lam (v - w) is
    in the personal model's update, so its distance to the federated model shrinks."""

    def distance(outcome) -> float:
        fed = outcome.federation
        return sum(
            float((p[k].float() - s[k].float()).pow(2).sum())
            for p, s in zip(fed.personal_states, fed.states, strict=True)
            for k in s
            if s[k].is_floating_point() and "running" not in k and "num_batches" not in k
        )

    assert distance(runs["ditto"]) < distance(runs["ditto0"])


@pytest.mark.parametrize("arch,scenario", [("md", "iid1"), ("tc", "niid2"), ("md", "niid6")])
def test_ditto_keeps_the_algorithm_contract(arch, scenario, fmtlbench_kit) -> None:
    outcome = check_algorithm_cell(Ditto, arch, scenario, fmtlbench_kit.workdir, REGISTRY)
    assert outcome == ("refused" if (arch, scenario) == ("md", "niid6") else "ok")


def test_a_resumed_ditto_run_equals_the_uninterrupted_one(tmp_path) -> None:
    """Interrupted at round 2 and resumed: the personal models come back from the checkpoint,
    so every logged metric and every personal state equal the uninterrupted run's."""
    from test_kill import reproducible, scramble_rngs
    from test_run import StopAt

    from fmtlbench.runner import execute

    cfg = config(tmp_path, {"name": "ditto", "params": {"lam": 0.5}}, rounds=2)
    straight = execute(cfg, registry=REGISTRY)
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, reporter=StopAt(2), registry=REGISTRY)
    client = MlflowClient()
    killed = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        filter_string="attributes.status = 'KILLED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0].info.run_id
    scramble_rngs()
    resumed = execute(cfg, resume=killed, registry=REGISTRY)
    for r in (1, 2):
        assert reproducible(resumed.history[r]) == reproducible(straight.history[r]), r
    pairs = zip(
        straight.federation.personal_states, resumed.federation.personal_states, strict=True
    )
    for a, b in pairs:
        assert all(torch.equal(a[k], b[k]) for k in a)
