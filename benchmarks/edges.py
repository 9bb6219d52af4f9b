"""CPU time of edge odsF/oisF per test image against the threshold count, at the tiny sizes and
on the real NYUD frames (425x560). Print the table and copy it to ``results/edges.md``.

Why: odsF runs pyEdgeEval's pixel matching once per threshold and image, so its cost grows
with both; the default threshold count (``training.metrics.edge_thresholds``) must keep
evaluation affordable. One torch thread, CPU time (``time.process_time``), ratios within one
run; the load average is printed because the machine is shared. Uses the real NYUD frames when
``../shared/realdata/NYUDv2-sample`` (or ``FMTLBENCH_REALDATA``) is there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from fmtlbench import edges
from fmtlbench.metrics import make_meter
from fmtlbench.tasks import TaskSpec


def per_image(maps: torch.Tensor, thresholds: int) -> float:
    """CPU seconds per image of one odsF/oisF meter pass over ``maps`` (perfect predictions)."""
    spec = TaskSpec("edge", channels=1, match_distance=0.011, odsf_thresholds=thresholds)
    meter = make_meter(spec)
    start = time.process_time()
    meter.update((maps * 2 - 1) * 10, maps)
    meter.compute()
    return (time.process_time() - start) / len(maps)


def real_frames() -> torch.Tensor | None:
    from PIL import Image

    here = Path(__file__).resolve().parents[1]
    candidates = [Path(os.environ.get("FMTLBENCH_REALDATA", "/nonexistent"))]
    candidates += [here / ".." / "shared" / "realdata", here / ".." / ".." / "shared" / "realdata"]
    for root in candidates:
        folder = root / "NYUDv2-sample" / "edge"
        if folder.is_dir():
            arrays = [np.array(Image.open(p)) > 0 for p in sorted(folder.glob("*.png"))]
            return torch.from_numpy(np.stack(arrays).astype(np.float32))[:, None]
    return None


def main() -> None:
    torch.set_num_threads(1)
    if not edges.available():
        raise SystemExit(edges.missing_message())
    print(f"load average at start: {os.getloadavg()}")
    g = torch.Generator().manual_seed(0)
    sizes = {"16x20": (16, 20), "32x40": (32, 40), "64x80": (64, 80)}
    print("| maps | thresholds | CPU s per image |\n|---|---|---|")
    for name, (h, w) in sizes.items():
        maps = (torch.rand(12, 1, h, w, generator=g) > 0.85).float()
        for t in (9, 99):
            print(f"| random {name} | {t} | {per_image(maps, t):.4f} |")
    real = real_frames()
    if real is not None:
        for t in (9, 99):
            print(f"| real NYUD 425x560 | {t} | {per_image(real, t):.2f} |")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
