"""An interrupted run, resumed, ends exactly like the run that was never interrupted.

In process, for every built-in algorithm: three tiny rounds straight through against the same
run stopped after round 1 and resumed from its checkpoint, with every random stream of the
process (torch, numpy, ``random``) scrambled in between, so that anything the resume failed to
restore shows up as a differing metric. The encoder is the contract tests' tiny pyramid: what
is checked is the resume path, and with it nine algorithms cost seconds.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient
from test_contract import REGISTRY, TINY_DECODER, TWIN, TinyPyramid

from fmtlbench import checkpoint
from fmtlbench.config import build_config
from fmtlbench.engine import NullReporter
from fmtlbench.runner import execute

#: Metric prefixes that measure the machine, not the run (wall time, energy).
UNREPRODUCIBLE = ("time/", "energy/")


def reproducible(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(UNREPRODUCIBLE)}


class StopAt(NullReporter):
    """Interrupts the run like Ctrl-C when ``round`` starts (after ``round - 1`` was saved)."""

    def __init__(self, round: int) -> None:
        self.round = round

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        if round == self.round:
            raise KeyboardInterrupt


def scramble_rngs() -> None:
    """Move every process-wide random stream somewhere the straight run never was."""
    torch.manual_seed(987654321)
    torch.rand(17)
    np.random.seed(4242)
    random.seed(31337)


@pytest.fixture(scope="module")
def config_of(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume-exact")
    decoder = REGISTRY.get("decoder", "md").Params.model_fields

    def make(algorithm: str):
        return build_config(
            None,
            tiny_overrides(
                tmp,
                algorithm={"name": algorithm},
                backbone={"name": TinyPyramid.name},
                arch={
                    "name": "md",
                    "params": {k: v for k, v in TINY_DECODER.items() if k in decoder},
                },
                clients=2,
                energy={"enabled": False},
                data={"datasets": {"nyudv2": {**TWIN, "twin_train": 16}}},
                training={"rounds": 3, "eval_initial": True},
            ),
        )

    return make


@pytest.mark.parametrize("algorithm", REGISTRY.names("algorithm"))
def test_resumed_run_equals_the_uninterrupted_one(algorithm: str, config_of) -> None:
    config = config_of(algorithm)
    straight = execute(config, registry=REGISTRY)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(2), registry=REGISTRY)
    client = MlflowClient()
    killed = client.search_runs(
        [client.get_experiment_by_name("fmtlbench").experiment_id],
        filter_string="attributes.status = 'KILLED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0].info.run_id
    assert checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, killed))["round"] == 1
    scramble_rngs()
    resumed = execute(config, resume=killed, registry=REGISTRY)
    for r in (0, 1, 2, 3):
        want, got = reproducible(straight.history[r]), reproducible(resumed.history[r])
        assert got == want, (
            r,
            {k: (want.get(k), got.get(k)) for k in want | got if want.get(k) != got.get(k)},
        )
    final = reproducible(straight.history[3])
    assert any(k.startswith("comm/") for k in final) and any("/train/" in k for k in final)
    assert any(k.startswith("G/") for k in final)
    assert resumed.final.per_client == straight.final.per_client
    # what MLflow holds for the final round is the same too
    logged = {k: v for k, v in client.get_run(killed).data.metrics.items()}
    for key, value in final.items():
        assert logged[key] == value, key
