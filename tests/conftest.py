"""Shared fixtures: an isolated cache, MLflow store and working directory for every session,
and a tiny run configuration on the synthetic twin that trains in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_TWIN = {"twin_train": 48, "twin_test": 12, "twin_height": 48, "twin_width": 64}


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nothing a test does touches the user's cache, MLflow store or data root."""
    root = tmp_path_factory.mktemp("fmtlbench-env")
    os.environ["FMTLBENCH_CACHE"] = str(root / "cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["CODECARBON_LOG_LEVEL"] = "error"
    os.environ.pop("FMTLBENCH_DATA_ROOT", None)
    return root


def tiny_overrides(tmp: Path, **extra: object) -> list[dict]:
    """Config fragments of a run small enough for a unit test (a few seconds)."""
    fragments: list[dict] = [
        {
            "data": {"datasets": {"nyudv2": dict(TINY_TWIN), "pascal-context": dict(TINY_TWIN)}},
            "training": {
                "rounds": 2,
                "resolution": {"default": [32, 40]},
                "eval_resolution": {"default": [32, 40]},
            },
            "checkpoint_dir": str(tmp / "checkpoints"),
        }
    ]
    if extra:
        fragments.append(dict(extra))
    return fragments


@pytest.fixture
def tiny_config(tmp_path: Path):
    from fmtlbench.config import build_config

    def make(**extra: object):
        return build_config(None, tiny_overrides(tmp_path, **extra))

    return make


@pytest.fixture(scope="session")
def ray_local(isolated_env: Path):
    """One local Ray (2 CPUs, no dashboard) for every test that needs it: starting Ray costs
    seconds. Workers inherit this session's environment (cache, MLflow store) and import the
    test modules' cell functions from this folder."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}},
    )
    yield ray
    ray.shutdown()
