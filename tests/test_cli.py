"""The command line: fast help, one-line errors, listings, third-party plugins by entry point."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner, Result

FMTLBENCH = [sys.executable, "-m", "fmtlbench"]


def cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FMTLBENCH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def invoke(*args: str) -> Result:
    """The command in-process: these tests check what it prints and its exit code, not the
    interpreter start-up, and a subprocess per call costs seconds of torch import."""
    from fmtlbench.cli import main

    return CliRunner().invoke(main, list(args))


def test_help_imports_no_heavy_library():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import fmtlbench.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.stderr.splitlines()}
    assert "click" in imported  # the probe sees imports at all
    assert not {"torch", "timm", "mlflow", "numpy"} & imported


def test_mistyped_algorithm_is_one_line_without_traceback():
    result = invoke("run", "--algo", "fedavgg")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "did you mean 'fedavg'" in lines[0].lower()
    assert "installed algorithms: " in lines[0].lower()
    listed = lines[0].lower().split("installed algorithms: ")[1].rstrip(".").split(", ")
    assert {"fedavg", "local"} <= set(listed)
    assert "Traceback" not in result.stderr


def test_invalid_parameter_names_the_field():
    result = invoke("run", "--set", "training.lr=-1")
    assert result.exit_code == 2
    assert "training.lr" in result.stderr and "Traceback" not in result.stderr
    result = invoke("run", "--set", "algorithm.params.weighting=loudest")
    assert result.exit_code == 2
    assert "algorithm.params.weighting" in result.stderr and "Traceback" not in result.stderr


def test_list_shows_algorithms_with_parameters():
    result = invoke("list", "algorithms")
    assert result.exit_code == 0, result.stderr
    assert "fedavg" in result.stdout and "local" in result.stdout
    assert "weighting" in result.stdout


def test_plugins_lists_distributions():
    result = invoke("plugins")
    assert result.exit_code == 0, result.stderr
    # the built-ins ship in the fmtlbench distribution itself, one entry point per module
    core = f"fmtlbench {importlib.metadata.version('fmtlbench')}"
    assert core in result.stdout.splitlines(), result.stdout
    assert "fedavg = fmtlbench_builtins.algorithms.fedavg  ok" in result.stdout


def _fake_distribution(root: Path, module: str, body: str, entry: str) -> None:
    """An installed-looking distribution: a module plus a dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{module}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[fmtlbench]\n{entry} = {module}\n")


THIRD_PARTY = """
    from fmtlbench import hookimpl
    from fmtlbench.components import Algorithm
    from fmtlbench.maths import weighted_mean


    class HalfStep(Algorithm):
        '''Moves every client half-way towards the mean of the exchanged groups.'''

        name = "halfstep"

        def aggregate(self, round, updates):
            mean = weighted_mean([u.entries for u in updates], self.weights(updates))
            return {
                u.client: {k: (u.entries[k] + mean[k]) / 2 if v.is_floating_point() else mean[k]
                           for k, v in mean.items()}
                for u in updates
            }


    @hookimpl
    def register_algorithms():
        return [HalfStep]
"""


def test_third_party_algorithm_through_a_real_entry_point(tmp_path, isolated_env):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "fmtlbench_halfstep", THIRD_PARTY, "halfstep")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listing = cli("list", "algorithms", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "halfstep" in listing.stdout and "fmtlbench_halfstep" in listing.stdout
    # what is checked is that the plugin's algorithm runs a round and is tracked, not the
    # model's quality: two clients on an 8 + 4 image twin, without energy metering
    twin = "twin_train: 8, twin_test: 4, twin_height: 48, twin_width: 64"
    run = cli(
        "run",
        "--set",
        "clients=2",
        "--set",
        "energy.enabled=false",
        "--algo",
        "halfstep",
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
        env=env,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert "results after round 1" in run.stdout
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=["fmtlbench"], filter_string="tags.algorithm = 'halfstep'"
    )
    assert len(runs) >= 1 and set(runs["status"]) == {"FINISHED"}
