"""The example third-party package examples/fmtlbench-torchjd: its maths by hand, against the
built-in PCGrad on the same inputs, and against torchjd called directly on the K x D matrix of
updates; then really built and installed with pip and run through the CLI."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import pip_build_flags

from fmtlbench.components import ClientInfo, Update

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "fmtlbench-torchjd"
sys.path.insert(0, str(PACKAGE))
from fmtlbench_torchjd import aggregators  # noqa: E402

sys.path.remove(str(PACKAGE))
import torchjd.aggregation as torchjd_aggregation  # noqa: E402  (in the test extra: never skipped)

ALGORITHMS = {c.name: c for c in aggregators.register_algorithms()}


def server_step(cls: type, deltas: list[list[float]], **params: object) -> torch.Tensor:
    """The global model's move after one round in which client k sent ``g + deltas[k]``."""
    k = len(deltas)
    infos = [ClientInfo(i, "toy", ("t",), 4) for i in range(k)]
    start = torch.tensor([0.5] * len(deltas[0]))
    states = [{"encoder.w": start.clone()} for _ in range(k)]
    algo = cls(cls.Params(**params))
    algo.setup(infos, states, [{"encoder.w": "encoder"}] * k)
    updates = [Update(i, 4, {"encoder.w": start + torch.tensor(d)}) for i, d in enumerate(deltas)]
    payloads = algo.aggregate(1, updates)
    return payloads[0]["encoder.w"].double() - start.double()


def builtin(name: str) -> type:
    """A built-in algorithm class, imported directly (building the whole registry costs
    seconds)."""
    module = importlib.import_module(f"fmtlbench_builtins.algorithms.{name}")
    return next(c for c in module.register_algorithms() if c.name == name)


def test_orthogonal_updates_by_hand_and_as_pcgrad() -> None:
    deltas = [[1.0, 0.0], [0.0, 2.0]]
    pcgrad = server_step(builtin("pcgrad"), deltas)
    # No conflict: UPGrad and DualProj with the client weights are FedAvg's mean, as PCGrad.
    for name in ("upgrad", "dualproj"):
        step = server_step(ALGORITHMS[name], deltas)
        assert torch.allclose(step, torch.tensor([0.5, 1.0], dtype=torch.float64), atol=1e-5)
        assert torch.allclose(step, pcgrad, atol=1e-5)
    # MGDA: min over a of |a(1,0) + (1-a)(0,2)|^2 = a^2 + 4(1-a)^2, so a = 4/5: (0.8, 0.4).
    mgda = server_step(ALGORITHMS["mgda"], deltas)
    assert torch.allclose(mgda, torch.tensor([0.8, 0.4], dtype=torch.float64), atol=1e-3)


def test_identical_updates_step_by_the_update() -> None:
    deltas = [[1.0, -2.0, 0.5]] * 2
    assert torch.allclose(server_step(builtin("pcgrad"), deltas), torch.tensor(deltas[0]).double())
    for name in ("upgrad", "dualproj", "mgda"):
        step = server_step(ALGORITHMS[name], deltas)
        assert torch.allclose(step, torch.tensor(deltas[0]).double(), atol=1e-4), name


CONFLICTING = [[1.0, 0.0, 0.0], [-0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]  # mean conflicts with #2


@pytest.mark.parametrize(
    "name, direct",
    [
        ("upgrad", lambda: torchjd_aggregation.UPGrad(pref_vector=torch.full((3,), 1 / 3))),
        ("dualproj", lambda: torchjd_aggregation.DualProj(pref_vector=torch.full((3,), 1 / 3))),
        ("alignedmtl", lambda: torchjd_aggregation.AlignedMTL(pref_vector=torch.full((3,), 1 / 3))),
        ("mgda", lambda: torchjd_aggregation.MGDA()),
        ("nashmtl", lambda: torchjd_aggregation.NashMTL(n_tasks=3)),
    ],
)
def test_conflicting_updates_match_torchjd_on_the_matrix(name: str, direct) -> None:
    matrix = torch.tensor(CONFLICTING)
    expected = direct()(matrix).double()
    step = server_step(ALGORITHMS[name], CONFLICTING)
    assert torch.allclose(step, expected, atol=1e-4), (step, expected)
    assert not torch.allclose(step, matrix.double().mean(0), atol=1e-3)  # not FedAvg


def test_params_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        ALGORITHMS["mgda"].Params(max_iters=0)
    with pytest.raises(ValueError):
        ALGORITHMS["upgrad"].Params(preference="loudest")


#: The example packages, installed together into one target as a user would pip-install them.
EXAMPLES = {"fmtlbench-torchjd": PACKAGE, "fmtlbench-ditto": ROOT / "examples" / "fmtlbench-ditto"}


@pytest.fixture(scope="session")
def torchjd_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both example packages really built and installed by pip into a target of their own."""
    for name in EXAMPLES:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pytest.fail(f"{name} is already installed: uninstall it to test installing")
    target = tmp_path_factory.mktemp("examples-site")
    build = tmp_path_factory.mktemp("examples-src")
    for package in EXAMPLES.values():  # copies: building must not write into the repository
        subprocess.run(["cp", "-r", str(package), str(build)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *pip_build_flags()]
        + ["--target", str(target)]
        + [str(build / package.name) for package in EXAMPLES.values()],
        check=True,
        timeout=300,
    )
    return target


def fmtlbench(site: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "fmtlbench", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path, "COLUMNS": "200"},
    )


def test_installed_packages_list_their_algorithms(torchjd_site: Path, tmp_path: Path) -> None:
    assert (torchjd_site / "fmtlbench_torchjd" / "aggregators.py").is_file()
    listing = fmtlbench(torchjd_site, "list", "algorithms")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│" in line}
    for name in ALGORITHMS:
        assert name in rows and "fmtlbench-torchjd 0.1.0" in rows[name], listing.stdout
    assert (torchjd_site / "fmtlbench_ditto" / "ditto.py").is_file()
    assert "ditto" in rows and "fmtlbench-ditto 0.1.0" in rows["ditto"], listing.stdout


@pytest.mark.slow  # a real one-round run: ~100 s on the shared 2-core machine
def test_installed_package_runs_upgrad(torchjd_site: Path, tmp_path: Path) -> None:
    from conftest import TINY_TWIN

    twin = ",".join(f"{k}: {v}" for k, v in TINY_TWIN.items())
    run = fmtlbench(
        torchjd_site,
        "run",
        "--algo",
        "upgrad",
        "--rounds",
        "1",
        "--set",
        f"data.datasets.nyudv2={{{twin}}}",
        "--set",
        "training.resolution={default: [32, 40]}",
        "--set",
        "training.eval_resolution={default: [32, 40]}",
        "--set",
        f"checkpoint_dir={tmp_path / 'ckpt'}",
        "--set",
        "training.eval_initial=false",
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "results after round 1" in run.stdout
