"""Decoding the files of the multi-task layouts, with errors that name the file.

Every dataset reader goes through these few functions, so a missing, truncated or malformed
file is reported the same way everywhere: a ``DataError`` whose message holds the path. They
only ever open files for reading, so a read-only data root is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fmtlbench.errors import DataError


def read_image(path: Path, modes: Sequence[str], convert: str) -> np.ndarray:
    """Fully decode an image file as an array.

    PIL decodes lazily, so ``load`` is called here: that is what detects a truncated file.
    Images whose mode is not one of ``modes`` are converted to ``convert`` first.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img if img.mode in modes else img.convert(convert))
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array (never pickled objects: data files must not execute code)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read array file {path}: {exc}") from None


def read_mat(path: Path, variable: str) -> Any:
    """Variable ``variable`` of a MATLAB (v5) file, as ``scipy.io.loadmat`` returns it."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except Exception as exc:  # scipy raises many types on corrupt input; all mean "unreadable"
        raise DataError(f"cannot read MATLAB file {path}: {exc}".splitlines()[0]) from None
    if variable not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "nothing"
        raise DataError(f"{path} has no variable '{variable}' (it holds {found})")
    return content[variable]


def variant(folder: Path, sample_id: str, exts: Sequence[str]) -> Path:
    """The file of ``sample_id`` in ``folder`` with the first of ``exts`` that exists."""
    for ext in exts:
        path = folder / f"{sample_id}{ext}"
        if path.is_file():
            return path
    tried = ", ".join(str(folder / f"{sample_id}{ext}") for ext in exts)
    raise DataError(f"missing file for sample {sample_id!r}: none of {tried} exists")


def check_shape(path: Path, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` unchanged if it has ``shape`` (the image's size), else a ``DataError``."""
    if array.shape != shape:
        raise DataError(f"{path} has shape {array.shape}, expected {shape} (the image's size)")
    return array


def read_ids(path: Path, split: str) -> list[str]:
    """The non-empty lines of a split file."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not part of an id
    except FileNotFoundError:
        raise DataError(f"missing split file {path} (the {split!r} split)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    return [line.strip() for line in lines if line.strip()]


#: A decoded normal counts as valid only if its length is within this of 1. Zero vectors
#: (npy) and grey or black fill (png: 127,127,127 in real NYUD frames, 0,0,0 in the twins)
#: are far outside it; 8-bit quantisation moves the length by at most sqrt(3)/255.
NORMAL_TOLERANCE = 0.1


def unit_normals(vec: np.ndarray) -> np.ndarray:
    """HxWx3 decoded normals renormalised; vectors far from unit length become 255 (invalid)."""
    from fmtlbench.tasks import IGNORE

    length = np.linalg.norm(np.nan_to_num(vec, nan=0.0), axis=-1, keepdims=True)
    valid = np.abs(length - 1) <= NORMAL_TOLERANCE
    return np.where(valid, vec / np.where(valid, length, 1), IGNORE).astype(np.float32)
