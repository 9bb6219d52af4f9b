"""Shared fixtures: an isolated cache, MLflow store and working directory for every session,
and a tiny run configuration on the synthetic twin that trains in seconds."""

from __future__ import annotations

import importlib.metadata
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


def pip_build_flags() -> list[str]:
    """How pip should build a package of this repository (its build-system wants
    setuptools>=68, bdist_wheel built in): with the environment's setuptools when it is recent
    enough, else in isolation with setuptools from the package index."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 0
    return ["--no-build-isolation"] if major >= 68 else ["--use-pep517"]


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


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 in its own process group, which a test may kill
    (as a crash would) and start again on the same port and database."""

    def __init__(self, root: Path) -> None:
        import socket

        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, wait: float = 90.0) -> None:
        import subprocess
        import sys
        import time
        import urllib.request

        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        log = (self.root / "server.log").open("a")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'db.sqlite'}",
                "--default-artifact-root",
                str(self.root / "artifacts"),
            ],  # fmt: skip
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                text = (self.root / "server.log").read_text()[-2000:]
                pytest.fail(f"mlflow server exited: {text}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health within {wait:.0f} s")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, no goodbye to the clients."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the group: a server that accepts connections, never answers."""
        import signal

        os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """One MLflow server for the session's server tests (starting one costs seconds); a test
    that kills it starts it again before it ends."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.kill()
