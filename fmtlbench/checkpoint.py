"""Checkpoints as data: the resume point of an interrupted run, safe to load from anywhere.

A checkpoint is one safetensors file. Its tensors hold every tensor of the saved state, named
by their path in it ("states/0/encoder.conv1.weight"); its metadata holds the rest as a JSON
tree in which each tensor appears as a reference ``{"$tensor": name}``. JSON lacks tuples, sets,
dicts with non-string keys and the run's ``Evaluation`` records, so those are tagged too
(``$tuple``, ``$set``, ``$items``, ``$evaluation``). Loading parses JSON and raw tensor bytes
only: nothing in the file is ever unpickled or executed, so a checkpoint received from someone
else, or planted in the checkpoint folder, can at worst be refused.

Writes are atomic and durable: the bytes go to a temporary file in the same folder, which is
fsynced, renamed over the previous checkpoint and followed by an fsync of the folder, so a
crash or power loss at any moment leaves the old or the new checkpoint, never a torn file. The
temporary file's name carries the writer's host and pid, so ``sweep`` can remove the strays of
killed writers without touching the write of a run still going on.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
from dataclasses import fields
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from fmtlbench import signals
from fmtlbench.atomic import fsync_folder
from fmtlbench.engine import Evaluation
from fmtlbench.errors import CheckpointError

#: File name of a run's checkpoint inside ``<checkpoint_dir>/<run_id>/``.
NAME = "checkpoint.safetensors"
#: Name of the pickled checkpoints of earlier versions, which are refused, never loaded.
LEGACY_NAME = "checkpoint.pt"
#: Marker and version of this layout, stored in the safetensors metadata.
FORMAT, VERSION = "fmtlbench-checkpoint", "1"
#: Upper bound on the JSON header the loader is willing to read (safetensors' own limit).
MAX_HEADER = 100_000_000


def checkpoint_path(root: Path, run_id: str) -> Path:
    return Path(root) / run_id / NAME


# ---------------------------------------------------------------------------- flattening
def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor], seen: dict) -> Any:
    """The JSON tree of ``obj``; its tensors go into ``tensors`` under their path."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, torch.Tensor):
        return {"$tensor": _add_tensor(obj, path, tensors, seen)}
    if isinstance(obj, Evaluation):
        return {
            "$evaluation": {
                f.name: _encode(getattr(obj, f.name), f"{path}/{f.name}", tensors, seen)
                for f in fields(obj)
            }
        }
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, f"{path}/{i}", tensors, seen) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors, seen) for i, v in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        return {"$set": [_encode(v, f"{path}/{i}", tensors, seen) for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, f"{path}/{k}", tensors, seen) for k, v in obj.items()}
        return {
            "$items": [
                [
                    _encode(k, f"{path}/key{i}", tensors, seen),
                    _encode(v, f"{path}/{k}", tensors, seen),
                ]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at {path or '/'}")


def _add_tensor(t: torch.Tensor, path: str, tensors: dict[str, torch.Tensor], seen: dict) -> str:
    """Store ``t`` once: the same tensor reached twice (e.g. an anchor that is also a client's
    state) is one entry referenced twice; views get their own copy, since safetensors refuses
    tensors that share memory."""
    t = t.detach()
    key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride(), t.storage_offset())
    if t.numel() and key in seen:
        return seen[key]
    stored = t.to("cpu").contiguous()
    whole = stored.untyped_storage().nbytes() == stored.numel() * stored.element_size()
    ptrs = seen.setdefault("ptrs", set())
    if not whole or not stored.numel() or stored.data_ptr() in ptrs:
        stored = stored.clone()
    ptrs.add(stored.data_ptr())
    name, n = path.lstrip("/") or "tensor", 1
    while name in tensors:
        name, n = f"{path.lstrip('/')}#{n}", n + 1
    tensors[name] = stored
    seen[key] = name
    return name


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((tag, value),) = node.items()
        if tag == "$tensor":
            return tensors[value]
        if tag == "$tuple":
            return tuple(_decode(v, tensors) for v in value)
        if tag == "$set":
            return {_decode(v, tensors) for v in value}
        if tag == "$items":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
        if tag == "$evaluation":
            return Evaluation(**{k: _decode(v, tensors) for k, v in value.items()})
    return {k: _decode(v, tensors) for k, v in node.items()}


def encode(payload: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint holding ``payload`` (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(payload, "", tensors, {})
    metadata = {"format": FORMAT, "version": VERSION, "tree": json.dumps(tree)}
    return safetensors.torch.save(tensors, metadata=metadata)


def decode(data: bytes, source: Path | str) -> dict[str, Any]:
    """The payload of checkpoint bytes; anything else raises ``CheckpointError``."""
    not_ours = (
        f"{source} is not an fmtlbench checkpoint (checkpoints are safetensors files written "
        "by `fmtlbench run`); it was not loaded. Start the run again without --resume"
    )
    if len(data) < 8:
        raise CheckpointError(not_ours)
    (size,) = struct.unpack("<Q", data[:8])
    if not 2 <= size <= min(len(data) - 8, MAX_HEADER):
        raise CheckpointError(not_ours)
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
        meta = header["__metadata__"]
        ours = meta["format"] == FORMAT
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(not_ours) from None
    if not ours:
        raise CheckpointError(not_ours)
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{source} is a checkpoint of layout version {meta.get('version')!r}, this "
            f"fmtlbench reads version {VERSION}: resume it with the fmtlbench that wrote it"
        )
    try:
        tensors = safetensors.torch.load(data)
        payload = _decode(json.loads(meta["tree"]), tensors)
    except Exception as exc:  # noqa: BLE001 - any damage ends as one message
        raise CheckpointError(
            f"{source} is a damaged fmtlbench checkpoint ({type(exc).__name__}: {exc}); "
            "start the run again without --resume"
        ) from None
    if not isinstance(payload, dict):
        raise CheckpointError(not_ours)
    return payload


# ---------------------------------------------------------------------------- files
def _temp_prefix() -> str:
    return f".{NAME}.{socket.gethostname()}."


def _temp_path(path: Path) -> Path:
    return path.parent / f"{_temp_prefix()}{os.getpid()}.tmp"


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as the checkpoint at ``path``, atomically and durably.

    A full disk (ENOSPC, or EFBIG from a file-size limit) raises ``CheckpointError`` naming the
    folder and the space needed; the previous checkpoint is left as it was.
    """
    path = Path(path)
    data = encode(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        signals.pause("checkpoint-write", payload.get("round"))  # test hook, inert by default
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint yet"
            raise CheckpointError(
                f"no space to write the checkpoint in {path.parent}: it needs "
                f"{_mb(len(data))}, {_mb(free)} are free ({os.strerror(exc.errno)}; {kept}); "
                "free some space or set checkpoint_dir to another disk"
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def load(path: Path) -> dict[str, Any]:
    """The payload of the checkpoint at ``path``, read as data (never unpickled)."""
    path = Path(path)
    legacy = path.with_name(LEGACY_NAME)
    if not path.is_file():
        if legacy.is_file():
            raise CheckpointError(
                f"{legacy} is a pickled checkpoint of an older fmtlbench; it is not loaded "
                "because unpickling can run arbitrary code. Start the run again"
            )
        raise CheckpointError(
            f"no checkpoint at {path}: the run finished (checkpoints are removed then) or "
            "was started with another --checkpoint-dir"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}") from None
    return decode(data, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(root: Path) -> list[Path]:
    """Remove the temporary files that killed checkpoint writes left under ``root``.

    Only files of this host whose writing process is gone are removed (a temp of a run still
    going on is being written right now); ``checkpoint.tmp`` is the stray name of earlier
    versions. Returns what was removed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    prefix = _temp_prefix()
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            name = item.name
            stray = name == "checkpoint.tmp"
            if name.startswith(prefix) and name.endswith(".tmp"):
                pid = name[len(prefix) : -len(".tmp")]
                stray = pid.isdigit() and not _alive(int(pid))
            if stray:
                item.unlink(missing_ok=True)
                removed.append(item)
    return removed


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
