"""PASCAL-Context in the multi-task layout of SPEC section 2, and its procedurally rendered twin.

Layout (under ``PASCALContext/``): ``ImageSets/Context/{train,val}.txt``; ``JPEGImages/<id>.jpg``;
``semseg/VOC12/<id>.png``, else ``semseg/pascal-context/<id>.png`` (VOC classes 0..20, 255
void); ``human_parts/<id>.mat`` (PASCAL-Part ``anno`` struct, see ``annotation``);
``pascal-context/trainval/<id>.mat`` (``LabelMap``, whose thinned Laplacian gives the edges);
``normals_distill/<id>.png`` (n = 2v/255 - 1) and ``sal_distill/<id>.png`` (salient where
v/255 > 0.5). The reader only reads, and only the files of the requested tasks; derived facts
(which images hold people) go to the dataset's cache folder. The twin writer produces the same
files, ``.mat`` structs included, so twins go through exactly the reader real data goes through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from fmtlbench import hookimpl
from fmtlbench.atomic import atomic_folder
from fmtlbench.components import Dataset, Params, Split
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.tasks import IGNORE, TaskSpec

from .annotation import parts_map, read_label_map, read_parts, write_label_map, write_parts
from .contour import label_edges
from .decoding import check_shape, read_ids, read_image, unit_normals
from .persons import PersonIndex
from .photo import render_photo

SPLIT_FILES: dict[str, str] = {"train": "train.txt", "test": "val.txt"}
SEMSEG_FOLDERS = ("semseg/VOC12", "semseg/pascal-context")
VOC_CLASSES = 21


class PascalContextParams(Params):
    """Size and encodings of the synthetic twin (the reader of real data has no parameters)."""

    twin_train: int = Field(160, gt=0, description="photos in the twin's train split")
    twin_test: int = Field(40, gt=0, description="photos in the twin's test split (val.txt)")
    twin_height: int = Field(96, ge=8, description="image height of the twin, pixels")
    twin_width: int = Field(128, ge=8, description="image width of the twin, pixels")
    twin_voc12_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="share of twin photos whose semseg is in semseg/VOC12 (palette PNG with a "
        "void band on object boundaries, like VOC); the rest go to semseg/pascal-context",
    )

    @model_validator(mode="after")
    def _not_huge(self) -> PascalContextParams:
        if self.twin_height * self.twin_width > 4096 * 4096:
            raise ValueError("twin_height x twin_width is too large (max 4096 x 4096)")
        return self


# --------------------------------------------------------------------------- the dataset
class PascalContext(Dataset):
    """PASCAL-Context photos: semseg (21 VOC classes), human parts, normals, edges, saliency."""

    name = "pascal-context"
    folder = "PASCALContext"
    Params = PascalContextParams
    tasks: ClassVar[dict[str, TaskSpec]] = {
        "semseg": TaskSpec("semseg", channels=VOC_CLASSES, classes=VOC_CLASSES),
        "parts": TaskSpec("parts", channels=7, classes=7),
        "normals": TaskSpec("normals", channels=3),
        "edge": TaskSpec("edge", channels=1, pos_weight=0.95, match_distance=0.0075),
        "saliency": TaskSpec("saliency", channels=1, pos_weight=None),
    }
    expected_sizes: ClassVar[dict[str, int]] = {"train": 4998, "test": 5105}
    #: The multi-task archive most code bases use (it unpacks to ``PASCAL_MT/``, renamed to
    #: ``folder`` by ``fmtlbench data download``); its checksum is not published.
    archive_url: ClassVar[str | None] = (
        "https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz"
    )
    archive_sha256: ClassVar[str | None] = None
    #: Folders ``fmtlbench data verify`` expects before it looks at single files.
    layout: ClassVar[tuple[str, ...]] = (
        "ImageSets/Context", "JPEGImages", "semseg", "human_parts", "pascal-context/trainval",
        "normals_distill", "sal_distill",
    )  # fmt: skip

    def __init__(
        self, params: Params | None, root: Path, *, synthetic: bool, cache: Path | None = None
    ) -> None:
        super().__init__(params, root, synthetic=synthetic, cache=cache)
        self._persons: PersonIndex | None = None

    def ids(self, split: Split) -> list[str]:
        if split not in SPLIT_FILES:
            raise ConfigError(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
        return read_ids(self.root / "ImageSets" / "Context" / SPLIT_FILES[split], split)

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        unknown = [task for task in tasks if task not in self.tasks]
        if unknown:
            raise ConfigError(
                f"dataset 'pascal-context' has no task {unknown[0]!r}; "
                f"its tasks: {', '.join(self.tasks)}"
            )
        image = read_image(self.root / "JPEGImages" / f"{sample_id}.jpg", ("RGB",), "RGB")
        out = {"image": np.ascontiguousarray(image, dtype=np.uint8)}
        hw = image.shape[:2]
        for task in tasks:
            out[task] = READERS[task](self, sample_id, hw)
        return out

    @property
    def persons(self) -> PersonIndex:
        """The cached answers of ``has_person`` (in the cache folder, never the data root)."""
        if self._persons is None:
            self._persons = PersonIndex(
                self.root,
                self.root / "human_parts",
                lambda path: any(obj.is_person_with_parts for obj in read_parts(path)),
                self.cache,
            )
        return self._persons

    def has_person(self, sample_id: str) -> bool:
        """Whether the image has a part-annotated person (else its parts map is all ignore)."""
        try:
            return self.persons.has_person(sample_id)
        except FileNotFoundError:
            raise DataError(f"missing file {self.persons.file(sample_id)}") from None

    # ----------------------------------------------------------------------- the twin
    @classmethod
    def synthesize(cls, out: Path, params: Params, seed: int = 0) -> None:
        """Render ``twin_train + twin_test`` photos into ``out`` in the real layout, through a
        temporary sibling folder renamed at the end (no half-written twin on interruption)."""
        if not isinstance(params, PascalContextParams):
            raise ConfigError(
                f"pascal-context.synthesize needs PascalContext.Params, got {type(params).__name__}"
            )
        with atomic_folder(Path(out)) as scratch:
            scratch.mkdir()
            _write_twin(scratch, params, seed)


# --------------------------------------------------------------------------- task readers
def _semseg(data: PascalContext, sample_id: str, hw: tuple[int, int]) -> np.ndarray:
    path = _semseg_file(data.root, sample_id)
    # Class ids are pixel values or palette indices (VOC's PNGs), never colours.
    labels = check_shape(path, read_image(path, ("L", "P"), "L"), hw)
    bad = labels[(labels >= VOC_CLASSES) & (labels != IGNORE)]
    if bad.size:
        raise DataError(f"{path} holds label {bad[0]}; VOC labels are 0..20 and 255 (void)")
    return labels.astype(np.uint8)


def _semseg_file(root: Path, sample_id: str) -> Path:
    """``semseg/VOC12/<id>.png`` where VOC has the image, else ``semseg/pascal-context``."""
    candidates = [root / folder / f"{sample_id}.png" for folder in SEMSEG_FOLDERS]
    for path in candidates:
        if path.is_file():
            return path
    tried = " nor ".join(str(path) for path in candidates)
    raise DataError(f"missing semseg file for sample {sample_id!r}: neither {tried} exists")


def _parts(data: PascalContext, sample_id: str, hw: tuple[int, int]) -> np.ndarray:
    index = data.persons
    if index.lookup(sample_id) is False:
        return np.full(hw, IGNORE, dtype=np.uint8)
    path = index.file(sample_id)
    objects = read_parts(path)
    index.record(sample_id, any(obj.is_person_with_parts for obj in objects))
    return parts_map(objects, hw, path)


def _edge(data: PascalContext, sample_id: str, hw: tuple[int, int]) -> np.ndarray:
    path = data.root / "pascal-context" / "trainval" / f"{sample_id}.mat"
    return label_edges(check_shape(path, read_label_map(path), hw))


def _normals(data: PascalContext, sample_id: str, hw: tuple[int, int]) -> np.ndarray:
    path = data.root / "normals_distill" / f"{sample_id}.png"
    raw = check_shape(path, read_image(path, ("RGB",), "RGB"), (*hw, 3))
    return unit_normals(raw.astype(np.float32) * (2 / 255) - 1)


def _saliency(data: PascalContext, sample_id: str, hw: tuple[int, int]) -> np.ndarray:
    path = data.root / "sal_distill" / f"{sample_id}.png"
    raw = check_shape(path, read_image(path, ("L",), "L"), hw)
    return (raw.astype(np.float32) / 255 > 0.5).astype(np.float32)


READERS: dict[str, Callable[[PascalContext, str, tuple[int, int]], np.ndarray]] = {
    "semseg": _semseg,
    "parts": _parts,
    "edge": _edge,
    "normals": _normals,
    "saliency": _saliency,
}


# --------------------------------------------------------------------------- twin writer
def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (class i's colour spreads the bits of i over R, G and B)."""
    palette = []
    for index in range(256):
        rgb, code = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        palette += rgb
    return palette


def void_band(labels: np.ndarray) -> np.ndarray:
    """Pixels next to (8-neighbourhood) a different label where an object is involved: VOC
    marks such boundary pixels void (255) because annotators could not place them."""
    padded = np.pad(labels, 1, mode="edge")
    h, w = labels.shape
    band = np.zeros(labels.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            other = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            band |= (other != labels) & ((other != 0) | (labels != 0))
    return band


def twin_ids(params: PascalContextParams) -> list[str]:
    return [f"2008_{index:06d}" for index in range(params.twin_train + params.twin_test)]


def in_voc12(index: int, share: float) -> bool:
    """Whether twin photo ``index`` has its semseg in ``semseg/VOC12`` (evenly spread)."""
    return int((index + 1) * share) > int(index * share)


def _write_twin(root: Path, params: PascalContextParams, seed: int) -> None:
    ids = twin_ids(params)
    folders = ("ImageSets/Context", "JPEGImages", *SEMSEG_FOLDERS, "human_parts",
               "pascal-context/trainval", "normals_distill", "sal_distill")  # fmt: skip
    for name in folders:
        (root / name).mkdir(parents=True)
    sets = root / "ImageSets" / "Context"
    (sets / "train.txt").write_text("".join(i + "\n" for i in ids[: params.twin_train]))
    (sets / "val.txt").write_text("".join(i + "\n" for i in ids[params.twin_train :]))
    palette = voc_palette()
    for index, sample_id in enumerate(ids):
        photo = render_photo(seed * 1_000_003 + index, params.twin_height, params.twin_width)
        Image.fromarray(photo["image"]).save(
            root / "JPEGImages" / f"{sample_id}.jpg", quality=95, subsampling=0
        )
        semseg = photo["semseg"]
        if in_voc12(index, params.twin_voc12_share):
            voc_ids = np.where(void_band(semseg), IGNORE, semseg).astype(np.uint8)
            voc = Image.frombytes("P", voc_ids.shape[::-1], voc_ids.tobytes())
            voc.putpalette(palette)
            voc.save(root / SEMSEG_FOLDERS[0] / f"{sample_id}.png")
        else:
            Image.fromarray(semseg).save(root / SEMSEG_FOLDERS[1] / f"{sample_id}.png")
        write_parts(root / "human_parts" / f"{sample_id}.mat", sample_id, photo["objects"])
        write_label_map(root / "pascal-context" / "trainval" / f"{sample_id}.mat",
                        photo["label_map"])  # fmt: skip
        normals = photo["normals"]
        invalid = (normals == IGNORE).any(axis=-1, keepdims=True)
        encoded = np.where(invalid, 0, np.round((normals + 1) / 2 * 255).clip(0, 255))
        name = f"{sample_id}.png"
        Image.fromarray(encoded.astype(np.uint8)).save(root / "normals_distill" / name)
        saliency = (photo["saliency"] * 255).astype(np.uint8)
        Image.fromarray(saliency).save(root / "sal_distill" / name)


@hookimpl
def register_datasets() -> list[type[Dataset]]:
    return [PascalContext]
