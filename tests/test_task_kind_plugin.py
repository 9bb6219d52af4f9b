"""A third-party task kind end to end: ``tests/heatmaps.py`` installed as the distribution
``fmtlbench-toy-heatmaps`` (a ``.dist-info`` folder on ``sys.path``, found by the real
entry-point machinery) lists, trains, evaluates, is logged to MLflow and is tabulated by the
leaderboard like a built-in kind; uninstalled, a config naming it fails with one clear line."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from fmtlbench.cli import main
from fmtlbench.registry import load_registry

EXPERIMENT = "toy-heatmaps"
DIST = "fmtlbench-toy-heatmaps"
TOY = {"twin_train": 16, "twin_test": 4, "twin_height": 32, "twin_width": 40}


def _install(folder: Path) -> None:
    """Write the toy distribution's metadata (and the tiny pyramid backbone's, which the runs
    use) into ``folder``; the modules themselves are importable from tests/ already."""
    from pyramid import plugin_path

    info = folder / "fmtlbench_toy_heatmaps-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fmtlbench]\nheatmaps = heatmaps\n")
    plugin_path(folder)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The toy plugin installed for this module's tests; the global registry rebuilt with it
    and rebuilt without it afterwards, also when a test fails."""
    folder = tmp_path_factory.mktemp("toy-site")
    _install(folder)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    load_registry.cache_clear()
    try:
        yield load_registry()
    finally:
        sys.path.remove(str(folder))
        importlib.invalidate_caches()
        load_registry.cache_clear()


def _run_config(tmp: Path, algorithm: str):
    from conftest import tiny_overrides

    from fmtlbench.config import build_config
    from fmtlbench.testing.tiny import TINY_DECODER

    decoder = load_registry().get("decoder", "md").Params.model_fields
    return build_config(
        None,
        tiny_overrides(
            tmp,
            scenario="toy-iid",
            algorithm={"name": algorithm},
            backbone={"name": "test-pyramid"},
            arch={"name": "md", "params": {k: v for k, v in TINY_DECODER.items() if k in decoder}},
            executor={"name": "serial"},
            data={"datasets": {"toyspots": dict(TOY)}},
            tracking={"experiment": EXPERIMENT},
            energy={"enabled": False},
            training={
                "rounds": 2,
                "resolution": {"default": [32, 40]},
                "eval_resolution": {"default": [32, 40]},
            },
        ),
    )


@pytest.fixture(scope="module")
def runs(installed, tmp_path_factory):
    """Two tiny real runs over toy-iid (local and fedavg, same seed) and their metrics."""
    from fmtlbench.runner import execute

    tmp = tmp_path_factory.mktemp("toy-runs")
    out = {}
    for algorithm in ("local", "fedavg"):
        outcome = execute(_run_config(tmp, algorithm))
        run = MlflowClient().get_run(outcome.run_id)
        assert run.info.status == "FINISHED"
        out[algorithm] = (outcome.run_id, dict(run.data.metrics))
    return out


# --------------------------------------------------------------------------- not installed
def test_without_the_plugin_a_config_naming_it_is_one_clear_line(tmp_path):
    """Runs first (file order), before ``installed`` puts the plugin on the path."""
    from fmtlbench.tasks import known_tasks

    load_registry.cache_clear()
    assert "heatmap" not in known_tasks()
    for args, says in (
        (["--set", "training.metrics.primary.heatmap=mse"], "task 'heatmap' is of no installed"),
        (["--set", "data.datasets.toyspots.twin_train=4"], "unknown dataset 'toyspots'"),
        (["--scenario", "toy-iid"], "unknown scenario 'toy-iid'"),
    ):
        result = CliRunner().invoke(main, ["run", "--rounds", "1", *args])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
        assert says in lines[0], lines[0]


# --------------------------------------------------------------------------- installed
def test_list_tasks_names_the_toy_distribution(installed):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["list", "tasks"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " heatmap " in line)
    assert DIST in row and "0.1" in row
    assert installed.entry("task", "heatmap").provider.startswith("heatmaps (")


def test_loss_and_meter_by_hand(installed):
    """The core's loss dispatch and meter factory give the kind's numbers on a hand batch."""
    from fmtlbench.losses import task_loss
    from fmtlbench.metrics import make_meter
    from fmtlbench.tasks import IGNORE

    spec = installed.get("dataset", "toyspots").tasks["heatmap"]
    pred = torch.tensor([[[[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]]]])  # 1 x 1 x 2 x 3
    target = torch.tensor([[[[0.5, 1.0, 0.0], [IGNORE, 0.2, 0.0]]]])
    pixels = [(0.0, 0.5), (2.0, 1.0), (-1.0, 0.0), (-3.0, 0.2), (0.5, 0.0)]
    hand = sum((1 / (1 + math.exp(-p)) - t) ** 2 for p, t in pixels) / len(pixels)
    assert float(task_loss(spec, pred, target)) == pytest.approx(hand, rel=1e-6)
    # argmax of pred over valid pixels is (0, 1) = the target's peak; a second image whose
    # predicted peak is 2 columns away from the target's (inside the tolerance) and a third
    # whose peak is 3 rows x 4 columns away (outside)
    meter = make_meter(spec)
    meter.update(pred, target)
    far_pred = torch.zeros(2, 1, 8, 8)
    far_target = torch.zeros(2, 1, 8, 8)
    far_pred[0, 0, 1, 1], far_target[0, 0, 1, 3] = 5.0, 1.0
    far_pred[1, 0, 0, 0], far_target[1, 0, 3, 4] = 5.0, 1.0
    meter.update(far_pred, far_target)
    got = meter.compute()
    far = float(((torch.sigmoid(far_pred) - far_target) ** 2).sum())
    assert got["mse"] == pytest.approx((hand * 5 + far) / (5 + 128), rel=1e-6)
    assert got["peak_acc"] == pytest.approx(200 / 3)
    # a flipped label is the mirrored map (the default flip)
    assert torch.equal(spec.kind.flip(target), target.flip(-1))


def test_toy_runs_log_the_kinds_metrics(runs):
    from fmtlbench.metric_keys import client_train, is_machine

    for algorithm, (_, metrics) in runs.items():
        for setting in ("G", "P"):
            mse = metrics[f"{setting}/toyspots/heatmap/mse"]
            acc = metrics[f"{setting}/toyspots/heatmap/peak_acc"]
            assert 0 < mse < 1 and 0 <= acc <= 100, (algorithm, setting, mse, acc)
            assert 0 <= metrics[f"{setting}/toyspots/semseg/miou"] <= 100
        task_metrics = [k for k in metrics if not is_machine(k) and "/heatmap/" in k]
        assert all(math.isfinite(metrics[k]) for k in task_metrics)
        # the logged training loss is the kind's: a sigmoid MSE (in [0, 1], about 0.25 at
        # first for mostly-zero targets, where a BCE would start near 0.69), summed into the
        # client's total with the kind's weight 1 beside semseg's cross-entropy
        for k in (0, 1):
            heat = metrics[client_train(k, "heatmap")]
            assert 0 < heat < 0.3, heat
            total = metrics[client_train(k, "total")]
            assert total == pytest.approx(heat + metrics[client_train(k, "semseg")], rel=1e-6)


def test_leaderboard_ranks_heatmap_by_mse_lower_is_better(runs, tmp_path):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        main,
        [
            "leaderboard",
            "--experiment",
            EXPERIMENT,
            "--scenario",
            "toy-iid",
            "--reference-rule",
            "backbone=test-pyramid",
            "--out",
            str(tmp_path / "out"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    local, fedavg = runs["local"][1], runs["fedavg"][1]
    # Δ_G of fedavg by hand: semseg mIoU higher is better, heatmap MSE lower is better
    semseg = (fedavg["G/toyspots/semseg/miou"] / local["G/toyspots/semseg/miou"] - 1) * 100
    heat = -(fedavg["G/toyspots/heatmap/mse"] / local["G/toyspots/heatmap/mse"] - 1) * 100
    assert abs(heat) > 1e-6  # the two runs differ, so the direction is visible
    table = pd.read_csv(tmp_path / "out" / "runs.csv").set_index("method")
    assert table.loc["fedavg", "delta_G"] == pytest.approx((semseg + heat) / 2)
    assert table.loc["fedavg", "delta_G"] != pytest.approx((semseg - heat) / 2)
    assert table.loc["local", "delta_G"] == pytest.approx(0.0)
    assert table.loc["fedavg", "reference"] == runs["local"][0]
    # the G-FL metrics table prints the MSE x1000 (mean over clients, as the run logs it)
    section = result.output.split("G-FL task metrics")[1].split("P-FL task metrics")[0]
    assert "heatmap mse×1000" in section
    for method, (_, metrics) in runs.items():
        row = next(line for line in section.splitlines() if f" {method} " in line)
        assert f" {_shown(metrics['G/toyspots/heatmap/mse'] * 1000)} ± " in row, row


def _shown(value: float) -> str:
    """A number as the leaderboard's tables print it (3 significant digits, whole numbers
    from 100 on)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def test_the_toy_kind_passes_the_kit(installed, fmtlbench_kit):
    """A plugin author's own check: the kit's task-kind contract on the toy kind."""
    from fmtlbench.tasks import IGNORE

    spec = installed.get("dataset", "toyspots").tasks["heatmap"]
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(4, 1, 12, 16, generator=generator)
    target[:, :, :2, :3] = IGNORE
    fmtlbench_kit.task_kind(installed.get("task", "heatmap"), spec, target)


def test_the_toy_dataset_passes_the_kit(installed, fmtlbench_kit):
    """The kit's dataset contract on a dataset labelling a third-party kind: its tasks resolve
    through the registry the plugin is installed in."""
    dataset = fmtlbench_kit.dataset(installed.get("dataset", "toyspots"), registry=installed)
    assert set(dataset.read(dataset.ids("test")[0], ["heatmap"])) == {"image", "heatmap"}
