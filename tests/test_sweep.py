"""``fmtlbench sweep``: cells validated up front, a run cache read from MLflow, built-ins."""

from __future__ import annotations

import yaml
from click.testing import CliRunner
from conftest import TINY_TWIN
from mlflow.tracking import MlflowClient

from fmtlbench import cachekey
from fmtlbench.cli import main


def _sweep_file(tmp, name="tiny", **grid) -> str:
    spec = {
        "name": name,
        "set": {
            "training.rounds": 1,
            "training.eval_initial": False,
            "training.resolution": {"default": [32, 40]},
            "training.eval_resolution": {"default": [32, 40]},
            "data.datasets": {"nyudv2": dict(TINY_TWIN)},
            "checkpoint_dir": str(tmp / "checkpoints"),
            "energy.enabled": False,
            "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}",
        },
        "grid": grid or {"algorithm.name": ["fedavg", "local"]},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _sweep(*args):
    return CliRunner().invoke(main, ["sweep", *args], catch_exceptions=False)


def _runs(tmp):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("fmtlbench")
    return client, client.search_runs([exp.experiment_id]) if exp else []


def test_second_sweep_does_no_work_and_a_deleted_cell_runs_alone(tmp_path):
    path = _sweep_file(tmp_path)
    first = _sweep(path)
    assert first.exit_code == 0, first.output
    assert "2 ran (0 resumed), 0 skipped" in first.output
    client, runs = _runs(tmp_path)
    assert sorted(r.data.tags["algorithm"] for r in runs) == ["fedavg", "local"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["fmtlbench.sweep"] for r in runs} == {"tiny"}
    assert len({r.data.tags[cachekey.TAG] for r in runs}) == 2

    again = _sweep(path)
    assert again.exit_code == 0, again.output
    assert "0 ran (0 resumed), 2 skipped" in again.output
    assert len(_runs(tmp_path)[1]) == 2  # no new MLflow run

    status = _sweep(path, "--status")
    assert status.output.count("│ done") == 2 and "2 cells: 2 done" in status.output

    local = next(r for r in runs if r.data.tags["algorithm"] == "local")
    client.delete_run(local.info.run_id)
    third = _sweep(path)
    assert "1 ran (0 resumed), 1 skipped" in third.output, third.output
    _, after = _runs(tmp_path)
    assert len(after) == 2 and {r.data.tags["algorithm"] for r in after} == {"fedavg", "local"}
    assert local.info.run_id not in {r.info.run_id for r in after}


def test_bad_cells_fail_before_anything_runs_naming_cell_and_field(tmp_path):
    cases = {
        "algorithm.nmae": "algorithm.nmae",  # unknown axis
        "algorithm.name": "nosuchalgo",  # unknown component
        "training.lr": "training.lr",  # out of range
    }
    values = {
        "algorithm.nmae": ["x"],
        "algorithm.name": ["fedavg", "nosuchalgo"],
        "training.lr": [1e-3, 50.0],
    }
    for axis, expected in cases.items():
        path = _sweep_file(tmp_path, name="bad", **{axis: values[axis]})
        result = CliRunner().invoke(main, ["sweep", path, "--dry-run"])
        assert result.exit_code == 2, result.output
        assert "cell" in result.output and expected in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists()  # nothing ran, not even a lookup


def test_serial_executor_refuses_ray_flags(tmp_path):
    result = CliRunner().invoke(main, ["sweep", _sweep_file(tmp_path), "--ray-address", "auto"])
    assert result.exit_code == 2 and "--ray-address does not apply" in result.output


def test_list_shows_every_paper_table_with_cell_counts():
    result = _sweep("--list")
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert sorted(lines) == [f"paper-table{n}" for n in range(2, 10)]
    # 9 algorithms x MD/TC x 2 backbones, plus 6 "-E" algorithms x 2 x 2, per scenario
    assert " 60 cells" in lines["paper-table2"] and " 120 cells" in lines["paper-table7"]
    # Table 9: 4 client counts x 9 algorithms, plus 9 scratch rows
    assert " 45 cells" in lines["paper-table9"]
