"""Server-side aggregation time per algorithm against the number of clients K.

The state is the real MD ResNet-18 model of NYUD-v2 (all tasks): its size does not depend on
the resolution, so the model is built once at a small one. Each client's state is the model's
state plus a random update. Every algorithm is set up on the K states and timed on one
``aggregate`` call; next to it stands the floor measured in the same process: the states
flattened once into a K x D float32 matrix, then one K x K Gram matmul and one weighted sum
over the exchanged entries — the least any of these methods must do. Times are CPU time
(``time.process_time``) on ``--threads`` threads (default 1), so other load on a shared machine
disturbs them little; the ratio to the floor is the number to read.

    .venv/bin/python benchmarks/aggregation.py               # writes results/aggregation.md
    .venv/bin/python benchmarks/aggregation.py --ks 2,4 --algorithms fedavg,cagrad
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from fmtlbench.components import ClientInfo, Update
from fmtlbench.maths import BLOCK
from fmtlbench.model import build_model
from fmtlbench.registry import load_registry

HERE = Path(__file__).resolve().parent
KS = (2, 4, 8, 16, 32)


def model_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The MD ResNet-18 NYUD-v2 state dict and its group tags."""
    registry = load_registry()
    torch.manual_seed(0)
    specs = dict(registry.get("dataset", "nyudv2").tasks)
    model = build_model(registry.get("backbone", "resnet18")(), registry.get("decoder", "md")(),
                        specs, (64, 80))  # fmt: skip
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, model.groups()


def client_states(base: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """``k`` states: the base plus a random update on every floating-point entry."""
    gen = torch.Generator().manual_seed(k)
    out = []
    for _ in range(k):
        state = {}
        for name, value in base.items():
            if value.dtype.is_floating_point:
                noise = torch.randn(value.shape, generator=gen, dtype=value.dtype)
                state[name] = value + 1e-2 * noise
            else:
                state[name] = value.clone()
        out.append(state)
    return out


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def floor_seconds(states: list[dict[str, torch.Tensor]], keys: list[str]) -> float:
    """One K x K Gram matrix plus one weighted sum over the flattened exchanged entries, the
    faster of two ways: one BLAS call each over the whole K x D matrix, or one pass over
    cache-sized column blocks doing both. (The single K x K x D matmul alone is a poor BLAS
    case for small K: here it took longer at K = 8 than at K = 16, which made a floor measured
    that way alone implausibly flat in K.)"""
    flat = torch.stack([torch.cat([s[n].reshape(-1) for n in keys]) for s in states])
    weights = torch.full((1, len(states)), 1.0 / len(states))

    def whole() -> None:
        gram = (flat @ flat.T).to(torch.float64)
        (weights @ flat).reshape(-1)
        del gram

    def blocked() -> None:
        gram = torch.zeros(len(states), len(states), dtype=torch.float64)
        total = torch.empty(flat.shape[1])
        for start in range(0, flat.shape[1], BLOCK):
            rows = flat[:, start : start + BLOCK]
            gram += (rows @ rows.T).to(torch.float64)
            torch.mm(weights, rows, out=total[start : start + BLOCK].view(1, -1))

    return min(cpu_seconds(work) for work in (whole, blocked, whole, blocked))


#: Extra rows: an algorithm with non-default parameters. With the default sigma, FedAMP's
#: attention between these states (squared distances ~7.5e3) is exactly the identity, so each
#: client keeps its own model and no cloud model is mixed; sigma = 1e4 makes every weight
#: non-zero, which is FedAMP's full cost.
VARIANTS = {"fedamp sigma=1e4": ("fedamp", {"sigma": 1e4})}


def algorithm_seconds(cls, states, groups, repeats: int, params: dict | None = None) -> float:
    infos = [ClientInfo(k, "nyudv2", ("t",), 100 + k) for k in range(len(states))]
    algorithm = cls(cls.Params(**(params or {})))
    algorithm.setup(infos, states, [groups] * len(states))
    updates = [Update(k, 100 + k, dict(s)) for k, s in enumerate(states)]
    times = []
    for r in range(repeats):
        times.append(cpu_seconds(lambda r=r: algorithm.aggregate(r + 1, updates)))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="client counts, e.g. 2,8")
    parser.add_argument("--algorithms", default="", help="comma list (default: all installed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="aggregate calls per cell (min)")
    parser.add_argument("--out", default=str(HERE / "results" / "aggregation.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = load_registry()
    names = [n for n in args.algorithms.split(",") if n] or registry.names("algorithm")
    base, groups = model_state()
    floats = [n for n, v in base.items() if v.dtype.is_floating_point]
    values = sum(base[n].numel() for n in floats)
    ks = [int(k) for k in args.ks.split(",")]
    variants = {label: v for label, v in VARIANTS.items() if v[0] in names}
    table: dict[str, dict[int, float]] = {n: {} for n in ["floor", *names, *variants]}
    for k in ks:
        states = client_states(base, k)
        table["floor"][k] = floor_seconds(states, floats)
        runs = [(name, name, None) for name in names]
        runs += [(label, algo, params) for label, (algo, params) in variants.items()]
        for name, algo, params in runs:
            cls = registry.get("algorithm", algo)
            table[name][k] = algorithm_seconds(cls, states, groups, args.repeats, params)
            print(f"K={k} {name}: {table[name][k]:.3f} s "
                  f"({table[name][k] / table['floor'][k]:.2f} x floor)", flush=True)  # fmt: skip
        del states
    load = os.getloadavg()
    lines = [
        f"# Aggregation CPU time per round vs K (MD ResNet-18, NYUD-v2 all tasks, "
        f"{values / 1e6:.1f} M floating-point values per client, {args.threads} thread(s))",
        "",
        "Seconds of CPU time for one `aggregate` call (x = ratio to the floor of the same K: one "
        "K x K Gram matrix + one weighted sum over the pre-flattened K x D float32 matrix, the "
        "faster of whole-matrix BLAS calls and one pass over cache-sized blocks). Load average "
        f"at the end {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} on {os.cpu_count()} cores; "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}. "
        "Written by `python benchmarks/aggregation.py`.",
        "",
        "| algorithm | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name, row in table.items():
        ratio = {k: "" if name == "floor" else f" ({row[k] / table['floor'][k]:.2f}x)" for k in ks}
        cells = [f"{row[k]:.3f}{ratio[k]}" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
