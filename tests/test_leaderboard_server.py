"""End to end against a real MLflow server on 127.0.0.1: two tiny federated runs, the
leaderboard over them, and its artifacts read back through MLflow's client."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from PIL import Image

from fmtlbench.cli import main
from fmtlbench.runner import execute
from fmtlbench.tasks import known_tasks, primary_metric

EXPERIMENT = "leaderboard-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(mlflow_server) -> str:
    """The session's real MLflow server (``mlflow_server`` in conftest), as its URL."""
    return mlflow_server.url


@pytest.fixture(scope="module")
def leaderboard(server, tmp_path_factory):
    from conftest import tiny_overrides

    from fmtlbench.config import build_config

    tmp = tmp_path_factory.mktemp("leaderboard-runs")
    runs = {}
    for algo in ("local", "fedavg"):
        config = build_config(
            None,
            tiny_overrides(
                tmp,
                algorithm={"name": algo},
                tracking={"uri": server, "experiment": EXPERIMENT},
                energy={"enabled": False},
            ),
        )
        runs[algo] = execute(config).run_id
    result = CliRunner().invoke(
        main,
        [
            "leaderboard",
            "--tracking-uri",
            server,
            "--experiment",
            EXPERIMENT,
            "--scenario",
            "iid1",
            "--out",
            str(tmp / "out"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    return runs, result.output


def test_leaderboard_run_holds_tables_and_figures(server, leaderboard):
    runs, output = leaderboard
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], "tags.`fmtlbench.kind` = 'leaderboard'")
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    board_id = found[0].info.run_id
    assert board_id in output and "Δ% vs reference" in output
    names = {a.path for a in client.list_artifacts(board_id)}
    assert {"metrics.csv", "runs.csv", "curves.csv", "summary.md", "wilcoxon_G.png"} <= names
    assert {"delta_curves_G.png", "delta_curves_P.png"} <= names

    def load(path: str) -> bytes:
        local = client.download_artifacts(board_id, path)
        return Path(local).read_bytes()

    # Δ_G of fedavg, by hand from the two runs' final metrics read back from the server
    local, fedavg = (client.get_run(runs[a]).data.metrics for a in ("local", "fedavg"))
    changes = []
    for task in known_tasks():
        metric, lower = primary_metric(task)
        key = f"G/nyudv2/{task}/{metric}"
        if key in local:
            sign = -1.0 if lower else 1.0
            changes.append(sign * (fedavg[key] - local[key]) / local[key] * 100)
    assert len(changes) == 4
    table = pd.read_csv(io.BytesIO(load("runs.csv"))).set_index("method")
    assert table.loc["fedavg", "delta_G"] == pytest.approx(sum(changes) / 4)
    assert table.loc["local", "delta_G"] == pytest.approx(0.0)
    assert table.loc["fedavg", "reference"] == runs["local"]  # found by the default rule
    curves = pd.read_csv(io.BytesIO(load("curves.csv")))
    fed_g = curves[(curves.method == "fedavg") & (curves.setting == "G")]
    assert sorted(fed_g["round"]) == [0, 1, 2]  # untrained model and both rounds
    assert fed_g.set_index("round").loc[2, "delta"] == pytest.approx(sum(changes) / 4)
    summary = load("summary.md").decode()
    assert "paired unit: client x task metric (G-FL), 16 blocks" in summary
    assert "Friedman" in summary and "at least 3 methods" in summary  # said, not crashed
    image = Image.open(io.BytesIO(load("wilcoxon_G.png")))
    assert image.size[0] > 100 and image.size[1] > 100
    # Local sends nothing; the cost table says so
    cost = pd.read_csv(io.BytesIO(load("cost.csv"))).set_index("method")
    assert cost.loc["local", "total bytes"] == 0 and cost.loc["fedavg", "total bytes"] > 0
