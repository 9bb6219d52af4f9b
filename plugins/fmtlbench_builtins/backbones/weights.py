"""Reading backbone weight files and timm's cache without touching the network.

A weight file is read as a plain state dict (``weights_only``; safetensors when installed), so
loading a checkpoint never executes code from it; timm's pretrained weights are read from the
local Hugging Face cache with the hub switched to offline mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fmtlbench import lazy
from fmtlbench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import Tensor

torch = lazy.module("torch")


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a weight file, read without executing code from it."""
    if not path.is_file():
        raise ConfigError(f"backbone weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ConfigError(
                f"backbone weights file {path}: reading .safetensors needs the safetensors "
                "package; install it or save the state dict with torch.save as .pth"
            ) from exc
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"backbone weights file {path} cannot be read as a state dict "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            f"backbone weights file {path} does not hold a state dict (a mapping of parameter "
            "names to tensors)"
        )
    return dict(state)


@contextmanager
def offline_hub() -> Iterator[None]:
    """Switch huggingface_hub to offline mode for the duration of the block.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is imported, so setting the
    variable alone does nothing once timm has imported it; the module constant is switched too
    and both are restored afterwards.
    """
    from huggingface_hub import constants

    old_env, old_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
