"""What energy measurement costs a run: EnergyMeter start-up and the time of one lap.

The engine calls ``lap()`` once per round, so a lap must be negligible next to a round
(seconds to hours). This script times ``start()`` (hardware detection, once per run) and 50
laps around a 0.2 s busy loop, for codecarbon's two tracking modes, and records the figures.

    .venv/bin/python benchmarks/energy.py        # writes benchmarks/results/energy.md
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAPS = 50
WORK_S = 0.2


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(mode: str) -> dict[str, float | str]:
    from fmtlbench.config import EnergyConfig
    from fmtlbench.energy import EnergyMeter

    meter = EnergyMeter(EnergyConfig(country_iso_code="FRA"), tracking_mode=mode)
    started = time.perf_counter()
    meter.start()
    start_s = time.perf_counter() - started
    laps, kwh = [], 0.0
    for _ in range(LAPS):
        busy(WORK_S)
        t = time.perf_counter()
        energy, _ = meter.lap()
        laps.append(time.perf_counter() - t)
        kwh += energy
    method = meter.method()
    meter.stop()
    return {
        "mode": mode,
        "start_s": start_s,
        "lap_ms_mean": 1000 * statistics.fmean(laps),
        "lap_ms_max": 1000 * max(laps),
        "watts": kwh * 3.6e6 / (LAPS * WORK_S),
        "method": method,
    }


def main() -> None:
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
    rows = [measure(mode) for mode in ("machine", "process")]
    lines = [
        f"# EnergyMeter cost ({LAPS} laps around a {WORK_S} s busy loop on one core)",
        "",
        "| tracking mode | start() s | lap ms (mean) | lap ms (max) | estimated W |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['start_s']:.2f} | {r['lap_ms_mean']:.2f} | "
            f"{r['lap_ms_max']:.2f} | {r['watts']:.1f} |"
        )
    lines += ["", "Method recorded with each run on this machine:", ""]
    lines += [f"- {r['mode']}: {r['method']}" for r in rows]
    (HERE / "results" / "energy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
