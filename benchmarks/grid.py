"""Every built-in algorithm on both architectures and all seven study scenarios, one round each.

Each cell is built as ``fmtlbench run`` builds a run (``build_federation``: components, data,
partition, client models, the algorithm's setup and the exchange-shape check), then runs one
round through the engine: local training, aggregation, payloads, evaluation. It is recorded as
finished (with its time), as refused with the algorithm's ``IncompatibleError`` message (the
study's "NULL" cells, where an algorithm cannot run on the clients), or as FAILED with the
exception, which is a bug. Sizes are tiny (48x64 twins, 32x40 crops) but the models are the
real ones: ResNet-18 from scratch and the default MD and TC decoders.

    .venv/bin/python benchmarks/grid.py             # all 126 cells -> benchmarks/results/grid.md
    .venv/bin/python benchmarks/grid.py --algorithms cagrad --archs md --scenarios niid2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALGORITHMS = (
    "local",
    "fedavg",
    "fedprox",
    "fedamp",
    "fedrep",
    "pcgrad",
    "cagrad",
    "matfl",
    "fedmtl",
)
ARCHS = ("md", "tc")
SCENARIOS = ("iid1", "niid2", "niid3", "niid4", "niid5", "niid6", "niid7")
TWIN = {"twin_train": 48, "twin_test": 8, "twin_height": 48, "twin_width": 64}


def cell(algorithm: str, arch: str, scenario: str, work: Path) -> tuple[str, str]:
    """("finished" | "refused" | "FAILED", detail) for one run of one round."""
    from fmtlbench.config import build_config
    from fmtlbench.engine import Engine
    from fmtlbench.errors import IncompatibleError
    from fmtlbench.federation import build_federation
    from fmtlbench.registry import load_registry

    config = build_config(
        None,
        [
            {
                "scenario": scenario,
                "algorithm": {"name": algorithm},
                "arch": {"name": arch},
                "training": {
                    "rounds": 1,
                    "eval_initial": False,
                    "resolution": {"default": [32, 40]},
                    "eval_resolution": {"default": [32, 40]},
                },
                "data": {
                    "cache_dir": str(work / "cache"),
                    "datasets": {"nyudv2": dict(TWIN), "pascal-context": dict(TWIN)},
                },
                "checkpoint_dir": str(work / "checkpoints"),
            }
        ],
    )
    start = time.perf_counter()
    try:
        fed = build_federation(config, load_registry())
        Engine(fed).run_round(1)
    except IncompatibleError as exc:
        return "refused", str(exc)
    except Exception as exc:  # recorded, not raised: the grid must show every cell
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return "FAILED", last
    return "finished", f"{time.perf_counter() - start:.0f} s"


def table(results: dict[tuple[str, str, str], tuple[str, str]], archs, scenarios) -> str:
    """The grid as Markdown: one row per algorithm, one column per (arch, scenario)."""
    notes: list[str] = []
    head = ["algorithm", *(f"{a} {s}" for a in archs for s in scenarios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algorithm in dict.fromkeys(k[0] for k in results):
        row = [algorithm]
        for arch in archs:
            for scenario in scenarios:
                status, detail = results.get((algorithm, arch, scenario), ("-", ""))
                if status == "finished":
                    row.append(f"ok ({detail})")
                elif status == "-":
                    row.append("-")
                else:
                    if detail not in notes:
                        notes.append(detail)
                    label = "NULL" if status == "refused" else "FAILED"
                    row.append(f"{label} [{notes.index(detail) + 1}]")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *(f"[{i}] {note}" for i, note in enumerate(notes, 1))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=ALGORITHMS)
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "grid.md")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    results: dict[tuple[str, str, str], tuple[str, str]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in args.algorithms:
            for arch in args.archs:
                for scenario in args.scenarios:
                    key = (algorithm, arch, scenario)
                    results[key] = cell(algorithm, arch, scenario, Path(tmp))
                    print(*key, *results[key], flush=True)
    total = time.perf_counter() - started
    failed = sum(status == "FAILED" for status, _ in results.values())
    refused = sum(status == "refused" for status, _ in results.values())
    text = "\n".join(
        [
            "# One round of every algorithm x architecture x scenario (tiny size)",
            "",
            "ResNet-18 from scratch, default MD and TC decoders, 48x64 synthetic twins, 32x40 "
            "crops, one round with evaluation; `ok (t)` = finished in t seconds (build "
            "included), `NULL` = the algorithm refused the clients with the message below, "
            f"`FAILED` = a bug. {len(results)} cells, {refused} refused, {failed} failed, "
            f"{total / 60:.0f} min in all.",
            "",
            table(results, args.archs, args.scenarios),
            "",
            "Clients combine entries only under equal exchange names (`fmtlbench.exchange`): "
            "decoders of different tasks or datasets never meet, and when every client has one "
            "task the decoder bodies are shared and the heads stay private. Algorithms refuse "
            "clients only when they share no trainable parameter at all.",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
