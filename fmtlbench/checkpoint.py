"""Atomic checkpoints: the resume point of an interrupted run.

A checkpoint is written to a temporary file and renamed over the previous one, so that an
interruption at any moment leaves either the old or the new checkpoint, never a torn file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fmtlbench.errors import ConfigError


def checkpoint_path(root: Path, run_id: str) -> Path:
    return Path(root) / run_id / "checkpoint.pt"


def save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"no checkpoint at {path}: the run finished (checkpoints are removed then) or "
            "was started with another --checkpoint-dir"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a foreign or damaged file
        raise ConfigError(f"checkpoint {path} cannot be read: {exc}") from None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
