"""A picture of a dataset: a few samples, one row each, with every task's label beside the image.

Meant for a person checking data by eye (are labels aligned with the scenes? are the encodings
right?), so labels are drawn as decoded by the dataset's reader, invalid pixels included, each
as its task kind draws it (``TaskKind.picture``) with the painters below: class maps with a
fixed palette (ignore in white), scalar maps with a colour map (invalid in black), vectors as
RGB = (n + 1) / 2 (invalid in black), binary maps in grey levels. Uses
matplotlib's Agg canvas directly, so no GUI backend or global pyplot state is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmtlbench.tasks import IGNORE

IGNORE_COLOUR = (1.0, 1.0, 1.0)


def class_palette() -> np.ndarray:
    """256 x 3 colours in [0, 1]: class i's colour spreads the bits of i over R, G and B (the
    PASCAL VOC convention), so neighbouring ids get clearly different colours."""
    palette = np.zeros((256, 3))
    for index in range(256):
        code = index
        for bit in range(8):
            for channel in range(3):
                palette[index, channel] += ((code >> channel) & 1) << (7 - bit)
            code >>= 3
    palette /= 255
    palette[IGNORE] = IGNORE_COLOUR
    return palette


def classes(label: np.ndarray) -> np.ndarray:
    return class_palette()[np.asarray(label, dtype=np.int64).clip(0, 255)]


def colour_map(label: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    valid = label != IGNORE
    out = np.zeros((*label.shape, 3))
    if valid.any():
        low, high = label[valid].min(), label[valid].max()
        scaled = (label - low) / max(high - low, 1e-6)
        out[valid] = colormaps["viridis"](scaled[valid])[:, :3]
    return out


def vectors(label: np.ndarray) -> np.ndarray:
    invalid = (label == IGNORE).any(axis=-1)
    out = np.clip((np.asarray(label, dtype=np.float64) + 1) / 2, 0, 1)
    out[invalid] = 0.0
    return out


def grey(label: np.ndarray) -> np.ndarray:
    value = np.where(label == IGNORE, 0.5, np.clip(label, 0, 1)).astype(np.float64)
    return np.repeat(value[..., None], 3, axis=-1)


def by_shape(label: np.ndarray) -> np.ndarray:
    """The default picture of a label: vectors for H x W x C, a palette for integer class
    maps, grey levels otherwise."""
    if label.ndim == 3:
        return vectors(label)
    return classes(label) if np.issubdtype(label.dtype, np.integer) else grey(label)


def render(task: str, label: np.ndarray) -> np.ndarray:
    """An HxWx3 RGB picture (floats in [0, 1]) of one task's label, as its kind draws it."""
    from fmtlbench.tasks import UnknownTaskError, kind_of

    try:
        kind = kind_of(task)
    except UnknownTaskError:
        return by_shape(label)
    return kind.picture(label)


def write_gallery(
    samples: Sequence[tuple[str, dict[str, np.ndarray]]],
    tasks: Sequence[str],
    out: Path,
    title: str,
) -> Path:
    """Write a PNG grid: a row per ``(id, raw sample)``, columns image then ``tasks``; a task
    missing from a sample (its file could not be read) gets a cell that says so."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = ["image", *tasks]
    height, width = samples[0][1]["image"].shape[:2]
    cell = 2.4
    figure = Figure(figsize=(cell * len(columns), cell * height / width * len(samples) + 0.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(samples), len(columns), squeeze=False)
    for row, (sample_id, sample) in enumerate(samples):
        for col, name in enumerate(columns):
            ax = axes[row][col]
            if name in sample:
                picture = sample["image"] if name == "image" else render(name, sample[name])
                ax.imshow(picture, interpolation="nearest")
            else:  # an unreadable label: say so in its cell, keep the rest of the grid
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center", color="red")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
            if col == 0:
                ax.set_ylabel(sample_id, fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out
