"""Metric keys have one owner: ``fmtlbench.metric_keys`` builds and parses them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fmtlbench import metric_keys as keys
from fmtlbench.errors import ConfigError
from fmtlbench.metric_keys import ClientMetric, TaskMetric, Traffic

ROOT = Path(__file__).resolve().parents[1]


def test_keys_are_written_in_the_documented_layout() -> None:
    # the expected strings are the layout as documented (and as MLflow holds existing runs)
    assert str(TaskMetric("G", "nyudv2", "depth", "rmse")) == "G/nyudv2/depth/rmse"
    assert TaskMetric("P", "pascal", "edge", "loss").std == "P/pascal/edge/loss_std"
    assert TaskMetric("P", "pascal", "edge", "loss").label == "pascal/edge/loss"
    assert TaskMetric("P", "pascal", "edge", "loss").task_label == "pascal/edge"
    assert str(ClientMetric(3, "P", "normals", "mean")) == "client3/P/normals/mean"
    assert str(Traffic(12, "up", "encoder")) == "comm/client12/up/encoder"
    assert keys.traffic_total("down") == "comm/down_bytes"
    assert keys.client_train(0, "total") == "client0/train/total"
    assert keys.time("aggregate") == "time/aggregate"
    assert keys.energy("kwh") == "energy/kwh"
    assert keys.energy("co2_kg", "train") == "energy/train_co2_kg"
    assert keys.energy_total("kwh") == "energy/total_kwh"
    assert keys.algorithm("fedamp", "sigma") == "algo/fedamp/sigma"
    assert keys.delta("G") == "delta/G"
    assert keys.method_delta("P", "fedavg") == "delta_P/fedavg"


def test_each_reader_takes_its_own_kind_of_key_and_nothing_else() -> None:
    assert TaskMetric.read("G/nyudv2/depth/rmse") == TaskMetric("G", "nyudv2", "depth", "rmse")
    assert ClientMetric.read("client10/G/semseg/miou") == ClientMetric(10, "G", "semseg", "miou")
    assert Traffic.read("comm/client2/down/decoder/depth") == Traffic(2, "down", "decoder/depth")
    others = [
        "client3/P/normals/mean",
        "comm/client1/up/all",
        "G/nyudv2/depth",
        "X/nyudv2/depth/rmse",
        "G//depth/rmse",
        "time/train",
        "client1/train/total",
        "clientx/G/semseg/miou",
        "comm/client1/sideways/all",
        "comm/up_bytes",
    ]
    readers = {"task": TaskMetric.read, "client": ClientMetric.read, "traffic": Traffic.read}
    owners = {
        "client3/P/normals/mean": "client",
        "comm/client1/up/all": "traffic",
    }
    for text in others:
        for name, read in readers.items():
            found = read(text)
            assert (found is not None) == (owners.get(text) == name), (text, name, found)


def test_parse_names_the_bad_key_and_the_layout() -> None:
    with pytest.raises(ConfigError, match=r"'G/depth/rmse' must look like G\|P/<dataset>"):
        TaskMetric.parse("G/depth/rmse")


def test_machine_keys_are_time_energy_and_traffic() -> None:
    assert keys.is_machine(keys.time("train")) and keys.is_machine(keys.energy("kwh"))
    assert keys.is_machine(str(Traffic(0, "up", "all")))
    assert not keys.is_machine(str(TaskMetric("G", "nyudv2", "depth", "rmse")))
    assert not keys.is_machine(keys.TRAIN_LOSS)


#: How a metric key looks when a module builds one by hand: a literal or f-string starting with
#: one of the key families, or three or more ``{...}/`` parts joined by slashes.
HAND_BUILT = re.compile(
    r"""f?["'](client\{|comm/|time/|energy/|algo/|delta/|delta_\{[^}]+\}/|train/|eval/|[GP]/)"""
    r"""|\{[^}]+\}/\{[^}]+\}/\{"""
)


def test_no_module_but_the_owner_builds_a_metric_key_by_hand() -> None:
    """The core and the built-in plugins name metric keys only through ``metric_keys``."""
    owner = ROOT / "fmtlbench" / "metric_keys.py"
    sources = [*(ROOT / "fmtlbench").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    sources = [p for p in sources if p != owner and "tests" not in p.parts]
    assert len(sources) > 50, sources  # the walk found the package
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if HAND_BUILT.search(line)
    ]
    assert not found, "\n".join(found)
    # the pattern does catch the hand-built keys this test exists to forbid
    for line in ['out[f"client{k}/{kind}/{task}/{m}"]', 'm["time/train"]', 'f"{a}/{b}/{c}/{d}"']:
        assert HAND_BUILT.search(line), line
