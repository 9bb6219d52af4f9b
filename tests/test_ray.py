"""The ``ray`` executor: sweep cells as Ray tasks give the serial results, fail one by one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fmtlbench.errors import ConfigError
from fmtlbench.registry import load_registry

#: Metrics that measure the machine rather than the learning (they differ between any runs).
MACHINE = ("time/", "energy/", "traffic/")


def run_cell(cell: dict) -> dict[str, float]:
    """A sweep cell: one tiny federated run; its learning metrics of the last round."""
    from conftest import tiny_overrides

    from fmtlbench.config import build_config
    from fmtlbench.runner import execute

    if cell.get("fail") == "raise":
        raise ValueError(f"cell {cell['name']} refuses")
    if cell.get("fail") == "exit":
        os._exit(1)  # the worker process dies under the cell
    tmp = Path(cell["tmp"])
    config = build_config(None, tiny_overrides(tmp, **cell["set"]))
    outcome = execute(config)
    last = outcome.history[config.training.rounds]
    return {k: v for k, v in last.items() if not k.startswith(MACHINE)}


def _executor(**params):
    registry = load_registry()
    cls = registry.get("executor", "ray")
    return cls(cls.Params(**params))


#: Smaller than the usual tiny run (two clients, one round, 16x20, no round-0 evaluation).
SMALL = {
    "clients": 2,
    "training": {
        "rounds": 1,
        "eval_initial": False,
        "resolution": {"default": [16, 20]},
        "eval_resolution": {"default": [16, 20]},
    },
    "data": {
        "datasets": {
            "nyudv2": {"twin_train": 16, "twin_test": 4, "twin_height": 16, "twin_width": 20}
        }
    },
}


def _cells(tmp: Path) -> list[dict]:
    grid = [("fedavg", 0), ("fedavg", 1), ("local", 0), ("fedprox", 0)]
    return [
        {
            "name": f"{algo}-{seed}",
            "tmp": str(tmp / f"{algo}-{seed}"),
            "set": {"algorithm": {"name": algo}, "seed": seed, **SMALL},
        }
        for algo, seed in grid
    ]


def _outcomes(events) -> dict[int, tuple[str, object]]:
    states: dict[int, list[str]] = {}
    out = {}
    for event in events:
        states.setdefault(event.index, []).append(event.state)
        if event.state != "started":
            out[event.index] = (event.state, event.result if event.result else event.error)
    # every cell: exactly one start, then exactly one end
    assert all(seq[0] == "started" and len(seq) == 2 for seq in states.values()), states
    return out


def test_ray_cells_give_exactly_the_serial_metrics(ray_local, tmp_path):
    serial_cls = load_registry().get("executor", "serial")
    # a Ray cell runs with torch threads = its CPU share (1 by default); evaluation reductions
    # depend on the thread count, so the serial reference runs with the same one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = _outcomes(serial_cls().run_cells(run_cell, _cells(tmp_path / "serial")))
    finally:
        torch.set_num_threads(threads)
    ray = _outcomes(_executor().run_cells(run_cell, _cells(tmp_path / "ray")))
    assert sorted(ray) == [0, 1, 2, 3]
    for index, (state, metrics) in serial.items():
        assert state == "finished", metrics
        assert any(k.endswith("/loss") or "/" in k for k in metrics), metrics
        assert ray[index] == ("finished", metrics), index
    # the cells differ from each other, so equal results are not an accident of the grid
    assert serial[0][1] != serial[1][1] and serial[0][1] != serial[2][1]


def test_a_raising_cell_and_a_dead_worker_fail_alone(ray_local, tmp_path):
    cells = _cells(tmp_path)[:1]
    cells.insert(0, {"name": "bad", "fail": "raise"})
    cells.insert(1, {"name": "dead", "fail": "exit"})
    out = _outcomes(_executor().run_cells(run_cell, cells))
    assert out[0][0] == "failed" and out[0][1] == "ValueError: cell bad refuses"
    assert out[1][0] == "failed" and "Worker" in out[1][1], out[1]
    assert out[2][0] == "finished"


def test_a_cluster_address_refuses_a_local_tracking_store(tmp_path, tiny_config):
    config = tiny_config()
    executor = _executor(address="ray://10.0.0.1:10001")
    with pytest.raises(ConfigError, match="use an MLflow server URI"):
        next(executor.run_cells(run_cell, [config]))
    server = tiny_config(tracking={"uri": "http://10.0.0.1:5000"})
    executor.check_tracking([server])  # a server every machine can reach is fine


def test_clients_on_two_actors_give_exactly_the_serial_metrics(ray_local, tmp_path):
    """Client-parallel: the same run with its clients on two Ray actors (built once, reused in
    round 2) ends with the serial run's metrics to the last bit; FedProx sends a context."""
    two_rounds = {**SMALL, "training": {**SMALL["training"], "rounds": 2}}
    base = {"algorithm": {"name": "fedprox", "params": {"mu": 0.1}}, **two_rounds}
    on_ray = {**base, "executor": {"name": "ray", "params": {"workers": 2}}}
    # the actors train with torch threads = their CPU share (1); float reductions depend on the
    # thread count, so the driver (serial training, and evaluation in both runs) uses 1 too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_cell({"tmp": str(tmp_path / "serial"), "set": base})
        ray = run_cell({"tmp": str(tmp_path / "ray"), "set": on_ray})
    finally:
        torch.set_num_threads(threads)
    assert any(k.startswith("G/") for k in serial), serial
    assert ray == serial
    # the actors were stopped at the end of the run, and the session's Ray is still up
    assert ray_local.is_initialized()
    assert not [a for a in ray_local.util.list_named_actors()]
