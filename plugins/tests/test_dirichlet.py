"""The dirichlet partitioner: exact sizes, disjoint and complete for any input; real skew that
alpha controls; descriptors right by hand; descriptor cache outside the data root."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from fmtlbench_builtins.datasets.nyudv2 import NYUDv2
from fmtlbench_builtins.partitioners.dirichlet import (
    DirichletPartitioner,
    _classes,
    _depth,
    descriptors,
    kmeans,
    round_margins,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fmtlbench.components import Dataset
from fmtlbench.errors import ConfigError
from fmtlbench.partition import materialise, share_counts
from fmtlbench.scenario import ClientGroup, ScenarioSpec
from fmtlbench.tasks import IGNORE, TaskSpec

KINDS = 4


def kind_of(sample_id: str) -> int:
    return int(sample_id.split("-")[0][1:])


class Kinds(Dataset):
    """In-memory labels in four kinds: kind j shows semseg classes 2j and 2j+1 (plus void)
    and lies at depth j+1 metres. The partitioner sees only what ``read`` returns."""

    name = "kinds"
    folder = "Kinds"
    tasks: ClassVar[dict[str, TaskSpec]] = {"semseg": TaskSpec("semseg", channels=8, classes=8)}

    def __init__(self, n: int, cache: Path | None = None, seed: int = 0) -> None:
        super().__init__(None, Path("/nonexistent/kinds"), synthetic=True, cache=cache)
        rng = np.random.default_rng(seed)
        self._ids = [f"k{int(rng.integers(KINDS))}-{i:05d}" for i in range(n)]
        self.reads = 0

    def ids(self, split: str) -> list[str]:
        return list(self._ids)

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        self.reads += 1
        j = kind_of(sample_id)
        label = np.array([[2 * j, 2 * j + 1], [2 * j, IGNORE]], dtype=np.uint8)
        return {"image": np.zeros((2, 2, 3), np.uint8), "semseg": label}


def split(ds: Dataset, shares: Sequence[float], seed: int, **params: object) -> list[list[str]]:
    part = DirichletPartitioner(DirichletPartitioner.Params(**params))
    return part.split(ds.ids("train"), shares, seed, ds)


@given(
    n=st.integers(8, 300),
    shares=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0]), min_size=1, max_size=8),
    seed=st.integers(0, 2**31),
    alpha=st.sampled_from([0.01, 0.3, 1.0, 100.0]),
    kinds=st.integers(2, 12),
)
@settings(max_examples=60, deadline=None)
def test_split_is_disjoint_complete_and_exactly_sized(n, shares, seed, alpha, kinds):
    ds = Kinds(n, seed=seed % 7)
    parts = split(ds, shares, seed, alpha=alpha, kinds=kinds)
    ids = ds.ids("train")
    held = [i for p in parts for i in p]
    assert len(held) == len(set(held)) and set(held) == set(ids)
    assert [len(p) for p in parts] == share_counts(n, shares)


def _kind_share(parts: list[list[str]]) -> np.ndarray:
    """Per client, the fraction of its images of each kind (from the ids, not the code)."""
    table = np.zeros((len(parts), KINDS))
    for k, part in enumerate(parts):
        for sample_id in part:
            table[k, kind_of(sample_id)] += 1
    return table / table.sum(1, keepdims=True)


def test_alpha_controls_how_different_clients_are():
    ds = Kinds(800)
    overall = np.bincount([kind_of(i) for i in ds.ids("train")], minlength=KINDS) / 800
    gaps = {}
    for alpha in (0.05, 1000.0):
        runs = []
        for seed in range(5):
            mix = _kind_share(split(ds, [1, 1, 1, 1], seed, alpha=alpha, kinds=KINDS))
            runs.append(0.5 * np.abs(mix - overall).sum(1).mean())  # mean total variation
        gaps[alpha] = float(np.mean(runs))
    assert gaps[1000.0] < 0.05  # near IID
    assert gaps[0.05] > 0.4  # each client dominated by few kinds


def test_same_seed_same_split_other_seed_other_split():
    ds = Kinds(200)
    first = split(ds, [1, 2, 3], 7)
    assert split(ds, [1, 2, 3], 7) == first
    assert split(ds, [1, 2, 3], 8) != first


def test_in_a_scenario_the_manifest_records_the_parameters():
    spec = ScenarioSpec(
        name="skewed",
        groups=[ClientGroup(dataset="kinds", count=3)],
        partitioner="dirichlet",
        partitioner_params={"alpha": 0.2},
    )
    part = DirichletPartitioner(DirichletPartitioner.Params(alpha=0.2))
    manifest = materialise(spec, {"kinds": Kinds(90)}, part, seed=1)
    assert manifest.partitioner == "dirichlet"
    assert manifest.partitioner_params == {"alpha": 0.2, "descriptor": "classes", "kinds": 8}
    assert [len(c.train) + len(c.test) for c in manifest.clients] == [30, 30, 30]


def test_descriptors_by_hand():
    ds = Kinds(1)
    label = np.array([[3, 3, IGNORE], [0, 7, 3]], dtype=np.uint8)
    assert _classes(label, ds).tolist() == [1, 0, 0, 1, 0, 0, 0, 1]
    depth = np.array([[1.0, 2.0, IGNORE], [3.0, 4.0, 0.0]], dtype=np.float32)
    mean, std, p10, p90 = _depth(depth, ds)
    # valid depths 1, 2, 3, 4: mean 2.5, population std sqrt(1.25); linear percentiles at
    # positions 0.3 and 2.7 of the sorted values -> 1.3 and 3.7
    assert (mean, std, p10, p90) == pytest.approx((2.5, 1.25**0.5, 1.3, 3.7))
    assert _depth(np.full((2, 2), IGNORE, np.float32), ds).tolist() == [0, 0, 0, 0]


def test_kmeans_finds_separated_groups():
    rng = np.random.default_rng(0)
    truth = rng.integers(3, size=120)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres[truth] + rng.normal(scale=0.3, size=(120, 2))
    found = kmeans(points, 3, np.random.default_rng(1))
    # same grouping up to renaming: a one-to-one map between found and true labels
    pairs = set(zip(found.tolist(), truth.tolist(), strict=True))
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3
    assert kmeans(np.zeros((5, 2)), 4, np.random.default_rng(0)).tolist() == [0] * 5


@given(
    rows=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    cols=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    seed=st.integers(0, 1000),
)
@settings(max_examples=100, deadline=None)
def test_rounding_keeps_both_margins_exactly(rows, cols, seed):
    total = sum(cols)
    r = np.array(share_counts(total, [x + 1 for x in rows]))
    c = np.array(cols)
    x = np.random.default_rng(seed).random((len(r), len(c))) * 5
    n = round_margins(x, r, c)
    assert (n >= 0).all()
    assert n.sum(1).tolist() == r.tolist() and n.sum(0).tolist() == c.tolist()


def test_descriptor_needs_its_task():
    with pytest.raises(ConfigError, match="descriptor 'depth' reads 'depth'.*'kinds'"):
        split(Kinds(20), [1, 1], 0, descriptor="depth")


def test_parameters_are_validated():
    with pytest.raises(ValidationError):
        DirichletPartitioner.Params(alpha=0)
    with pytest.raises(ValidationError):
        DirichletPartitioner.Params(descriptor="colour")


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class CountingNYUD(NYUDv2):
    """The real nyudv2 reader, counting label reads."""

    reads = 0

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        type(self).reads += 1
        return super().read(sample_id, tasks)


@pytest.mark.parametrize("descriptor", ["classes", "depth"])
def test_descriptors_of_the_twin_are_cached_outside_the_data_root(tmp_path, descriptor):
    params = NYUDv2.Params(twin_train=16, twin_test=2, twin_height=24, twin_width=32)
    root = tmp_path / "data" / "NYUDv2"
    NYUDv2.synthesize(root, params, seed=0)
    before = _tree(root)
    cache = tmp_path / "cache"
    ds = CountingNYUD(params, root, synthetic=True, cache=cache)
    CountingNYUD.reads = 0
    ids = ds.ids("train")
    values = descriptors(ds, ids, descriptor)
    assert CountingNYUD.reads == 16 and values.shape[0] == 16
    # an independent reading of one frame gives the same descriptor
    raw = NYUDv2(params, root, synthetic=True).read(ids[3], ["semseg", "depth"])
    if descriptor == "classes":
        assert values[3].tolist() == [float(c in set(raw["semseg"].ravel())) for c in range(40)]
    else:
        valid = raw["depth"][raw["depth"] != IGNORE]
        assert values[3][0] == pytest.approx(valid.mean(), rel=1e-5)
    assert list(cache.rglob("*.npz")) and _tree(root) == before  # root untouched
    again = descriptors(CountingNYUD(params, root, synthetic=True, cache=cache), ids, descriptor)
    assert CountingNYUD.reads == 16  # second time from the cache
    assert np.array_equal(again, values)
    parts = split(ds, [1, 3], 0, descriptor=descriptor, kinds=3)
    assert sorted(i for p in parts for i in p) == sorted(ids)
    assert [len(p) for p in parts] == [4, 12]
