"""NYUD-v2 in the multi-task layout of SPEC section 2, and its procedurally rendered twin.

The reader turns every stored encoding into the raw sample contract of
``fmtlbench.components.Dataset`` (invalid pixels 255). It only reads: the data root may be a
read-only share. The writer of the synthetic twin produces exactly the layout the reader
expects (same folders, file types and encodings), so the reader is tested on the twin and on the
two real frames in ``../shared/realdata``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from fmtlbench import hookimpl
from fmtlbench.atomic import atomic_folder
from fmtlbench.components import Dataset, Params, Split
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.tasks import IGNORE, TaskSpec

from .decoding import check_shape, read_ids, read_image, read_npy, unit_normals, variant
from .scene import render_scene

SPLIT_FILES: dict[str, str] = {"train": "train.txt", "test": "val.txt"}
IMAGE_EXTS = (".png", ".jpg")
LABEL_EXTS = (".png", ".npy")


class NYUDv2Params(Params):
    """Size and encodings of the synthetic twin (the reader of real data has no parameters)."""

    twin_train: int = Field(160, gt=0, description="scenes in the twin's train split")
    twin_test: int = Field(40, gt=0, description="scenes in the twin's test split (val.txt)")
    twin_height: int = Field(96, ge=8, description="image height of the twin, pixels")
    twin_width: int = Field(128, ge=8, description="image width of the twin, pixels")
    twin_image_format: Literal["png", "jpg"] = Field("png", description="image file type")
    twin_label_format: Literal["png", "npy"] = Field(
        "png", description="file type of the twin's normals and edge labels"
    )

    @model_validator(mode="after")
    def _not_huge(self) -> NYUDv2Params:
        if self.twin_height * self.twin_width > 4096 * 4096:
            raise ValueError("twin_height x twin_width is too large (max 4096 x 4096)")
        return self


# --------------------------------------------------------------------------- file decoding
def _semseg(path: Path, hw: tuple[int, int]) -> np.ndarray:
    # Label ids are pixel values (or palette indices), never colours: keep single-channel modes.
    raw = check_shape(path, read_image(path, ("L", "P", "I", "I;16"), "L"), hw)
    if raw.size and (raw.max() > 40 or raw.min() < 0):
        bad = raw.max() if raw.max() > 40 else raw.min()
        raise DataError(f"{path} holds label {bad}; NYUD-v2 labels are 0 (void) .. 40")
    return np.where(raw == 0, IGNORE, raw.astype(np.int64) - 1).astype(np.uint8)


def _depth(path: Path, hw: tuple[int, int]) -> np.ndarray:
    depth = check_shape(path, read_npy(path), hw).astype(np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, IGNORE).astype(np.float32)


def _normals(path: Path, hw: tuple[int, int]) -> np.ndarray:
    if path.suffix == ".png":
        raw = check_shape(path, read_image(path, ("RGB",), "RGB"), (*hw, 3))
        return unit_normals(raw.astype(np.float32) * (2 / 255) - 1)
    return unit_normals(check_shape(path, read_npy(path), (*hw, 3)).astype(np.float32))


def _edge(path: Path, hw: tuple[int, int]) -> np.ndarray:
    if path.suffix == ".png":
        raw = check_shape(path, read_image(path, ("L",), "L"), hw).astype(np.float32) / 255
    else:
        raw = check_shape(path, read_npy(path), hw).astype(np.float32)
    return (raw > 0.5).astype(np.float32)


#: Label folder, accepted extensions and decoder of each task.
LABELS: dict[str, tuple[str, tuple[str, ...], Callable[[Path, tuple[int, int]], np.ndarray]]] = {
    "semseg": ("segmentation", (".png",), _semseg),
    "depth": ("depth", (".npy",), _depth),
    "normals": ("normals", LABEL_EXTS, _normals),
    "edge": ("edge", LABEL_EXTS, _edge),
}


# --------------------------------------------------------------------------- the dataset
class NYUDv2(Dataset):
    """NYUD-v2 indoor scenes: semseg (40 classes), depth, surface normals and edges."""

    name = "nyudv2"
    folder = "NYUDv2"
    Params = NYUDv2Params
    tasks: ClassVar[dict[str, TaskSpec]] = {
        "semseg": TaskSpec("semseg", channels=40, classes=40),
        "depth": TaskSpec("depth", channels=1),
        "normals": TaskSpec("normals", channels=3),
        "edge": TaskSpec("edge", channels=1, pos_weight=0.8, match_distance=0.011),
    }
    expected_sizes: ClassVar[dict[str, int]] = {"train": 795, "test": 654}
    #: The multi-task archive most code bases use (it unpacks to ``NYUD_MT/``, renamed to
    #: ``folder`` by ``fmtlbench data download``); its checksum is not published.
    archive_url: ClassVar[str | None] = (
        "https://data.vision.ee.ethz.ch/kmaninis/share/MTL/NYUD_MT.tgz"
    )
    archive_sha256: ClassVar[str | None] = None
    #: Folders ``fmtlbench data verify`` expects before it looks at single files.
    layout: ClassVar[tuple[str, ...]] = (
        "gt_sets",
        "images",
        "segmentation",
        "depth",
        "normals",
        "edge",
    )

    def ids(self, split: Split) -> list[str]:
        if split not in SPLIT_FILES:
            raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
        return read_ids(self.root / "gt_sets" / SPLIT_FILES[split], split)

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        unknown = [task for task in tasks if task not in self.tasks]
        if unknown:
            raise ConfigError(
                f"dataset 'nyudv2' has no task {unknown[0]!r}; its tasks: {', '.join(self.tasks)}"
            )
        path = variant(self.root / "images", sample_id, IMAGE_EXTS)
        image = read_image(path, ("RGB",), "RGB")
        out = {"image": np.ascontiguousarray(image, dtype=np.uint8)}
        hw = image.shape[:2]
        for task in tasks:
            folder, exts, decode = LABELS[task]
            out[task] = decode(variant(self.root / folder, sample_id, exts), hw)
        return out

    # ----------------------------------------------------------------------- the twin
    @classmethod
    def synthesize(cls, out: Path, params: Params, seed: int = 0) -> None:
        """Render ``twin_train + twin_test`` scenes into ``out`` in the real layout.

        Files are written into a temporary sibling folder that is renamed to ``out`` at the
        end, so an interrupted generation leaves no half-written twin behind.
        """
        if not isinstance(params, NYUDv2Params):
            raise ConfigError(f"nyudv2.synthesize needs NYUDv2.Params, got {type(params).__name__}")
        with atomic_folder(Path(out)) as scratch:
            scratch.mkdir()
            _write_twin(scratch, params, seed)


def _write_twin(root: Path, params: NYUDv2Params, seed: int) -> None:
    count = params.twin_train + params.twin_test
    ids = [f"{index:06d}" for index in range(count)]
    folders = ("gt_sets", "images", "segmentation", "depth", "normals", "edge")
    for name in folders:
        (root / name).mkdir()
    (root / "gt_sets" / "train.txt").write_text("".join(i + "\n" for i in ids[: params.twin_train]))
    (root / "gt_sets" / "val.txt").write_text("".join(i + "\n" for i in ids[params.twin_train :]))
    labels_png = params.twin_label_format == "png"
    for index, sample_id in enumerate(ids):
        scene = render_scene(seed * 1_000_003 + index, params.twin_height, params.twin_width)
        image = Image.fromarray(scene["image"])
        if params.twin_image_format == "png":
            image.save(root / "images" / f"{sample_id}.png")
        else:
            image.save(root / "images" / f"{sample_id}.jpg", quality=95, subsampling=0)
        semseg = np.where(scene["semseg"] == IGNORE, 0, scene["semseg"].astype(np.int64) + 1)
        Image.fromarray(semseg.astype(np.uint8)).save(root / "segmentation" / f"{sample_id}.png")
        depth = np.where(scene["depth"] == IGNORE, 0, scene["depth"]).astype(np.float32)
        np.save(root / "depth" / f"{sample_id}.npy", depth)
        normals = scene["normals"]
        invalid = (normals == IGNORE).any(axis=-1, keepdims=True)
        edge = scene["edge"]
        if labels_png:
            encoded = np.round((normals + 1) / 2 * 255).clip(0, 255)
            encoded = np.where(invalid, 0, encoded).astype(np.uint8)
            Image.fromarray(encoded).save(root / "normals" / f"{sample_id}.png")
            Image.fromarray((edge * 255).astype(np.uint8)).save(root / "edge" / f"{sample_id}.png")
        else:
            np.save(root / "normals" / f"{sample_id}.npy", np.where(invalid, 0, normals))
            np.save(root / "edge" / f"{sample_id}.npy", edge.astype(np.float32))


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [NYUDv2]
