"""A toy third-party plugin, written as a package author would write one against fmtlbench's
public API: a task kind ``heatmap`` (keypoint heat maps), a dataset ``toyspots`` that labels
it beside the built-in ``semseg`` kind, and a scenario ``toy-iid``.

``tests/test_task_kind_plugin.py`` installs this module as the distribution
``fmtlbench-toy-heatmaps`` (a ``.dist-info`` folder with an ``fmtlbench`` entry point), so it
is found by the same entry-point machinery as any installed plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import Dataset, Params, Split, TaskKind
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.metrics import Meter
from fmtlbench.scenario import ClientGroup, ScenarioSpec
from fmtlbench.tasks import IGNORE, TaskSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

#: A predicted peak counts as a hit within this many pixels (Chebyshev) of the target's peak.
PEAK_TOLERANCE = 2


# --------------------------------------------------------------------------- the task kind
def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``sigmoid(pred)`` against ``target`` over the ``valid`` pixels;
    0 with a gradient path when none is valid."""
    import torch

    squared = (torch.sigmoid(pred) - torch.where(valid, target, torch.zeros_like(target))) ** 2
    return torch.where(valid, squared, torch.zeros_like(squared)).sum() / valid.sum().clamp(min=1)


def peak_hits(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[int, int]:
    """(images whose predicted peak lies within ``PEAK_TOLERANCE`` px of the target's peak,
    images with a valid pixel), both over valid pixels only."""
    import torch

    n, _, _, w = target.shape
    low = torch.finfo(torch.float32).min
    score = torch.where(valid, pred.float(), torch.full_like(pred, low, dtype=torch.float32))
    truth = torch.where(valid, target.float(), torch.full_like(target, low, dtype=torch.float32))
    guess_at = score.reshape(n, -1).argmax(dim=1)
    truth_at = truth.reshape(n, -1).argmax(dim=1)
    dy = (guess_at // w - truth_at // w).abs()
    dx = (guess_at % w - truth_at % w).abs()
    labelled = valid.reshape(n, -1).any(dim=1)
    hits = (torch.maximum(dx, dy) <= PEAK_TOLERANCE) & labelled
    return int(hits.sum()), int(labelled.sum())


class HeatmapMeter(Meter):
    """Pooled MSE of sigmoid(pred) over valid pixels and the share of images (in percent)
    whose predicted peak lies within ``PEAK_TOLERANCE`` px of the target's."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.squared = 0.0
        self.pixels = 0
        self.hits = 0
        self.images = 0

    def _accumulate(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        import torch

        valid = self.spec.kind.valid(target)
        err = torch.sigmoid(pred.double()) - target.double()
        self.squared += float(torch.where(valid, err * err, torch.zeros_like(err)).sum())
        self.pixels += int(valid.sum())
        hits, images = peak_hits(pred, target, valid)
        self.hits += hits
        self.images += images

    def compute(self) -> dict[str, float]:
        nan = float("nan")
        return {
            "mse": self.squared / self.pixels if self.pixels else nan,
            "peak_acc": 100.0 * self.hits / self.images if self.images else nan,
        }


class Heatmap(TaskKind):
    """Keypoint heat maps in [0, 1]: MSE of sigmoid(pred), peak accuracy within 2 px."""

    name = "heatmap"
    loss_weight = 1.0
    metrics: ClassVar[dict[str, bool]] = {"mse": True, "peak_acc": False}
    primary = "mse"
    alternatives = ("peak_acc",)
    display_scale: ClassVar[dict[str, float]] = {"mse": 1000.0}

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return heatmap_loss(pred, target, self.valid(target))

    def meter(self, spec: TaskSpec) -> Any:
        return HeatmapMeter(spec)

    # flip: the default (the mirrored map) is right for a heat map of positions


# --------------------------------------------------------------------------- the dataset
class ToySpotsParams(Params):
    """Size of the synthetic twin."""

    twin_train: int = Field(16, gt=0, description="images in train.txt")
    twin_test: int = Field(4, gt=0, description="images in test.txt")
    twin_height: int = Field(32, ge=8, description="image height, pixels")
    twin_width: int = Field(40, ge=8, description="image width, pixels")


SPLIT_FILES = {"train": "train.txt", "test": "test.txt"}
#: Gaussian spot radius (sigma, pixels) and the heat above which a pixel is "spot".
SIGMA = 2.5
SPOT_LEVEL = 0.5


def render(rng: np.random.Generator, h: int, w: int) -> dict[str, np.ndarray]:
    """One scene: 1-3 bright Gaussian spots on a dark noisy background, their heat map, the
    spot/background mask and a small void rectangle (unlabelled in both labels)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    heat = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(3, h - 3), rng.uniform(3, w - 3)
        heat = np.maximum(heat, np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * SIGMA**2)))
    colour = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    noise = rng.normal(0.1, 0.03, size=(h, w, 3)).astype(np.float32)
    image = np.clip(noise + heat[..., None] * colour, 0, 1)
    void = np.zeros((h, w), bool)
    vy, vx = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
    void[vy : vy + 3, vx : vx + 3] = True
    return {"image": (image * 255).round().astype(np.uint8), "heat": heat, "void": void}


class ToySpots(Dataset):
    """Toy spots: bright Gaussian spots; semseg (spot / background) and heat maps."""

    name = "toyspots"
    folder = "ToySpots"
    Params = ToySpotsParams
    tasks: ClassVar[dict[str, TaskSpec]] = {
        "semseg": TaskSpec("semseg", channels=2, classes=2),
        "heatmap": TaskSpec("heatmap", channels=1),
    }
    layout: ClassVar[tuple[str, ...]] = ("images", "semseg", "heatmap")

    @classmethod
    def synthesize(cls, out: Path, params: Params, seed: int = 0) -> None:
        """Write the twin: ``images/<id>.png`` RGB, ``semseg/<id>.png`` (0 void, 1 background,
        2 spot), ``heatmap/<id>.npy`` float32 (NaN void), ``train.txt`` and ``test.txt``."""
        if not isinstance(params, ToySpotsParams):
            raise ConfigError(f"toyspots.synthesize needs ToySpots.Params, not {params!r}")
        out = Path(out)
        for name in cls.layout:
            (out / name).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        ids = [f"spot{i:04d}" for i in range(params.twin_train + params.twin_test)]
        for sample_id in ids:
            scene = render(rng, params.twin_height, params.twin_width)
            Image.fromarray(scene["image"]).save(out / "images" / f"{sample_id}.png")
            mask = np.where(scene["heat"] > SPOT_LEVEL, 2, 1).astype(np.uint8)
            mask[scene["void"]] = 0
            Image.fromarray(mask).save(out / "semseg" / f"{sample_id}.png")
            heat = np.where(scene["void"], np.nan, scene["heat"]).astype(np.float32)
            np.save(out / "heatmap" / f"{sample_id}.npy", heat)
        (out / "train.txt").write_text("".join(i + "\n" for i in ids[: params.twin_train]))
        (out / "test.txt").write_text("".join(i + "\n" for i in ids[params.twin_train :]))

    def ids(self, split: Split) -> list[str]:
        if split not in SPLIT_FILES:
            raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
        path = self.root / SPLIT_FILES[split]
        if not path.is_file():
            raise DataError(f"{path} is missing: not a toyspots folder")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ConfigError(f"dataset 'toyspots' has no task {unknown[0]!r}")
        path = self.root / "images" / f"{sample_id}.png"
        if not path.is_file():
            raise DataError(f"toyspots has no sample {sample_id!r} (no file {path})")
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"), dtype=np.uint8)
        out = {"image": np.ascontiguousarray(image)}
        hw = image.shape[:2]
        if "semseg" in tasks:
            with Image.open(self.root / "semseg" / f"{sample_id}.png") as img:
                raw = np.asarray(img.convert("L"))
            if raw.shape != hw or raw.max() > 2:
                raise DataError(f"{sample_id}: semseg is not an {hw} map of 0..2")
            out["semseg"] = np.where(raw == 0, IGNORE, raw.astype(np.int64) - 1).astype(np.uint8)
        if "heatmap" in tasks:
            heat = np.load(self.root / "heatmap" / f"{sample_id}.npy")
            if heat.shape != hw:
                raise DataError(f"{sample_id}: heat map of shape {heat.shape}, image {hw}")
            out["heatmap"] = np.where(np.isfinite(heat), heat, IGNORE).astype(np.float32)
        return out


# --------------------------------------------------------------------------- the scenario
SCENARIO = ScenarioSpec(
    name="toy-iid",
    title="TOY",
    description="2 multi-task toyspots clients (semseg + heatmap) with equal shares",
    groups=[ClientGroup(dataset="toyspots", tasks="all", count=2)],
)


@hookimpl
def register_tasks() -> list[type[TaskKind]]:
    return [Heatmap]


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [ToySpots]


@hookimpl
def register_scenarios() -> list[ScenarioSpec]:
    return [SCENARIO]
