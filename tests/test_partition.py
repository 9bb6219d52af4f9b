"""Partition materialisation: disjoint, complete, proportional, hashed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmtlbench.components import Dataset, Partitioner
from fmtlbench.errors import ConfigError
from fmtlbench.partition import (
    Manifest,
    PartitionError,
    local_test_count,
    materialise,
    share_counts,
)
from fmtlbench.scenario import ClientGroup, ScenarioSpec, load_scenario_file
from fmtlbench.tasks import TaskSpec


class SplitOnly(Dataset):
    """A dataset reduced to its split file: enough for partitioners that never read labels."""

    name = "toy"
    folder = "Toy"
    tasks: ClassVar[dict[str, TaskSpec]] = {
        "semseg": TaskSpec("semseg", channels=5, classes=5),
        "depth": TaskSpec("depth", channels=1),
    }

    def __init__(self, n_train: int, name: str = "toy") -> None:
        super().__init__(None, Path("/nonexistent"), synthetic=True)
        self.name = name  # type: ignore[misc]
        self._ids = [f"{name}-{i:05d}" for i in range(n_train)]

    def ids(self, split: str) -> list[str]:
        return list(self._ids) if split == "train" else []


def iid() -> Partitioner:
    from fmtlbench_builtins.partitioners.iid import RandomPartitioner

    return RandomPartitioner()


# --------------------------------------------------------------------------- share_counts
@given(
    total=st.integers(min_value=0, max_value=5000),
    shares=st.lists(st.floats(min_value=0.1, max_value=10), min_size=1, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_share_counts_sum_and_stay_within_one(total, shares):
    counts = share_counts(total, shares)
    assert sum(counts) == total
    weight = sum(shares)
    for count, share in zip(counts, shares, strict=True):
        assert abs(count - total * share / weight) < 1.0 + 1e-9


def test_share_counts_by_hand():
    assert share_counts(10, [1, 2, 3, 4]) == [1, 2, 3, 4]
    assert share_counts(11, [1, 1, 1, 1]) == [3, 3, 3, 2]
    assert share_counts(100, [1, 2, 3, 4]) == [10, 20, 30, 40]
    # 795 NYUD images skewed 1:2:3:4 -> 79.5, 159, 238.5, 318: one spare image, tie -> first
    assert share_counts(795, [1, 2, 3, 4]) == [80, 159, 238, 318]


def test_local_test_count_by_hand():
    assert [local_test_count(n, 0.1) for n in (2, 5, 10, 14, 19, 199, 4998)] == [
        1,
        1,
        1,
        1,
        2,
        20,
        500,
    ]


# --------------------------------------------------------------------------- materialise
scenario_groups = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(min_value=1, max_value=5),
        st.sampled_from(["equal", "skew"]),
    ),
    min_size=1,
    max_size=4,
)


@given(
    groups=scenario_groups,
    cross_groups=st.booleans(),
    sizes=st.tuples(st.integers(30, 400), st.integers(30, 400)),
    seed=st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_partition_is_disjoint_complete_and_follows_the_size_rule(
    groups, cross_groups, sizes, seed
):
    spec = ScenarioSpec(
        name="prop",
        groups=[
            ClientGroup(dataset=ds, count=n, shares="equal" if cross_groups else rule)
            for ds, n, rule in groups
        ],
        sizes="skew" if cross_groups else "groups",
    )
    # the size rule, written out independently of the code under test
    expected_shares: list[float] = []
    seen = {"a": 0, "b": 0}
    for ds, n, rule in groups:
        for j in range(n):
            seen[ds] += 1
            if cross_groups:
                expected_shares.append(seen[ds])
            else:
                expected_shares.append(1 if rule == "equal" else j + 1)
    # every client must get at least 2 images: grow each dataset past twice its total share
    owner = [ds for ds, n, _ in groups for _ in range(n)]
    weight = {
        d: sum(s for s, o in zip(expected_shares, owner, strict=True) if o == d) for d in "ab"
    }
    datasets = {d: SplitOnly(n + 2 * int(weight[d]), d) for d, n in zip("ab", sizes, strict=True)}
    manifest = materialise(spec, datasets, iid(), seed)
    for name, ds in datasets.items():
        mine = [c for c in manifest.clients if c.dataset == name]
        if not mine:
            continue
        held = [i for c in mine for i in c.train + c.test]
        assert len(held) == len(set(held))  # disjoint across all clients of the dataset
        assert set(held) == set(ds.ids("train"))  # complete: no image dropped
        total_share = sum(expected_shares[c.index] for c in mine)
        for c in mine:
            exact = len(held) * expected_shares[c.index] / total_share
            assert abs(len(c.train) + len(c.test) - exact) < 1.0 + 1e-9
    all_train = {i for c in manifest.clients for i in c.train}
    for c in manifest.clients:
        assert not set(c.test) & all_train  # a local test image is nobody's training image
        size = len(c.train) + len(c.test)
        assert len(c.test) >= 1 and len(c.train) >= 1
        assert abs(len(c.test) - 0.1 * size) <= 1.0  # 9:1 within one image


@given(seed=st.integers(0, 2**31), other=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_same_seed_same_hash_other_seed_other_partition(seed, other):
    spec = ScenarioSpec(name="h", groups=[ClientGroup(dataset="toy", count=4, shares="skew")])
    data = {"toy": SplitOnly(120)}
    first = materialise(spec, data, iid(), seed)
    again = materialise(spec, {"toy": SplitOnly(120)}, iid(), seed)
    assert first.digest() == again.digest()
    assert len(first.digest()) == 64
    if other != seed:
        moved = materialise(spec, data, iid(), other)
        assert moved.digest() != first.digest()
        # not only the recorded seed differs: the images themselves are dealt differently
        assert [c.train for c in moved.clients] != [c.train for c in first.clients]


def test_manifest_round_trips_through_json():
    spec = ScenarioSpec(name="j", groups=[ClientGroup(dataset="toy", count=3)])
    manifest = materialise(spec, {"toy": SplitOnly(40)}, iid(), 3)
    back = Manifest.model_validate_json(manifest.model_dump_json(indent=2))
    assert back.digest() == manifest.digest()
    assert manifest.partitioner == "iid" and manifest.partitioner_params == {}


class Broken(Partitioner):
    """A partitioner that breaks its contract in a chosen way."""

    name = "broken"

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    def split(
        self, ids: Sequence[str], shares: Sequence[float], seed: int, dataset: Dataset
    ) -> list[list[str]]:
        parts = [list(ids[0::2]), list(ids[1::2])]
        if self.fault == "drop":
            parts[1] = parts[1][:-1] + [parts[0][0]]  # sizes right, one image twice, one lost
        elif self.fault == "sizes":
            parts = [list(ids[:-3]), list(ids[-3:])]
        elif self.fault == "foreign":
            parts[1][-1] = "not-in-the-split"
        return parts


@pytest.mark.parametrize(
    ("fault", "words"),
    [("drop", "more than one client"), ("sizes", "size rule"), ("foreign", "invented")],
)
def test_a_partitioner_breaking_its_contract_is_a_clear_error(fault, words):
    spec = ScenarioSpec(name="b", groups=[ClientGroup(dataset="toy", count=2)])
    with pytest.raises(PartitionError, match=words) as info:
        materialise(spec, {"toy": SplitOnly(20)}, Broken(fault), 0)
    assert "partitioner 'broken'" in str(info.value)


def test_too_small_a_share_names_the_dataset_and_client():
    spec = ScenarioSpec(name="s", groups=[ClientGroup(dataset="toy", count=4, shares="skew")])
    with pytest.raises(ConfigError, match=r"dataset 'toy'.*client 0.*at least 2"):
        materialise(spec, {"toy": SplitOnly(12)}, iid(), 0)  # 12 -> 1.2, 2.4, 3.6, 4.8


def test_unknown_task_names_the_dataset_and_its_tasks():
    spec = ScenarioSpec(name="t", groups=[ClientGroup(dataset="toy", tasks=["parts"])])
    with pytest.raises(ConfigError, match="no task 'parts'.*semseg, depth"):
        materialise(spec, {"toy": SplitOnly(12)}, iid(), 0)


# --------------------------------------------------------------------------- spec model
def test_size_rules_give_the_shares_written_by_hand():
    st_groups = [ClientGroup(dataset="n", tasks=[t]) for t in ("semseg", "normals", "edge")]
    mixed = ScenarioSpec(name="m", groups=[*st_groups, ClientGroup(dataset="p")], sizes="skew")
    assert mixed.client_shares() == [1, 2, 3, 1]  # the skew restarts per dataset
    grouped = ScenarioSpec(
        name="g",
        groups=[ClientGroup(dataset="n", count=3, shares="skew"), ClientGroup(dataset="n")],
    )
    assert grouped.client_shares() == [1, 2, 3, 1]
    explicit = ScenarioSpec(name="e", groups=[ClientGroup(dataset="n", count=2, shares=[5, 0.5])])
    assert explicit.client_shares() == [5, 0.5]


@pytest.mark.parametrize(
    ("group", "words"),
    [
        ({"dataset": "n", "count": 2, "shares": [1]}, "1 entries for 2 clients"),
        ({"dataset": "n", "shares": [0]}, "positive"),
        ({"dataset": "n", "tasks": []}, "tasks is empty"),
        ({"dataset": "n", "tasks": ["edge", "edge"]}, "edge more than once"),
        ({"dataset": "n", "count": 0}, "count"),
    ],
)
def test_scenario_file_errors_name_the_file_and_field(tmp_path, group, words):
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    with pytest.raises(ConfigError, match=words) as info:
        load_scenario_file(path)
    assert str(path) in str(info.value) and "groups.0" in str(info.value)


def test_two_size_rules_at_once_are_rejected(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text('sizes = "skew"\n[[groups]]\ndataset = "n"\ncount = 2\nshares = "skew"\n')
    with pytest.raises(ConfigError, match="one size rule"):
        load_scenario_file(path)


def test_missing_scenario_file_says_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*scenarios list"):
        load_scenario_file(tmp_path / "nope.yaml")


def test_scenario_file_takes_its_name_from_the_file(tmp_path):
    path = tmp_path / "two-domains.json"
    path.write_text('{"groups": [{"dataset": "n", "count": 3}], "partitioner": "dirichlet"}')
    spec = load_scenario_file(path)
    assert spec.name == "two-domains" and spec.num_clients == 3
    assert spec.partitioner == "dirichlet"
