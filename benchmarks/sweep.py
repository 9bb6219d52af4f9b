"""Wall time of a sweep of 8 tiny runs: the ``ray`` executor (2 workers, 1 thread each) against
``serial`` (1 thread), on this machine's 2 cores.

Each run is a tiny FedAvg run on the NYUD-v2 synthetic twin (2 clients, ``--rounds`` rounds,
``--size`` pixels) with its own seed and checkpoint folder, tracked into a fresh SQLite store.
The serial sweep runs the cells one after another in this process; the ray sweep starts a local
Ray with 2 CPUs (counted in its time) and runs them as Ray tasks of 1 CPU each. Both sweeps must
give the same final metrics cell by cell - the script checks it - so the ratio compares equal
work. The target is ``ray / serial <= 0.65``. Times are wall times, so load from other users of
a shared machine disturbs them: the load average is recorded next to them.

    .venv/bin/python benchmarks/sweep.py                  # writes results/sweep.md
    .venv/bin/python benchmarks/sweep.py --runs 4 --rounds 1 --out /tmp/sweep.md

The default runs are the demo's size (64x80 pixels, 3 rounds: about half a minute each). Ray
has a fixed start-up cost in a sweep - starting Ray, each worker importing torch and the
tracking stack, each worker's first run warming its caches - of about 18 s here; on runs of
10 s (32x40, 2 rounds) that alone keeps the ratio near 0.72, whatever the executor does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Metrics that measure the machine rather than the learning.
MACHINE = ("time/", "energy/", "traffic/")


def run_cell(cell: dict) -> dict[str, float]:
    """One tiny run; its learning metrics of the last round (module level: Ray imports it)."""
    from fmtlbench.config import build_config
    from fmtlbench.runner import execute

    tmp = Path(cell["tmp"])
    size, twin = cell["size"], cell["twin"]
    config = build_config(
        None,
        [
            {
                "seed": cell["seed"],
                "clients": 2,
                "checkpoint_dir": str(tmp / "checkpoints"),
                "training": {
                    "rounds": cell["rounds"],
                    "eval_initial": False,
                    "resolution": {"default": size},
                    "eval_resolution": {"default": size},
                },
                "data": {"datasets": {"nyudv2": twin}},
            }
        ],
    )
    last = execute(config).history[config.training.rounds]
    return {k: v for k, v in last.items() if not k.startswith(MACHINE)}


def cells(root: Path, runs: int, rounds: int, size: list[int]) -> list[dict]:
    twin = {"twin_train": 32, "twin_test": 8, "twin_height": size[0], "twin_width": size[1]}
    return [
        {"seed": s, "rounds": rounds, "size": size, "twin": twin, "tmp": str(root / f"c{s}")}
        for s in range(runs)
    ]


def results(events) -> dict[int, dict[str, float]]:
    out = {}
    for event in events:
        if event.state == "failed":
            raise SystemExit(f"cell {event.index} failed: {event.error}")
        if event.state == "finished":
            out[event.index] = event.result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="64,80", help="height,width of the images (the demo's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep.md")
    args = parser.parse_args()
    size = [int(v) for v in args.size.split(",")]

    os.environ["OMP_NUM_THREADS"] = "1"
    root = Path(tempfile.mkdtemp(prefix="fmtlbench-sweep-"))
    os.environ.setdefault("FMTLBENCH_CACHE", str(root / "cache"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import torch

    from fmtlbench.registry import load_registry

    torch.set_num_threads(1)
    registry = load_registry()
    # warm-up (not timed): the synthetic twin and the MLflow store exist before either sweep
    warm = cells(root / "warm", 1, 1, size)[0]
    run_cell(warm)

    load_before = os.getloadavg()
    serial = registry.get("executor", "serial")()
    t0 = time.perf_counter()
    serial_out = results(serial.run_cells(run_cell, cells(root / "serial", args.runs,
                                                           args.rounds, size)))  # fmt: skip
    t_serial = time.perf_counter() - t0

    import ray

    ray_cls = registry.get("executor", "ray")
    t0 = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},
    )
    executor = ray_cls(ray_cls.Params(cpus_per_run=1))
    ray_out = results(executor.run_cells(run_cell, cells(root / "ray", args.runs,
                                                          args.rounds, size)))  # fmt: skip
    t_ray = time.perf_counter() - t0
    ray.shutdown()
    load_after = os.getloadavg()

    same = all(ray_out[i] == serial_out[i] for i in serial_out) and len(ray_out) == args.runs
    ratio = t_ray / t_serial
    lines = [
        "# Sweep: ray (2 workers, 1 thread each) vs serial",
        "",
        f"`benchmarks/sweep.py --runs {args.runs} --rounds {args.rounds} --size {args.size}` "
        f"on {os.cpu_count()} cores; tiny FedAvg runs (2 clients, NYUD-v2 twin, {size[0]}x"
        f"{size[1]}), ray time includes starting the local Ray.",
        "",
        "| executor | wall time (s) | per run (s) |",
        "|---|---|---|",
        f"| serial | {t_serial:.1f} | {t_serial / args.runs:.1f} |",
        f"| ray, 2 workers | {t_ray:.1f} | {t_ray / args.runs:.1f} |",
        "",
        f"**ray / serial = {ratio:.2f}** (target <= 0.65: {'met' if ratio <= 0.65 else 'NOT met'})"
        f"; final metrics identical cell by cell: {same}.",
        "",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.2f}' for v in load_after)} (a shared machine: other users' "
        "load slows the parallel sweep more than the serial one).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
