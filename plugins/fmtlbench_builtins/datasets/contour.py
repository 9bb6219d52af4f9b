"""Edge ground truth of PASCAL-Context: the thinned non-zero Laplacian of its label map.

Multi-task code bases derive PASCAL's edges from the full-detail label map (``LabelMap`` of
``pascal-context/trainval/<id>.mat``): a pixel is a candidate wherever the 4-neighbour
Laplacian of the label ids is non-zero (both sides of every boundary, so two pixels wide), and
morphological thinning reduces that band to one pixel while keeping its topology. We compute
both ourselves (no OpenCV / scikit-image dependency):

- the Laplacian with the kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] and a border reflected
  about the edge pixel (OpenCV's default ``BORDER_REFLECT_101``, scipy's ``mode="mirror"``);
- thinning by the two-subiteration parallel algorithm of Guo and Hall (1989), run to a fixed
  point, the algorithm behind MATLAB's ``bwmorph(..., 'thin', Inf)`` and scikit-image's
  ``thin``.
"""

from __future__ import annotations

import numpy as np

LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)

#: (row, column) offsets of the eight neighbours x1..x8: east first, then counter-clockwise.
NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def laplacian(labels: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of a 2-D label map, borders reflected about the edge pixel."""
    from scipy.ndimage import convolve

    return convolve(np.asarray(labels, dtype=np.float64), LAPLACIAN, mode="mirror")


def _removable_table(first: bool) -> np.ndarray:
    """For each of the 256 neighbourhood codes (bit i-1 = x_i), whether a foreground centre
    with that neighbourhood is deleted in the first (or second) subiteration.

    Guo-Hall conditions: G1, exactly one 8-connected run of foreground around the pixel;
    G2, 2 <= min(n1, n2) <= 3 (the pixel is an end of neither a line nor an isolated point);
    G3, the pixel lies on a south-east (first) or north-west (second) boundary or corner.
    """
    table = np.zeros(256, dtype=bool)
    for code in range(256):

        def x(k: int, code: int = code) -> bool:
            """Neighbour x_k (1-based, cyclic: x(9) is x1)."""
            return bool(code >> ((k - 1) % 8) & 1)

        crossings = sum(not x(2 * i - 1) and (x(2 * i) or x(2 * i + 1)) for i in range(1, 5))
        n1 = sum(x(2 * k - 1) or x(2 * k) for k in range(1, 5))
        n2 = sum(x(2 * k) or x(2 * k + 1) for k in range(1, 5))
        if first:
            g3 = not ((x(2) or x(3) or not x(8)) and x(1))
        else:
            g3 = not ((x(6) or x(7) or not x(4)) and x(5))
        table[code] = crossings == 1 and 2 <= min(n1, n2) <= 3 and g3
    return table


TABLES = (_removable_table(first=True), _removable_table(first=False))


def _codes(mask: np.ndarray) -> np.ndarray:
    """Neighbourhood code of every pixel (outside the image counts as background)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    codes = np.zeros(mask.shape, dtype=np.int64)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        codes |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w].astype(np.int64) << bit
    return codes


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a binary mask to one-pixel-wide curves (Guo-Hall, iterated until nothing changes).

    Within a subiteration all pixels are tested against the same image (the algorithm is
    parallel), which is what makes a vectorised version exact.
    """
    skeleton = np.asarray(mask, dtype=bool).copy()
    changed = True
    while changed:
        changed = False
        for table in TABLES:
            remove = skeleton & table[_codes(skeleton)]
            if remove.any():
                skeleton &= ~remove
                changed = True
    return skeleton


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Edge map (float32, 0/1) of a label map: the thinned non-zero Laplacian."""
    return thin(np.abs(laplacian(labels)) > 0).astype(np.float32)
