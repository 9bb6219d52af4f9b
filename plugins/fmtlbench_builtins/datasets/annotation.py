"""PASCAL-Part annotation files (``human_parts/<id>.mat``) and PASCAL-Context label maps.

A PASCAL-Part file holds one MATLAB struct ``anno`` with fields ``imname`` (the image id) and
``objects``, a 1xN struct array with one element per object: ``class`` (name), ``class_ind``
(VOC class index, person = 15), ``mask`` (HxW, 1 on the object) and ``parts``, a 1xM struct
array with fields ``part_name`` and ``mask`` (empty for objects without part annotations).
``scipy.io.loadmat`` returns structs as numpy record arrays; fields are read here by name, so
files written by MATLAB (the real data) and by ``write_parts`` (the twin) take the same path.

Person part names map to the six part groups of the multi-task benchmarks (SPEC section 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmtlbench.errors import DataError
from fmtlbench.tasks import IGNORE

from .decoding import read_mat

PERSON = 15

#: PASCAL-Part person part name -> part group (0 is background). Names are the annotators':
#: l/r = left/right, u/l arm or leg = upper/lower, ebrow = eyebrow.
PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(
        ("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth"), 1
    ),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}
PART_GROUP_NAMES = ("background", "head", "torso", "upper arms", "lower arms", "upper legs",
                    "lower legs")  # fmt: skip


@dataclass
class AnnotatedObject:
    """One object of a PASCAL-Part file: its VOC class, mask and named part masks."""

    name: str
    class_index: int
    mask: np.ndarray
    parts: list[tuple[str, np.ndarray]] = field(default_factory=list)

    @property
    def is_person_with_parts(self) -> bool:
        return self.class_index == PERSON and bool(self.parts)


# --------------------------------------------------------------------------- reading
def _scalar(value: Any) -> Any:
    """The single element MATLAB wraps in 1x1 (or 1-element) arrays."""
    flat = np.asarray(value).ravel()
    if flat.size != 1:
        raise ValueError(f"expected one value, found {flat.size}")
    return flat[0]


def _records(value: Any) -> list[Any]:
    """Elements of a MATLAB struct array (empty arrays, e.g. ``[]`` for no parts, give [])."""
    array = np.asarray(value)
    if array.size == 0:
        return []
    if array.dtype.names is None:  # a 1x1 cell/object wrapper around the struct array
        return _records(_scalar(array))
    return list(array.ravel())


def read_parts(path: Path) -> list[AnnotatedObject]:
    """The objects of a PASCAL-Part file; any structural problem is a ``DataError``."""
    anno = read_mat(path, "anno")
    try:
        top = _records(anno)[0]
        objects = []
        for obj in _records(top["objects"]):
            parts = [
                (str(_scalar(part["part_name"])), np.asarray(part["mask"]) > 0)
                for part in _records(obj["parts"])
            ]
            objects.append(
                AnnotatedObject(
                    name=str(_scalar(obj["class"])),
                    class_index=int(_scalar(obj["class_ind"])),
                    mask=np.asarray(obj["mask"]) > 0,
                    parts=parts,
                )
            )
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        raise DataError(
            f"{path} is not a PASCAL-Part annotation (anno.objects with class, class_ind, "
            f"mask, parts): {exc}"
        ) from None
    return objects


def parts_map(objects: Sequence[AnnotatedObject], shape: tuple[int, int], path: Path) -> np.ndarray:
    """The part-group label map (uint8) of one image.

    Without a person that has part annotations the whole map is ignore (255): such images
    say nothing about parts. Otherwise pixels are background (0) except on people: each
    annotated part paints its group; person pixels no part covers (and people without part
    annotations) are ignore, since their part is unknown.
    """
    people = [obj for obj in objects if obj.is_person_with_parts]
    out = np.full(shape, IGNORE if not people else 0, dtype=np.uint8)
    if not people:
        return out
    for obj in objects:
        if obj.class_index == PERSON:
            _fits(obj.mask, shape, path)
            out[obj.mask] = IGNORE
    for obj in people:
        for name, mask in obj.parts:
            if name not in PART_GROUPS:
                raise DataError(
                    f"{path}: unknown person part '{name}'; known: {', '.join(PART_GROUPS)}"
                )
            out[_fits(mask, shape, path)] = PART_GROUPS[name]
    return out


def _fits(mask: np.ndarray, shape: tuple[int, int], path: Path) -> np.ndarray:
    if mask.shape != shape:
        raise DataError(f"{path} has a mask of shape {mask.shape}, expected {shape} (the image's)")
    return mask


def read_label_map(path: Path) -> np.ndarray:
    """``LabelMap`` of a PASCAL-Context file (full-detail class ids, 0 = unlabelled)."""
    labels = np.asarray(read_mat(path, "LabelMap"))
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"{path}: LabelMap must be a 2-D numeric array, got {labels.shape}")
    return labels


# --------------------------------------------------------------------------- writing
def write_parts(path: Path, image_id: str, objects: Sequence[AnnotatedObject]) -> None:
    """Write ``objects`` as a PASCAL-Part ``anno`` struct, laid out as MATLAB stores it."""
    part_type = [("part_name", object), ("mask", object)]
    obj_type = [("class", object), ("class_ind", object), ("mask", object), ("parts", object)]
    records = np.zeros((1, len(objects)), dtype=obj_type)
    for i, obj in enumerate(objects):
        parts: np.ndarray = np.zeros((0, 0))  # MATLAB's [] for objects without parts
        if obj.parts:
            parts = np.zeros((1, len(obj.parts)), dtype=part_type)
            for j, (name, mask) in enumerate(obj.parts):
                parts[0, j] = (name, mask.astype(np.uint8))
        records[0, i] = (
            obj.name,
            np.array([[obj.class_index]], dtype=np.uint8),
            obj.mask.astype(np.uint8),
            parts,
        )
    anno = {"imname": image_id, "objects": records}
    _save_mat(path, {"anno": anno}, oned_as="row")


def write_label_map(path: Path, labels: np.ndarray) -> None:
    """Write a PASCAL-Context ``LabelMap`` (uint16 class ids)."""
    _save_mat(path, {"LabelMap": np.asarray(labels, dtype=np.uint16)})


#: The MAT 5 header's text field: 116 bytes, space-padded as MATLAB writes it.
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by fmtlbench".ljust(116)


def _save_mat(path: Path, mdict: dict, **options: object) -> None:
    """``savemat`` with a fixed header text.

    scipy stamps the wall-clock time into the header, so two twins made from the same seed
    a second apart would differ byte for byte; twins must be reproducible files.
    """
    import io

    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, mdict, do_compression=True, **options)
    data = buffer.getvalue()
    Path(path).write_bytes(_MAT_HEADER_TEXT + data[len(_MAT_HEADER_TEXT) :])
