"""Checkpoints are data: nested run state survives them exactly, foreign files are refused
without running anything, writes are atomic and durable, a full disk is one clear message."""

from __future__ import annotations

import math
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
from click.testing import CliRunner, Result

from fmtlbench import checkpoint
from fmtlbench.engine import Evaluation
from fmtlbench.errors import CheckpointError


def same(a, b) -> bool:
    """Equal values of equal types (tensors: dtype, shape and every element)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Evaluation):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def nested_state() -> dict:
    """A payload shaped like a run's: client states, algorithm state, history, Evaluation."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, generator=g)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    states = [
        {
            "encoder.conv.weight": w,
            "encoder.bn.num_batches_tracked": torch.tensor(7),
            "head/semseg.bias": torch.randn(5, generator=g).to(torch.bfloat16),
        },
        {"encoder.conv.weight": w + 1, "mask": torch.tensor([True, False])},
    ]
    evaluation = Evaluation(
        2,
        {"G": [{"semseg": {"miou": 0.25, "acc": float("nan")}}], "P": []},
        {"G": {"nyudv2": {"semseg": {"miou": (0.25, 0.0)}}}},
        {"G": -1.5},
    )
    return {
        "config": {"seed": 0, "training": {"rounds": 3, "lr": 1e-3}, "reference": None},
        "round": 2,
        "states": states,
        "algorithm": {
            "anchors": [states[0], None],  # the same tensors as client 0's state
            "xi": torch.eye(2, dtype=torch.float64),
            "labels": [0, 1],
            "view": base[1:, 1:],  # a strided view into a larger storage
            "rows": base[1:],  # a contiguous view into a larger storage
            "whole": base,
            "$weird": {(1, 2): "tuple key", 3: "int key"},
        },
        "delivered": [{1, 5}, set()],
        "history": {0: {"lr": 0.0}, 1: {"lr": 1e-3, "comm/up_bytes": 1024.0}},
        "initial": evaluation,
        "final": None,
    }


def test_nested_state_round_trips_exactly(tmp_path: Path) -> None:
    path = checkpoint.checkpoint_path(tmp_path, "run1")
    payload = nested_state()
    checkpoint.save(path, payload)
    loaded = checkpoint.load(path)
    assert same(loaded, payload)
    assert loaded["delivered"] == [{1, 5}, set()] and list(loaded["history"]) == [0, 1]
    assert loaded["initial"].summary["G"]["nyudv2"]["semseg"]["miou"] == (0.25, 0.0)
    # the file is a plain safetensors file: tensors by path, one entry per distinct tensor
    names = set(safetensors.torch.load_file(path))
    assert "states/0/encoder.conv.weight" in names
    assert not any(n.startswith("algorithm/anchors/0/") for n in names)  # shared, stored once
    assert len(names) == 9


def _malicious_pickle(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"round": 1, "states": Payload()})


def _refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_pickle_with_a_payload_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = checkpoint.checkpoint_path(tmp_path, "run1")
    path.parent.mkdir()
    path.write_bytes(_malicious_pickle(marker))
    assert "not an fmtlbench checkpoint" in _refused(path)
    assert not marker.exists()
    # the same payload as the pickled checkpoint of an earlier version: refused by name
    path.unlink()
    legacy = path.with_name(checkpoint.LEGACY_NAME)
    legacy.write_bytes(_malicious_pickle(marker))
    with pytest.raises(CheckpointError, match="pickled checkpoint of an older fmtlbench"):
        checkpoint.load(path)
    assert not marker.exists()
    # a pickle whose first 8 bytes happen to read as a small header length is refused too
    torch.save({"round": 1}, path)
    _refused(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 7,
        os.urandom(4096),
        struct.pack("<Q", 10) + b"not json!!" + b"\x00" * 8,
        struct.pack("<Q", 2**40) + b"{}",  # header longer than the file
        safetensors.torch.save({"w": torch.ones(2)}),  # safetensors, but not ours
        safetensors.torch.save({"w": torch.ones(2)}, metadata={"format": "pt"}),
    ],
    ids=["empty", "short", "random", "bad-json", "huge-header", "plain", "foreign"],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / checkpoint.NAME
    path.write_bytes(content)
    assert "not an fmtlbench checkpoint" in _refused(path)


def test_a_damaged_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / checkpoint.NAME
    checkpoint.save(path, nested_state())
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # tensor bytes cut short
    assert "damaged" in _refused(path)


def _cli(*args: str) -> Result:
    """``fmtlbench`` in-process: what is checked is the command's message and exit code, and
    a subprocess per call costs seconds of imports."""
    from fmtlbench.cli import main

    return CliRunner().invoke(main, list(args))


def test_resume_from_a_planted_pickle_runs_nothing(tmp_path: Path) -> None:
    """End to end through the CLI: one line, non-zero exit, no traceback, no marker."""
    marker = tmp_path / "marker"
    path = checkpoint.checkpoint_path(tmp_path / "ckpt", "planted")
    path.parent.mkdir(parents=True)
    path.write_bytes(_malicious_pickle(marker))
    out = _cli("run", "--resume", "planted", "--set", f"checkpoint_dir={tmp_path / 'ckpt'}")
    assert out.exit_code != 0
    assert "not an fmtlbench checkpoint" in out.output
    assert "Traceback" not in out.stderr
    assert not marker.exists()


def test_strays_of_killed_writes_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    folder = checkpoint.checkpoint_path(tmp_path, "run1").parent
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = checkpoint._temp_prefix()
    killed = folder / f"{host}{dead.pid}.tmp"
    live = folder / f"{host}{os.getpid()}.tmp"  # a write going on in this process
    legacy = folder / "checkpoint.tmp"
    for f in (killed, live, legacy):
        f.write_bytes(b"torn")
    assert sorted(checkpoint.sweep(tmp_path)) == sorted([killed, legacy])
    assert live.exists() and not killed.exists() and not legacy.exists()


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_what_is_needed(tmp_path: Path) -> None:
    """A real write limit (RLIMIT_FSIZE, no root needed) makes the second write fail with EFBIG
    midway; the message names the folder and the size, and the first checkpoint is intact."""
    path = checkpoint.checkpoint_path(tmp_path, "run1")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys, torch
        from fmtlbench import checkpoint
        from fmtlbench.errors import CheckpointError
        path = {str(path)!r}
        checkpoint.save(path, {{"round": 1, "w": torch.zeros(1000)}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            checkpoint.save(path, {{"round": 2, "w": torch.ones(100_000)}})
        except CheckpointError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    message = out.stdout.strip()
    assert "\n" not in message and str(path.parent) in message
    assert "0.4 MB" in message  # 100,000 float32 = 400,000 bytes plus a small header
    assert "previous checkpoint is intact" in message
    kept = checkpoint.load(path)
    assert kept["round"] == 1 and torch.equal(kept["w"], torch.zeros(1000))
    assert [p.name for p in path.parent.iterdir()] == [checkpoint.NAME]  # no temp left


def test_resume_refuses_other_flags_by_name(tmp_path: Path) -> None:
    out = _cli(
        *["run", "--resume", "any", "--algo", "fedprox", "--seed", "3", "--rounds", "9"],
        *["--set", "training.lr=1", "--set", f"checkpoint_dir={tmp_path}"],
    )
    assert out.exit_code != 0 and "Traceback" not in out.stderr
    message = out.output.strip()
    assert "--algo, --seed, --set training.lr=1 cannot be used with --resume" in message
    assert "--rounds," not in message and "checkpoint_dir=/" not in message


def test_resumed_config_is_the_checkpoints_extended_only_by_rounds() -> None:
    from fmtlbench.config import RunConfig
    from fmtlbench.errors import ConfigError
    from fmtlbench.resume import resumed_config

    saved = RunConfig.model_validate({"seed": 7, "training": {"rounds": 3}}).dump()
    state = {"config": saved, "round": 2}
    assert resumed_config(state).seed == 7 and resumed_config(state).training.rounds == 3
    assert resumed_config(state, 10).training.rounds == 10
    with pytest.raises(ConfigError, match="can only be extended"):
        resumed_config(state, 1)


def test_the_resume_command_names_the_checkpoint_folder_only_when_not_the_default() -> None:
    from fmtlbench.resume import command

    assert command("abc123", Path(".fmtlbench/checkpoints")) == "fmtlbench run --resume abc123"
    assert command("abc123", Path("/scratch/my ckpts")) == (
        "fmtlbench run --resume abc123 --set 'checkpoint_dir=/scratch/my ckpts'"
    )
