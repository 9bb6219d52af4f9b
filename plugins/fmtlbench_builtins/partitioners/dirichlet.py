"""Label-free non-IID partitions of dense data: Dirichlet skew over image kinds.

Dense-prediction images carry no single class label, so the classic Dirichlet label skew has
nothing to act on. Here every image gets a descriptor computed from its labels - the set of
semantic classes present, or statistics of its depth map - and k-means groups the descriptors
into a few *image kinds*. Each client then draws its mixture of kinds from Dir(alpha * p), with
p the dataset's kind frequencies (Hsu et al., 2019): a small alpha gives each client few kinds,
a large alpha approaches an IID split.

The scenario's size rule is kept exactly: the clients' kind mixtures are scaled to a matrix
whose rows are the clients' sizes and whose columns are the kinds' counts (Sinkhorn), then
rounded to integers with those margins preserved. Descriptors are read once and cached under
the dataset's cache folder (never in the data root).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import Dataset, Params, Partitioner
from fmtlbench.errors import ConfigError
from fmtlbench.partition import share_counts
from fmtlbench.tasks import IGNORE

#: Bump when a descriptor's definition changes, so stale caches are not reused.
DESCRIPTOR_VERSION = 1
#: Seed of the k-means grouping: image kinds are a property of the data, not of the run seed.
KIND_SEED = 0


def _classes(label: np.ndarray, dataset: Dataset) -> np.ndarray:
    """1 for every semantic class present in the image (ignored pixels excluded)."""
    spec = dataset.tasks["semseg"]
    out = np.zeros(spec.classes or spec.channels, dtype=np.float64)
    present = np.unique(label[label != IGNORE]).astype(np.int64)
    out[present[present < len(out)]] = 1.0
    return out


def _depth(depth: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Mean, spread and 10th/90th percentiles of the valid depth (zeros if none is valid)."""
    valid = depth[np.isfinite(depth) & (depth > 0) & (depth != IGNORE)].astype(np.float64)
    if valid.size == 0:
        return np.zeros(4)
    low, high = np.percentile(valid, [10, 90])
    return np.array([valid.mean(), valid.std(), low, high])


#: descriptor name -> (task whose label it reads, function, standardise columns before k-means)
DESCRIPTORS: dict[str, tuple[str, Callable[[np.ndarray, Dataset], np.ndarray], bool]] = {
    "classes": ("semseg", _classes, False),
    "depth": ("depth", _depth, True),
}


class DirichletParams(Params):
    """Concentration, descriptor and number of image kinds."""

    alpha: float = Field(
        0.5, gt=0, description="Dirichlet concentration: small = few image kinds per client"
    )
    descriptor: Literal["classes", "depth"] = Field(
        "classes",
        description="what makes images alike: classes (semseg classes present) or depth "
        "(depth statistics)",
    )
    kinds: int = Field(8, ge=2, le=256, description="image kinds (k-means clusters)")


# --------------------------------------------------------------------------- descriptors
def _cache_file(dataset: Dataset, descriptor: str) -> Path | None:
    if dataset.cache is None:
        return None
    where = f"{Path(dataset.root).resolve()}:{DESCRIPTOR_VERSION}"
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    return Path(dataset.cache) / "descriptors" / f"{descriptor}-{key}.npz"


def descriptors(dataset: Dataset, ids: Sequence[str], descriptor: str) -> np.ndarray:
    """One descriptor row per id; computed from the labels once, then read from the cache.

    The cache file is keyed by the dataset folder, so twins of different sizes (and real data)
    never share descriptors."""
    task, compute, _ = DESCRIPTORS[descriptor]
    if task not in dataset.tasks:
        raise ConfigError(
            f"partitioner 'dirichlet': descriptor '{descriptor}' reads '{task}' labels, which "
            f"dataset '{dataset.name}' does not have; set partitioner_params.descriptor to "
            f"another descriptor ({', '.join(DESCRIPTORS)})"
        )
    path = _cache_file(dataset, descriptor)
    known: dict[str, np.ndarray] = {}
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            known = dict(zip(stored["ids"].tolist(), stored["values"], strict=True))
    missing = [i for i in dict.fromkeys(ids) if i not in known]
    for sample_id in missing:
        known[sample_id] = compute(dataset.read(sample_id, [task])[task], dataset)
    if missing and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(known)
        fd, scratch = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        try:  # written aside and renamed, so a concurrent reader never sees half a file
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, ids=np.array(names), values=np.stack([known[n] for n in names]))
            os.replace(scratch, path)
        finally:
            Path(scratch).unlink(missing_ok=True)
    return np.stack([known[i] for i in ids])


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100) -> np.ndarray:
    """Kind index per row: k-means++ seeding, then Lloyd iterations; kinds numbered 0..k'-1
    with k' <= k (fewer when there are fewer distinct descriptors)."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        gap = ((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        if gap.sum() <= 0:
            break
        centres.append(x[rng.choice(len(x), p=gap / gap.sum())])
    centre = np.array(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        labels = ((x[:, None, :] - centre[None]) ** 2).sum(-1).argmin(1)
        moved = np.array(
            [
                x[labels == j].mean(0) if (labels == j).any() else centre[j]
                for j in range(len(centre))
            ]
        )
        if np.allclose(moved, centre):
            break
        centre = moved
    return np.unique(labels, return_inverse=True)[1]


# --------------------------------------------------------------------------- allocation
def balance(target: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sinkhorn scaling of a non-negative matrix towards row sums ``rows`` and column sums
    ``cols`` (rows or columns that must be empty simply become zero)."""
    x = target.astype(np.float64)
    for _ in range(2000):
        have = x.sum(1)
        x *= np.divide(rows, have, out=np.zeros_like(have), where=have > 0)[:, None]
        have = x.sum(0)
        x *= np.divide(cols, have, out=np.zeros_like(have), where=have > 0)[None, :]
        if np.abs(x.sum(1) - rows).max() < 1e-6:
            break
    return x


def _trim(n: np.ndarray, frac: np.ndarray, limit: np.ndarray) -> None:
    """Take units back from rows of ``n`` that exceed ``limit``, smallest fractions first."""
    for i in np.flatnonzero(n.sum(1) > limit):
        for j in np.argsort(frac[i], kind="stable"):
            n[i, j] -= min(n[i, j], n[i].sum() - limit[i])


def round_margins(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Integer matrix near ``x`` (non-negative) with exactly the integer margins ``rows`` and
    ``cols`` (which must have the same total).

    Floors first, takes back units from rows and columns that overshoot, then hands the missing
    units to the cells with the largest fractional parts, and any remainder by the north-west
    corner rule (always possible: both deficits are non-negative and sum to the same number)."""
    n = np.floor(x).astype(np.int64)
    frac = x - n
    _trim(n, frac, rows)
    _trim(n.T, frac.T, cols)  # a transposed view: trims columns in place
    need_r, need_c = rows - n.sum(1), cols - n.sum(0)
    for flat in np.argsort(-frac, axis=None, kind="stable"):
        i, j = divmod(int(flat), x.shape[1])
        if need_r[i] > 0 and need_c[j] > 0:
            n[i, j] += 1
            need_r[i] -= 1
            need_c[j] -= 1
    for i in range(len(rows)):
        for j in range(len(cols)):
            step = min(need_r[i], need_c[j])
            n[i, j] += step
            need_r[i] -= step
            need_c[j] -= step
    return n


class DirichletPartitioner(Partitioner):
    """Non-IID split by image kind (semseg classes or depth statistics), Dir(alpha) per client."""

    name = "dirichlet"
    randomised = True
    Params = DirichletParams

    def split(
        self, ids: Sequence[str], shares: Sequence[float], seed: int, dataset: Dataset
    ) -> list[list[str]]:
        params: DirichletParams = self.params  # type: ignore[assignment]
        if not ids:
            return [[] for _ in shares]
        values = descriptors(dataset, ids, params.descriptor)
        if DESCRIPTORS[params.descriptor][2]:
            spread = values.std(0)
            values = (values - values.mean(0)) / np.where(spread > 0, spread, 1)
        kinds = kmeans(values, min(params.kinds, len(ids)), np.random.default_rng(KIND_SEED))
        count = np.bincount(kinds)
        sizes = np.array(share_counts(len(ids), shares), dtype=np.int64)
        digest = hashlib.sha256(f"{seed}:{dataset.name}:dirichlet".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        prior = count / count.sum()
        mixture = rng.dirichlet(params.alpha * prior, size=len(sizes))
        target = sizes[:, None] * np.maximum(mixture, 1e-12)
        table = round_margins(
            balance(target, sizes.astype(float), count.astype(float)), sizes, count
        )
        out: list[list[str]] = [[] for _ in sizes]
        for kind in range(len(count)):
            members = [ids[i] for i in np.flatnonzero(kinds == kind)]
            rng.shuffle(members)
            start = 0
            for client, take in enumerate(table[:, kind]):
                out[client].extend(members[start : start + take])
                start += take
        return out


@hookimpl
def register_partitioners() -> list[type[Partitioner]]:
    return [DirichletPartitioner]
