"""Edge odsF and oisF by BSDS-style correspondence matching, through pyEdgeEval.

The matching itself (a min-cost assignment between predicted and ground-truth edge pixels
within a distance of a fraction of the image diagonal) is pyEdgeEval's compiled
``correspond_pixels``, reached through its public ``evaluate_boundaries_threshold``; this module
only prepares the maps and keeps the counts. The protocol: the prediction is NMS-thinned
(``fast_nms``), thresholded and morphologically thinned at each threshold (done by the library);
the ground truth is thinned once with the same port of MATLAB's ``bwmorph(..., 'thin')``
(``binary_thin``; the library's other port, ``bwmorph_thin``, calls ``numpy.in1d``, which
numpy 2 removed).

Why a perfect prediction does not always score exactly 100: the matcher makes the assignment
problem tractable by connecting each "unmatched" node to only 6 randomly chosen others
(``degree`` in its ``match.cc``). When all pixels match their own twin, the unmatched nodes must
pair among themselves through those random edges; a node that no other node picked (chance
about e^-6 = 0.25 % each, for maps of more than a few dozen pixels) forces one real pair apart.
Real NYUD frames (5 000-9 000 thinned edge pixels) therefore score 99.8-99.9 against their own
ground truth without the NMS, and 97.8-99.2 with it (the NMS also merges close parallel edges
and attenuates the border band; measured on the two sample frames with ``MATCHER_SEED``);
maps of at most 6 edge pixels get a complete outlier graph and score exactly 100.
The matcher's generator is seeded from the clock when the library loads; ``seed_matcher``
reseeds it before every image so that results repeat run to run (no Python API exposes the
seed; the C++ ``Random::reseed`` of the extension is called through ``ctypes``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

#: Install hint shown when pyEdgeEval is missing.
INSTALL_HINT = "pip install 'fmtlbench[edges]'"
#: Seed of the matcher's random outlier graph, reset before every image.
MATCHER_SEED = 12345


@functools.cache
def library() -> ModuleType | None:
    """pyEdgeEval's binary-label evaluation module, or ``None`` when it is not installed.

    The library prints a warning about MAT files to stdout when it is imported; that is
    swallowed here because it says nothing about edge evaluation.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from pyEdgeEval.common.binary_label import evaluate_boundaries
    except ImportError:
        return None
    return evaluate_boundaries


def available() -> bool:
    """Whether odsF/oisF can be computed here."""
    return library() is not None


def missing_message() -> str:
    """The one line shown when odsF/oisF are skipped."""
    return f"edge odsF/oisF skipped: pyEdgeEval is not installed ({INSTALL_HINT})"


@functools.cache
def _reseed() -> Any:
    """``(function, generator address)`` of the extension's ``Random::reseed``, or ``None``."""
    module = sys.modules.get("pyEdgeEval._lib.correspond_pixels")
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    try:
        so = ctypes.CDLL(path)
        generator = ctypes.c_void_p.in_dll(so, "_ZN6Random4randE")
        fn = so._ZN6Random6reseedEm
    except (OSError, AttributeError, ValueError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
    fn.restype = None
    return fn, ctypes.addressof(generator)


def seed_matcher(seed: int = MATCHER_SEED) -> bool:
    """Reseed the matcher's generator (``seed`` > 0: 0 would mean "from the clock").
    Returns whether the seed could be set (a differently built library may hide it)."""
    if seed <= 0:
        raise ValueError("seed_matcher: the seed must be > 0 (0 means the clock)")
    found = _reseed()
    if found is None:
        return False
    fn, address = found
    fn(address, seed)
    return True


def thresholds(count: int) -> np.ndarray:
    """``count`` thresholds k / (count + 1), k = 1..count, evenly inside (0, 1) as in BSDS."""
    return np.arange(1, count + 1, dtype=np.float64) / (count + 1)


def f_measure(matched_p: Any, total_p: Any, matched_r: Any, total_r: Any) -> np.ndarray:
    """F = 2PR / (P + R) from counts; P (R) is 0 when nothing is predicted (labelled),
    and F is 0 when P + R = 0."""
    counts = (matched_p, total_p, matched_r, total_r)
    mp, tp, mr, tr = (np.asarray(x, dtype=np.float64) for x in counts)
    p = np.divide(mp, tp, out=np.zeros_like(mp), where=tp > 0)
    r = np.divide(mr, tr, out=np.zeros_like(mr), where=tr > 0)
    s = p + r
    return np.divide(2 * p * r, s, out=np.zeros_like(s), where=s > 0)


@dataclass
class EdgeCounts:
    """Streaming BSDS counts: per threshold, summed over images (for ODS), and the counts of
    each image's own best threshold, summed (for OIS). Integers only, never images."""

    levels: np.ndarray
    max_dist: float
    #: (4, T): matched predicted, predicted, matched ground truth, ground truth pixels.
    dataset: np.ndarray = field(init=False)
    #: (4,): the same at each image's best threshold.
    best: np.ndarray = field(init=False)
    images: int = 0

    def __post_init__(self) -> None:
        self.dataset = np.zeros((4, len(self.levels)), dtype=np.int64)
        self.best = np.zeros(4, dtype=np.int64)

    def add(self, prob: np.ndarray, truth: np.ndarray) -> None:
        """Match one image: ``prob`` edge probabilities (H, W) in [0, 1], ``truth`` a boolean
        (H, W) edge map (pixels without supervision already set to False/0)."""
        lib = library()
        if lib is None:
            raise RuntimeError(missing_message())
        from pyEdgeEval.preprocess import binary_thin

        gt = binary_thin(truth.astype(bool))
        seed_matcher()
        matched_r, total_r, matched_p, total_p = lib.evaluate_boundaries_threshold(
            self.levels,
            prob.astype(np.float64),
            gt,
            max_dist=self.max_dist,
            apply_thinning=True,
            apply_nms=True,
        )
        # an image without ground-truth edges adds only its predicted pixels (false positives)
        self.add_counts(np.rint(np.stack([matched_p, total_p, matched_r, total_r])))

    def add_counts(self, counts: np.ndarray) -> None:
        """Pool one image's (4, T) counts: into the per-threshold sums, and at the image's best
        threshold (the first of equal bests, as MATLAB's ``max`` picks) into the OIS sums."""
        counts = np.asarray(counts).astype(np.int64)
        self.dataset += counts
        k = int(np.argmax(f_measure(*counts)))
        self.best += counts[:, k]
        self.images += 1

    def _defined(self) -> bool:
        # like the other meters: no ground-truth edge in the whole set leaves F undefined
        return bool(self.dataset[3].max() > 0)

    def ods(self) -> float:
        """Best F (percent) over thresholds of the dataset's summed counts."""
        return float(f_measure(*self.dataset).max() * 100) if self._defined() else float("nan")

    def ois(self) -> float:
        """F (percent) of the summed counts of each image's best threshold."""
        return float(f_measure(*self.best) * 100) if self._defined() else float("nan")
