"""Exchange names line heterogeneous clients up without mixing tasks or datasets."""

from __future__ import annotations

import pytest
from torch import nn

from fmtlbench.errors import IncompatibleError
from fmtlbench.exchange import check_shapes, exchange_names


class PerTask(nn.Module):
    """Stands in for a decoder whose keys start with the task name (like MD)."""

    def task_of(self, key: str) -> str | None:
        return key.split(".")[0]


class Shared(nn.Module):
    """Stands in for a decoder with a shared body and per-task heads (like TC)."""

    def task_of(self, key: str) -> str | None:
        parts = key.split(".")
        return parts[1] if parts[0] == "heads" else None


class Model(nn.Module):
    def __init__(self, decoder: nn.Module, tasks: list[str]) -> None:
        super().__init__()
        self.decoder = decoder
        self.tasks = dict.fromkeys(tasks)


def md_groups(tasks: list[str]) -> dict[str, str]:
    tags = {"encoder.conv.weight": "encoder", "encoder.bn.running_mean": "encoder.stats"}
    for t in tasks:
        tags[f"decoder.{t}.stages.0.weight"] = "decoder"
        tags[f"decoder.{t}.stages.0.bn.running_var"] = "decoder.stats"
        tags[f"decoder.{t}.head.weight"] = "task"
    return tags


def test_multitask_clients_prefix_task_entries_with_their_dataset():
    tasks = ["semseg", "depth"]
    names = exchange_names(
        [Model(PerTask(), tasks), Model(PerTask(), ["semseg"])],
        ["nyudv2", "pascal-context"],
        [md_groups(tasks), md_groups(["semseg"])],
    )
    assert names[0]["encoder.conv.weight"] == "encoder.conv.weight"
    assert names[0]["decoder.semseg.head.weight"] == "nyudv2/decoder.semseg.head.weight"
    assert names[1]["decoder.semseg.head.weight"] == "pascal-context/decoder.semseg.head.weight"
    assert len(names[0]) == len(md_groups(tasks))  # nothing private outside the SD case


def test_single_task_clients_share_decoder_bodies_and_keep_heads_private():
    clients = [["semseg"], ["depth"]]
    names = exchange_names(
        [Model(PerTask(), t) for t in clients],
        ["nyudv2", "nyudv2"],
        [md_groups(t) for t in clients],
    )
    assert names[0]["decoder.semseg.stages.0.weight"] == "decoder.*.stages.0.weight"
    assert names[1]["decoder.depth.stages.0.weight"] == "decoder.*.stages.0.weight"
    assert names[1]["decoder.depth.stages.0.bn.running_var"] == "decoder.*.stages.0.bn.running_var"
    assert "decoder.semseg.head.weight" not in names[0]
    assert "decoder.depth.head.weight" not in names[1]


def test_shared_decoder_keeps_body_names():
    tags = {
        "decoder.body.conv.weight": "decoder",
        "decoder.mlp.0.weight": "task",
        "decoder.heads.semseg.weight": "task",
        "decoder.heads.edge.weight": "task",
    }
    names = exchange_names([Model(Shared(), ["semseg", "edge"])], ["nyudv2"], [tags])[0]
    assert names["decoder.body.conv.weight"] == "decoder.body.conv.weight"
    assert names["decoder.mlp.0.weight"] == "decoder.mlp.0.weight"
    assert names["decoder.heads.edge.weight"] == "nyudv2/decoder.heads.edge.weight"


def test_shape_mismatch_is_a_clear_incompatibility():
    shapes = [{"a": (3, 3), "b": (1,)}, {"a": (3, 3), "b": (2,)}]
    check_shapes(shapes, [["a"], ["a"]])  # fine: b is not exchanged
    with pytest.raises(IncompatibleError, match="share=encoder"):
        check_shapes(shapes, [["a", "b"], ["a", "b"]])
