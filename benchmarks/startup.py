"""Start-up costs a user meets before any work: ``fmtlbench --help``, ``fmtlbench list``, the
time from ``fmtlbench run`` to its first training step, and what the progress display costs.

Each command runs in a fresh process, as a user would start it; wall time is measured from
the launch. For ``run``, the child is the real CLI with one addition made by this script (not
by the project): the engine's entry points are wrapped to print a marker line when the initial
evaluation starts and when the first client starts its first local training step; the parent
notes when it reads each marker and then stops the child. The run is the demo (scenario iid1,
FedAvg, the ``cpu`` profile) on the synthetic twin, with and without the initial evaluation,
in a temporary MLflow store and cache (the first repeat creates them: it is the cold start).
The display cost is the CPU time of the progress display's refresh while nothing else runs,
per second of wall time.

    .venv/bin/python benchmarks/startup.py                   # writes results/startup.md
    .venv/bin/python benchmarks/startup.py --repeats 1 --no-run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FMTLBENCH = [sys.executable, "-m", "fmtlbench"]

#: Run inside the child before the CLI: markers on the engine's first evaluation and training.
CHILD = """
import sys, time
import fmtlbench.engine as engine

def marked(fn, label):
    state = {"seen": False}
    def wrapper(*args, **kwargs):
        if not state["seen"]:
            state["seen"] = True
            print(f"@@{label}", flush=True, file=sys.__stdout__)
        return fn(*args, **kwargs)
    return wrapper

engine.train_local = marked(engine.train_local, "first_step")
engine.Engine.evaluate = marked(engine.Engine.evaluate, "initial_eval")
from fmtlbench.cli import main
sys.argv = ["fmtlbench", *sys.argv[1:]]
main()
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def run_markers(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds from launch to each marker of ``CHILD`` (the child is stopped at the first step)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    seen: dict[str, float] = {}
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("@@"):
            seen[line[2:].strip()] = time.perf_counter() - start
            if "first_step" in seen:
                break
        else:
            tail = (tail + [line])[-20:]
    proc.kill()
    proc.wait()
    if "first_step" not in seen:
        raise SystemExit("run ended before its first training step:\n" + "".join(tail))
    return seen


def display_cost(seconds: float) -> float:
    """Percent of a core the progress display's refresh thread uses while the run is idle."""
    from rich.console import Console

    from fmtlbench.display import RichReporter

    with open(os.devnull, "w") as sink:
        reporter = RichReporter(Console(file=sink, force_terminal=True, width=120))
        with reporter:
            reporter.round_started(1, 10, 16)
            reporter.client_done(0, {})
            wall0, cpu0 = time.perf_counter(), time.process_time()
            time.sleep(seconds)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return 100 * cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-run", action="store_true", help="skip the run measurements")
    parser.add_argument("--display-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "startup.md")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fmtlbench-startup-"))
    env = {
        **os.environ,
        "FMTLBENCH_CACHE": str(tmp / "cache"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "CODECARBON_LOG_LEVEL": "error",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    env.pop("FMTLBENCH_DATA_ROOT", None)
    rows: list[tuple[str, list[float], str]] = []
    for label, cmd in (("fmtlbench --help", ["--help"]), ("fmtlbench list", ["list"])):
        results = [timed(FMTLBENCH + cmd, env) for _ in range(args.repeats)]
        walls = [w for w, _ in results]
        rows.append((label, walls, f"{max(m for _, m in results):.0f} MiB peak"))
        print(f"{label}: {', '.join(f'{w:.2f}' for w in walls)} s", flush=True)

    if not args.no_run:
        demo = ["run", "--scenario", "iid1", "--algo", "fedavg", "--rounds", "1", "--set"]
        for initial in (False, True):
            cmd = [*demo, f"checkpoint_dir={tmp / 'ckpt'}", "--set"]
            cmd.append(f"training.eval_initial={'true' if initial else 'false'}")
            marks = [run_markers(cmd, env) for _ in range(args.repeats)]
            label = "fmtlbench run → first training step" + (
                " (initial evaluation on)" if initial else " (initial evaluation off)"
            )
            note = ""
            if initial:
                setup = statistics.median(m["initial_eval"] for m in marks)
                note = f"initial evaluation starts at {setup:.2f} s"
            rows.append((label, [m["first_step"] for m in marks], note))
            print(f"{label}: {[round(m['first_step'], 2) for m in marks]} s {note}", flush=True)

    cost = display_cost(args.display_seconds)
    print(f"progress display: {cost:.2f}% of a core")
    load = os.getloadavg()
    lines = [
        "# Start-up: help, list, run to its first training step, progress display",
        "",
        f"Wall seconds from launching the command, {args.repeats} repeat(s) (the first run "
        "repeat is a cold start: it creates the MLflow store and the synthetic data cache); "
        f"load average at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} on "
        f"{os.cpu_count()} cores. Written by `python benchmarks/startup.py`.",
        "",
        "| command | seconds (each repeat) | median | note |",
        "|---|---|---|---|",
    ]
    for label, walls, note in rows:
        each = ", ".join(f"{w:.2f}" for w in walls)
        lines.append(f"| {label} | {each} | {statistics.median(walls):.2f} | {note} |")
    lines += [
        "",
        f"Progress display (`fmtlbench.display.RichReporter`, refreshing "
        f"{_refresh_rate()} times a second): {cost:.2f}% of one core, measured as the "
        f"process's CPU time over {args.display_seconds:.0f} s of wall time with the bars "
        "shown and nothing else running (target < 0.5%).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def _refresh_rate() -> int:
    from fmtlbench.display import REFRESH_PER_SECOND

    return REFRESH_PER_SECOND


if __name__ == "__main__":
    main()
