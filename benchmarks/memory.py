"""Peak memory and round time of a federated run against its number of clients.

Client state lives as CPU state dicts beside one working model per model structure, so peak
memory should grow with K only by K copies of the parameters, never by K live models with
optimisers and activations. This script runs one FedAvg round of the `iid1` clients (resnet18,
cpu profile) for several client counts and both architectures - MD (a decoder per task) and TC
(one task-conditioned decoder) - each in a fresh process, and records peak resident memory
(``ru_maxrss``), the size of one client state, and the training time per image (all clients
together hold the twin's training images whatever K is; K only changes how they are split).
The growth per added client is to be compared with one state's size.

    .venv/bin/python benchmarks/memory.py              # writes benchmarks/results/memory.md
    .venv/bin/python benchmarks/memory.py --arch tc --out /tmp/memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COUNTS = (1, 2, 4, 8)
ARCHS = ("md", "tc")


def child(arch: str, clients: int, work: Path) -> dict:
    from fmtlbench.config import build_config
    from fmtlbench.runner import execute

    scenario = work / f"k{clients}.yaml"
    scenario.write_text(
        f"name: iid1-k{clients}\ngroups:\n  - {{dataset: nyudv2, tasks: all, count: {clients}}}\n"
    )
    config = build_config(
        None,
        [
            {
                "scenario": str(scenario),
                "arch": {"name": arch},
                "training": {"rounds": 1, "eval_initial": False},
                "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "experiment": "bench"},
                "checkpoint_dir": str(work / "ckpt"),
                "data": {"cache_dir": str(work / "cache")},
            }
        ],
    )
    start = time.perf_counter()
    outcome = execute(config)
    wall = time.perf_counter() - start
    train = outcome.history[1]["time/train"]
    images = sum(len(c.train.dataset) for c in outcome.federation.clients)
    state = outcome.federation.states[0]
    return {
        "arch": arch,
        "clients": clients,
        "state_mb": sum(t.numel() * t.element_size() for t in state.values()) / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_ms_per_image": 1000 * train / images,
        "run_s": wall,
    }


def measure(arch: str, tmp: str) -> list[dict]:
    """One fresh process per client count (peak RSS is a per-process high-water mark)."""
    rows = []
    for k in COUNTS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", arch, str(k), tmp],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> list[str]:
    """One architecture's rows; "per added client" is the RSS growth from the previous K."""
    base = rows[0]
    lines = [
        f"## {base['arch'].upper()} (one client state: {base['state_mb']:.0f} MB)",
        "",
        "| clients | peak RSS (MB) | peak / peak(K=1) | MB per added client | "
        "train ms per image | / K=1 |",
        "|---|---|---|---|---|---|",
    ]
    previous = None
    for r in rows:
        memory = r["peak_rss_mb"] / base["peak_rss_mb"]
        speed = r["train_ms_per_image"] / base["train_ms_per_image"]
        added = "-"
        if previous is not None:
            step = (r["peak_rss_mb"] - previous["peak_rss_mb"]) / (
                r["clients"] - previous["clients"]
            )
            added = f"{step:.0f}"
        lines.append(
            f"| {r['clients']} | {r['peak_rss_mb']:.0f} | {memory:.2f} | {added} | "
            f"{r['train_ms_per_image']:.0f} | {speed:.2f} |"
        )
        previous = r
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=ARCHS, action="append", help="default: md and tc")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tables = [table(measure(arch, tmp)) for arch in args.arch or ARCHS]
    lines = [
        "# Peak memory against client count (one FedAvg round, iid1 clients, resnet18, "
        "cpu profile 64x80)",
        "",
        f"1-minute load average at the start: {load:.2f} (2 cores); the times per image are",
        "CPU-share dependent, the memory figures are not.",
        "",
    ]
    for rows in tables:
        lines += rows
    lines += [
        "Each additional client adds one CPU copy of its state, not a live model: compare",
        '"MB per added client" with the state size in each heading.',
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
