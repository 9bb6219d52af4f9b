"""``fmtlbench sweep``: cells validated up front, a run cache read from MLflow, built-ins."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_TWIN
from mlflow.tracking import MlflowClient

from fmtlbench import cachekey, checkpoint
from fmtlbench.cli import main


def _sweep_file(tmp, name="tiny", grid=None, **axes) -> str:
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
        "grid": grid or axes or {"algorithm.name": ["fedavg", "local"]},
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
    # 9 algorithms x MD/TC x 2 backbones, plus 6 "-E" algorithms x 2 x 2 (Table 7: niid6 only)
    assert " 60 cells" in lines["paper-table2"] and " 60 cells" in lines["paper-table7"]
    # Table 9: 4 client counts x 9 algorithms, plus 9 scratch rows
    assert " 45 cells" in lines["paper-table9"]


def _cells(path):
    from fmtlbench.registry import load_registry
    from fmtlbench.sweep.plan import build_cells
    from fmtlbench.sweep.spec import load_spec

    return build_cells(load_spec(path), load_registry())


def test_an_interrupted_cell_resumes_its_own_run(tmp_path):
    from test_run import StopAt

    from fmtlbench.runner import execute
    from fmtlbench.sweep.cache import SWEEP_TAG

    path = _sweep_file(tmp_path, grid={"algorithm.name": ["fedavg"], "training.rounds": [2]})
    config = _cells(path)[0].config
    try:
        execute(config, reporter=StopAt(2), tags={SWEEP_TAG: "tiny"})
    except KeyboardInterrupt:
        pass
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"]
    status = _sweep(path, "--status")
    assert "│ killed" in status.output, status.output
    resumed = _sweep(path)
    assert "1 ran (1 resumed), 0 skipped" in resumed.output, resumed.output
    _, after = _runs(tmp_path)
    assert [r.info.run_id for r in after] == [runs[0].info.run_id]  # the same run, continued
    assert after[0].info.status == "FINISHED"
    history = client.get_metric_history(after[0].info.run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2]  # round 1 not trained twice


def test_cross_domain_fedavg_md_is_invalid_with_its_reason(tmp_path):
    path = _sweep_file(
        tmp_path,
        grid=[
            {"scenario": ["niid6"], "algorithm.name": ["fedavg"], "arch.name": ["md", "tc"]},
            {
                "scenario": ["niid6"],
                "algorithm.name": ["fedavg"],
                "arch.name": ["md"],
                "algorithm.params.share": ["encoder"],
            },
        ],
    )
    spec = yaml.safe_load(open(path))
    spec["set"]["data.datasets"] = {"nyudv2": dict(TINY_TWIN), "pascal-context": dict(TINY_TWIN)}
    open(path, "w").write(yaml.safe_dump(spec))
    result = _sweep(path, "--dry-run", "--no-pilot")
    assert result.exit_code == 0, result.output
    rows = {r.split("│")[1].strip(): r for r in result.output.splitlines() if r.startswith("│")}
    # cells in grid order: md (all groups), tc, md with share=encoder (the study's FedAvg-E)
    assert "invalid [1]" in rows["0"] and "pending" in rows["1"] and "pending" in rows["2"]
    assert "[1] fedavg averages one global model" in result.output
    assert "'nyudv2/decoder." in result.output and "share=encoder" in result.output
    assert "3 cells: 1 invalid, 2 pending" in result.output


def test_missing_pretrained_weights_warn_in_the_plan_and_block_the_run(tmp_path):
    path = _sweep_file(tmp_path, grid={"backbone.params.weights": ["timm"]})
    plan = _sweep(path, "--dry-run", "--no-pilot")
    assert plan.exit_code == 0, plan.output
    assert "│ pending" in plan.output and "warning [1]" in plan.output
    assert "[1] backbone weights 'timm'" in plan.output and "1 with a warning" in plan.output
    run = CliRunner().invoke(main, ["sweep", path])
    assert run.exit_code == 2 and "cannot start here" in run.output, run.output
    assert "Traceback" not in run.output
    assert not _runs(tmp_path)[1]


def test_dry_run_cost_comes_from_a_pilot_and_says_so(tmp_path):
    import math

    from fmtlbench.federation import build_federation
    from fmtlbench.registry import load_registry
    from fmtlbench.sweep.pilot import Pilot

    path = _sweep_file(tmp_path)
    result = _sweep(path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "est. cost" in result.output and "measured pilot" in result.output
    assert "1 structures measured" in result.output  # fedavg and local share one model
    assert "est. cost" not in _sweep(path, "--dry-run", "--no-pilot").output
    # the scaling, by hand: 1 round x 1 epoch x train batches, 1 evaluation x test batches
    cell = _cells(path)[0]
    fed = build_federation(cell.config, load_registry())
    pilot = Pilot()
    pilot.cost(fed)
    (key,) = pilot.measured
    pilot.measured[key] = (2.0, 0.5)
    training = cell.config.training
    batch, epochs = training.batch_size, training.local_epochs["default"]
    test_batches = math.ceil(12 / batch)  # the twin's 12 test images, for every client
    by_hand = sum(
        2.0 * epochs * math.ceil(len(c.train) / batch)
        + 0.5 * (math.ceil(len(c.test) / batch) + test_batches)
        for c in fed.manifest.clients
    )
    assert pilot.cost(fed) == by_hand


@pytest.mark.slow
def test_ctrl_c_kills_the_running_cell_and_a_rerun_resumes_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _sweep_file(tmp_path, grid={"algorithm.name": ["fedavg"], "training.rounds": [3]})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmtlbench", "sweep", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    checkpoints = tmp_path / "checkpoints"
    deadline = time.monotonic() + 300
    # the checkpoint of round 1, written atomically: from then on the cell is resumable
    while not any(checkpoints.glob(f"*/{checkpoint.NAME}")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    client, runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED"], output
    again = _sweep(path)
    assert "1 ran (1 resumed), 0 skipped" in again.output, again.output
    _, after = _runs(tmp_path)
    assert [(r.info.run_id, r.info.status) for r in after] == [(runs[0].info.run_id, "FINISHED")]
