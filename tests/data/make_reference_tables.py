"""Writes the Table-7-shaped fixtures of tests/test_reference_rule.py (run once, by hand).

NOT the study's published numbers (none of this project's sources hold them): plausible values
in the shape of the study's Table 7 - niid6 (UBCDMT), the NYUD-v2 tasks and the PASCAL client's
parts and normals, eight methods x MD/TC x ResNet-18/Swin-T = 32 rows, each with its Δ_G.
They are written the way a paper prints them: metrics rounded to two decimals in the printed
scale (depth RMSE and edge loss x 100), and the Δ_G column computed *before* rounding, against
Local-MD-ResNet-18, then rounded to two decimals. The Δ maths here is numpy, independent of
fmtlbench. A second file adds iid1 Local-MD rows (NYUD tasks only) and a niid4 table.

    python tests/data/make_reference_tables.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
#: (dataset, task, metric, lower is better, printed scale, typical value, spread)
METRICS = [
    ("nyudv2", "semseg", "miou", False, 1, 38.0, 4.0),
    ("nyudv2", "depth", "rmse", True, 100, 0.62, 0.05),
    ("nyudv2", "normals", "mean", True, 1, 23.0, 1.5),
    ("nyudv2", "edge", "loss", True, 100, 0.050, 0.003),
    ("pascal-context", "parts", "miou", False, 1, 55.0, 5.0),
    ("pascal-context", "normals", "mean", True, 1, 15.5, 1.0),
]
METHODS = [("local", ""), ("fedavg", "encoder"), ("fedprox", "encoder"), ("fedamp", ""),
           ("fedrep", ""), ("matfl", ""), ("pcgrad", "encoder"), ("cagrad", "encoder")]  # fmt: skip
BACKBONES = {"resnet18": "ResNet-18", "swin-t": "Swin-T"}
HEADER = ["method", "setting", "dataset", "task", "metric", "value", "algorithm", "share",
          "arch", "backbone", "scenario", "data"]  # fmt: skip


def name(algorithm: str, share: str, arch: str, backbone: str) -> str:
    return f"{algorithm}{'-E' if share else ''} {arch.upper()} {BACKBONES[backbone]}"


def delta(values: np.ndarray, ref: np.ndarray, lower: np.ndarray) -> float:
    sign = np.where(lower, -1.0, 1.0)
    return float(100.0 * np.mean(sign * (values - ref) / ref))


def rounded(value: float, scale: float) -> float:
    """``value`` as printed (two decimals at ``scale``), back in its own unit."""
    return round(value * scale, 2) / scale


def table(rng, scenario: str, metrics, rows, path: Path, delta_path: Path | None) -> dict:
    lower = np.array([m[3] for m in metrics])
    exact = {}
    for algorithm, share in METHODS:
        for arch in ("md", "tc"):
            for backbone in BACKBONES:
                typical = np.array([m[5] for m in metrics])
                spread = np.array([m[6] for m in metrics])
                exact[(algorithm, share, arch, backbone)] = typical + spread * rng.normal(
                    size=len(metrics)
                )
    ref = exact[("local", "", "md", "resnet18")]
    deltas = {}
    for (algorithm, share, arch, backbone), values in exact.items():
        method = name(algorithm, share, arch, backbone)
        deltas[method] = round(delta(values, ref, lower), 2)
        for (dataset, task, metric, _, scale, _, _), v in zip(metrics, values, strict=True):
            rows.append([method, "G", dataset, task, metric, f"{rounded(v, scale):.6g}",
                         algorithm, share, arch, backbone, scenario, "real"])  # fmt: skip
    if delta_path is not None:
        with delta_path.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["method", "delta_G"])
            out.writerows([m, f"{d:.2f}"] for m, d in deltas.items())
    return deltas


def write(path: Path, rows) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        out.writerows(rows)


def main() -> None:
    rng = np.random.default_rng(20240220)
    rows: list[list[str]] = []
    table(rng, "niid6", METRICS, rows, HERE / "table7.csv", HERE / "table7_delta.csv")
    write(HERE / "table7.csv", rows)
    # The same table plus iid1 Local-MD rows, which lack the PASCAL tasks, and a niid4 table
    # (NYUD tasks only) that iid1 does cover.
    nyud = METRICS[:4]
    more: list[list[str]] = []
    for algorithm, share, arch, backbone in [("local", "", "md", "resnet18"),
                                             ("local", "", "md", "swin-t")]:  # fmt: skip
        values = np.array([m[5] for m in nyud]) * (1 + 0.03 * rng.normal(size=len(nyud)))
        for (dataset, task, metric, _, scale, _, _), v in zip(nyud, values, strict=True):
            more.append([f"iid1 {name(algorithm, share, arch, backbone)}", "G", dataset, task,
                         metric, f"{rounded(v, scale):.6g}", algorithm, share, arch, backbone,
                         "iid1", "real"])  # fmt: skip
    iid1_ref = {(r[2], r[3]): float(r[5]) for r in more if r[0] == "iid1 local MD ResNet-18"}
    niid4: list[list[str]] = []
    table(rng, "niid4", nyud, niid4, HERE / "niid4.csv", None)
    lower = np.array([m[3] for m in nyud])
    with (HERE / "niid4_delta_vs_iid1.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["method", "delta_G"])
        methods = dict.fromkeys(r[0] for r in niid4)
        for method in methods:
            values = np.array([float(r[5]) for r in niid4 if r[0] == method])
            ref = np.array([iid1_ref[(m[0], m[1])] for m in nyud])
            out.writerow([method, f"{delta(values, ref, lower):.2f}"])
    write(HERE / "scenarios.csv", rows + more + niid4)


if __name__ == "__main__":
    main()
