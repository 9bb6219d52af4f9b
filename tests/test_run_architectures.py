"""`fmtlbench run --arch tc` and `--backbone swin-t` end to end on the tiny twin.

The command line is invoked in-process; what the run did is read back from MLflow, and the
recorded weight hash is compared with the file's SHA-256 computed here.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import torch
import yaml
from click.testing import CliRunner
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient

from fmtlbench.cli import main
from fmtlbench.config import merge

NYUD_TASKS = ("semseg", "depth", "normals", "edge")


def run_cli(tmp: Path, *args: str, **extra: object) -> tuple[str, dict]:
    """Run ``fmtlbench run`` (one round, two clients) on the tiny config plus ``args``; the
    MLflow run's data."""
    config: dict = {}
    short = {"clients": 2, "training": {"rounds": 1, "eval_initial": False}}
    for fragment in tiny_overrides(tmp, **merge(short, extra)):
        config = merge(config, fragment)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["run", "--config", str(path), *args])
    assert result.exit_code == 0, result.output
    run_id = re.search(r"MLflow run (\w+)", result.output)
    assert run_id, result.output
    run = MlflowClient().get_run(run_id[1])
    assert run.info.status == "FINISHED"
    return run_id[1], {"tags": run.data.tags, "metrics": run.data.metrics}


def assert_all_tasks_evaluated(metrics: dict) -> None:
    for kind in ("G", "P"):
        for task in NYUD_TASKS:
            values = [v for k, v in metrics.items() if k.startswith(f"{kind}/nyudv2/{task}/")]
            assert values and all(math.isfinite(v) for v in values), (kind, task)


def test_run_with_the_tc_architecture(tmp_path: Path) -> None:
    _, run = run_cli(tmp_path, "--arch", "tc", "--algo", "fedavg")
    assert run["tags"]["arch"] == "tc" and run["tags"]["backbone"] == "resnet18"
    assert_all_tasks_evaluated(run["metrics"])


def test_run_with_swin_t_from_a_weight_file(tmp_path: Path) -> None:
    from fmtlbench_builtins.backbones.timm_backbone import SwinT

    torch.manual_seed(0)
    weights = tmp_path / "swin.pth"
    torch.save(SwinT().build((32, 40)).body.state_dict(), weights)
    _, run = run_cli(
        tmp_path,
        "--backbone",
        "swin-t",
        "--set",
        f"backbone.params.weights={weights}",
    )
    assert run["tags"]["backbone"] == "swin-t" and run["tags"]["arch"] == "md"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert run["tags"]["backbone_weights_sha256"] == digest
    assert_all_tasks_evaluated(run["metrics"])
