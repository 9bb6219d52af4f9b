"""An interrupted run, resumed, ends exactly like the run that was never interrupted.

In process, for every built-in algorithm: three tiny rounds straight through against the same
run stopped after round 1 and resumed from its checkpoint, with every random stream of the
process (torch, numpy, ``random``) scrambled in between, so that anything the resume failed to
restore shows up as a differing metric. The encoder is the contract tests' tiny pyramid: what
is checked is the resume path, and with it nine algorithms cost seconds.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient
from pyramid import TinyPyramid, plugin_path
from test_contract import REGISTRY
from test_run import StopAt

from fmtlbench import checkpoint, signals
from fmtlbench.config import build_config
from fmtlbench.runner import execute
from fmtlbench.testing.tiny import TINY_DECODER, TWIN

#: The tiny decoders' parameters that the md decoder takes.
MD_PARAMS = {
    k: v for k, v in TINY_DECODER.items() if k in REGISTRY.get("decoder", "md").Params.model_fields
}
#: Metric prefixes that measure the machine, not the run (wall time, energy).
UNREPRODUCIBLE = ("time/", "energy/")


def reproducible(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(UNREPRODUCIBLE)}


def scramble_rngs() -> None:
    """Move every process-wide random stream somewhere the straight run never was."""
    torch.manual_seed(987654321)
    torch.rand(17)
    np.random.seed(4242)
    random.seed(31337)


@pytest.fixture(scope="module")
def config_of(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume-exact")

    def make(algorithm: str):
        return build_config(
            None,
            tiny_overrides(
                tmp,
                algorithm={"name": algorithm},
                backbone={"name": TinyPyramid.name},
                arch={
                    "name": "md",
                    "params": MD_PARAMS,
                },
                clients=2,
                energy={"enabled": False},
                data={"datasets": {"nyudv2": {**TWIN, "twin_train": 16}}},
                training={"rounds": 3, "eval_initial": True},
            ),
        )

    return make


@pytest.mark.parametrize("algorithm", REGISTRY.names("algorithm"))
def test_resumed_run_equals_the_uninterrupted_one(algorithm: str, config_of) -> None:
    config = config_of(algorithm)
    straight = execute(config, registry=REGISTRY)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(2), registry=REGISTRY)
    client = MlflowClient()
    killed = client.search_runs(
        [client.get_experiment_by_name("fmtlbench").experiment_id],
        filter_string="attributes.status = 'KILLED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0].info.run_id
    assert checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, killed))["round"] == 1
    scramble_rngs()
    resumed = execute(config, resume=killed, registry=REGISTRY)
    for r in (0, 1, 2, 3):
        want, got = reproducible(straight.history[r]), reproducible(resumed.history[r])
        assert got == want, (
            r,
            {k: (want.get(k), got.get(k)) for k in want | got if want.get(k) != got.get(k)},
        )
    final = reproducible(straight.history[3])
    assert any(k.startswith("comm/") for k in final) and any("/train/" in k for k in final)
    assert any(k.startswith("G/") for k in final)
    assert resumed.final.per_client == straight.final.per_client
    # what MLflow holds for the final round is the same too
    logged = {k: v for k, v in client.get_run(killed).data.metrics.items()}
    for key, value in final.items():
        assert logged[key] == value, key


# ---------------------------------------------------------------------------- the kill matrix
# The real `fmtlbench run` in a subprocess, held by the documented pause hook
# (``fmtlbench.signals.pause``) at an exact point and sent a real signal there, then resumed
# with the command it printed; the final round must equal the run that was never interrupted.

#: A 3-round run of the tiny pyramid on 2 clients of a 16-image twin.
KILL_CONFIG = {
    "backbone": {"name": TinyPyramid.name},
    "arch": {"name": "md", "params": MD_PARAMS},
    "data": {"datasets": {"nyudv2": {**TWIN, "twin_train": 16}}},
    "clients": 2,
    "energy": {"enabled": False},
    "training": {"rounds": 3, "eval_initial": False},
}
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
TIMEOUT = 300


#: ``python -m fmtlbench`` that also writes, at exit, how often it read a checkpoint file.
COUNTING_LOADS = (
    "import atexit, runpy, sys\n"
    "from fmtlbench import checkpoint\n"
    "calls, read = [], checkpoint.load\n"
    "checkpoint.load = lambda path: calls.append(path) or read(path)\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(str(len(calls))))\n"
    "runpy.run_module('fmtlbench', run_name='__main__')\n"
)


def cli(
    args: list[str], tmp: Path, name: str, pause: str = "", count_loads: bool = False
) -> subprocess.Popen:
    """``fmtlbench run args`` with the tiny pyramid installed as a plugin, output to a file
    (with ``count_loads``, the number of checkpoint reads goes to ``<name>.loads``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", signals.PAUSE_ENV: pause}
    env["PYTHONPATH"] = plugin_path(tmp.parent / "site")
    env[signals.PAUSE_FILE_ENV] = str(tmp / f"{name}.paused")
    start = ["-c", COUNTING_LOADS, str(tmp / f"{name}.loads")] if count_loads else ["-m"]
    return subprocess.Popen(
        [sys.executable, *start, *([] if count_loads else ["fmtlbench"]), "run", *args],
        stdout=open(tmp / f"{name}.out", "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def wait_paused(proc: subprocess.Popen, marker: Path, point: str) -> None:
    """Until the run is held at ``point`` (it wrote ``marker``), or fail with its output."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if marker.is_file() and marker.read_text().split()[-1] == point:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run never reached {point}: {marker.with_suffix('.out').read_text()}")


def run_id_named(name: str) -> str:
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("fmtlbench").experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
    )
    assert len(runs) == 1, name
    return runs[0].info.run_id


def final_metrics(run_id: str) -> dict[str, float]:
    return reproducible(MlflowClient().get_run(run_id).data.metrics)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    """Per algorithm, its config file and the final metrics of its uninterrupted run.

    The uninterrupted run is made in this process (a subprocess would cost its start-up again),
    on one thread like the subprocesses, from the same file the CLI reads.
    """
    tmp = tmp_path_factory.mktemp("kill")
    made: dict[str, tuple[Path, dict[str, float]]] = {}

    def make(algorithm: str) -> tuple[Path, dict[str, float]]:
        if algorithm not in made:
            file = tmp / f"{algorithm}.yaml"
            file.write_text(yaml.safe_dump({**KILL_CONFIG, "algorithm": {"name": algorithm}}))
            config = build_config(file, [{"checkpoint_dir": str(tmp / "straight")}])
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                run_id = execute(config, registry=REGISTRY).run_id
            finally:
                torch.set_num_threads(threads)
            made[algorithm] = file, final_metrics(run_id)
        return made[algorithm]

    return tmp, make


KILL_ALGORITHMS = ("fedavg", "fedprox", "fedamp", "fedrep", "cagrad", "fedmtl")
KILL_SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
#: Where the signal lands, and the round the checkpoint on disk must then hold: half-way
#: through round 2 (round 1 saved), or inside the write of round 2's checkpoint (its temporary
#: file complete but not yet renamed: round 1 is still the checkpoint).
KILL_POINTS = ("round:2", "checkpoint-write:2")
REPRESENTATIVE = ("fedavg", signal.SIGTERM, "round:2")


def kill_cases():
    for algorithm in KILL_ALGORITHMS:
        for sig in KILL_SIGNALS:
            for point in KILL_POINTS:
                case = (algorithm, sig, point)
                marks = () if case == REPRESENTATIVE else (pytest.mark.slow,)
                yield pytest.param(*case, marks=marks, id=f"{algorithm}-{sig.name}-{point}")


def interrupt(kill_setup, algorithm: str, points: list[str], sigs: list[signal.Signals]):
    """Start a run, send ``sigs[i]`` when it is held at ``points[i]``; returns what it left."""
    tmp, make = kill_setup
    config_file, straight = make(algorithm)
    name = f"{algorithm}-{'-'.join(s.name for s in sigs)}-{points[0]}-{uuid.uuid4().hex[:6]}"
    folder = tmp / name
    folder.mkdir()
    args = ["--config", str(config_file), "--run-name", name]
    proc = cli([*args, "--set", f"checkpoint_dir={folder}"], folder, name, ",".join(points))
    marker = folder / f"{name}.paused"
    for point, sig in zip(points, sigs, strict=True):
        wait_paused(proc, marker, point)
        proc.send_signal(sig)
    code = proc.wait(TIMEOUT)
    output = (folder / f"{name}.out").read_text()
    return folder, name, proc.pid, code, output, straight


def resume_and_compare(folder: Path, run_id: str, output: str, straight: dict) -> None:
    """Resume with the printed command (or the equivalent one after SIGKILL) and compare."""
    command = f"fmtlbench run --resume {run_id} --set checkpoint_dir={folder}"
    resumed = cli(command.split()[2:], folder, "resumed", count_loads=True)
    assert resumed.wait(TIMEOUT) == 0, (folder / "resumed.out").read_text()
    assert (folder / "resumed.loads").read_text() == "1"  # the CLI reads the checkpoint once
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "fmtlbench.status_note" not in run.data.tags  # the interrupted note is cleared
    assert final_metrics(run_id) == straight
    assert not checkpoint.checkpoint_path(folder, run_id).exists()
    assert temp_files(folder) == []


@pytest.mark.parametrize(("algorithm", "sig", "point"), kill_cases())
def test_a_signalled_run_resumes_to_the_uninterrupted_result(kill_setup, algorithm, sig, point):
    folder, name, pid, code, output, straight = interrupt(kill_setup, algorithm, [point], [sig])
    assert code == EXIT[sig], output
    run_id = run_id_named(name)
    path = checkpoint.checkpoint_path(folder, run_id)
    assert checkpoint.load(path)["round"] == 1  # the last completed checkpoint, intact
    run = MlflowClient().get_run(run_id)
    if sig == signal.SIGKILL:  # nothing runs after SIGKILL: the write's temp file stays...
        assert run.info.status == "RUNNING"
        stray = f".{checkpoint.NAME}.{socket.gethostname()}.{pid}.tmp"
        assert temp_files(folder) == ([stray] if point.startswith("checkpoint") else [])
    else:
        assert run.info.status == "KILLED"
        command = f"fmtlbench run --resume {run_id} --set checkpoint_dir={folder}"
        assert command in output and command in run.data.tags["fmtlbench.status_note"]
        assert temp_files(folder) == []
        assert ("terminated" if sig == signal.SIGTERM else "interrupted") in output
        assert "Traceback" not in output
    resume_and_compare(folder, run_id, output, straight)  # ...and the resume sweeps it away


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "first", "second"),
    [("fedavg", signal.SIGINT, signal.SIGTERM), ("fedamp", signal.SIGTERM, signal.SIGINT)],
    ids=["fedavg-INT-then-TERM", "fedamp-TERM-then-INT"],
)
def test_a_second_signal_during_shutdown_exits_at_once(kill_setup, algorithm, first, second):
    """Held mid-round 2, then again in the shutdown the first signal started: the second
    signal has its default action, and the checkpoint of round 1 is whole and resumes."""
    points = ["round:2", "shutdown:2"]
    folder, name, _, code, output, straight = interrupt(
        kill_setup, algorithm, points, [first, second]
    )
    assert code == -second, output
    run_id = run_id_named(name)
    assert checkpoint.load(checkpoint.checkpoint_path(folder, run_id))["round"] == 1
    assert temp_files(folder) == []
    assert MlflowClient().get_run(run_id).info.status == "RUNNING"  # its shutdown was cut
    resume_and_compare(folder, run_id, output, straight)


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_says_so(kill_setup):
    folder, name, _, code, output, _ = interrupt(
        kill_setup, "fedavg", ["round:1"], [signal.SIGTERM]
    )
    assert code == 143, output
    run = MlflowClient().get_run(run_id_named(name))
    assert run.info.status == "KILLED"
    note = run.data.tags["fmtlbench.status_note"]
    assert note == "interrupted during round 1, before any checkpoint; run it again"
    assert note in output and "--resume" not in output
    assert not checkpoint.checkpoint_path(folder, run.info.run_id).exists()
