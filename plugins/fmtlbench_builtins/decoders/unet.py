"""The shape shared by the U-Net-like decoders (MD and TC): widths per scale and 3x3 layers
per upsampling stage, from explicit parameters, the backbone's hints or fallbacks, checked once
for both architectures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, PositiveInt

from fmtlbench.components import Params
from fmtlbench.errors import ConfigError
from fmtlbench.tasks import TaskSpec

#: Layers per stage when neither the parameters nor the backbone say.
DEFAULT_CONVS = 3


class UNetParams(Params):
    """Shape of a U-Net-like decoder; unset fields follow the backbone's ``decoder_hints``."""

    widths: tuple[PositiveInt, ...] | None = Field(
        None,
        min_length=1,
        description="decoder channels at each encoder scale, finest first, one per scale "
        "(default: the backbone's hint, e.g. the study's ResNet or Swin widths; else the "
        "encoder's channels)",
    )
    convs: PositiveInt | tuple[PositiveInt, ...] | None = Field(
        None,
        description="3x3 layers per upsampling stage: one number for all stages or one per "
        f"stage, finest first (default: the backbone's hint, else {DEFAULT_CONVS})",
    )


def unet_shape(
    params: UNetParams,
    channels: Sequence[int],
    reductions: Sequence[int],
    tasks: Mapping[str, TaskSpec],
    hints: Mapping[str, Any] | None,
    who: str,
) -> tuple[list[int], list[int]]:
    """Widths per scale and 3x3 layers per stage (one stage fewer than scales), after checking
    the encoder pyramid and the task names the decoder ``who`` is built for.

    Explicit parameters win over the backbone's hints, which win over the fallbacks, so a
    user can always override the study's shape and a third-party backbone without hints works.
    """
    if len(channels) != len(reductions):
        raise ConfigError(f"{who} decoder: {len(channels)} channels but {len(reductions)} strides")
    check_tasks(tasks, who)
    hints = hints or {}
    widths = list(params.widths or hints.get("widths") or channels)
    if len(widths) != len(channels):
        raise ConfigError(
            f"{who} decoder: widths has {len(widths)} entries but the backbone gives "
            f"{len(channels)} feature scales (channels {list(channels)}); set "
            "arch.params.widths to one value per scale"
        )
    convs = params.convs if params.convs is not None else hints.get("convs", DEFAULT_CONVS)
    stages = len(widths) - 1
    per_stage = [int(convs)] * stages if isinstance(convs, int) else [int(c) for c in convs]
    if len(per_stage) != stages or min(per_stage, default=1) < 1:
        raise ConfigError(
            f"{who} decoder: convs {convs!r} must be one positive number or {stages} of them "
            f"(one per upsampling stage); set arch.params.convs"
        )
    return widths, per_stage


def check_tasks(tasks: Mapping[str, TaskSpec], who: str) -> None:
    """Task names become module names and key segments: they must be non-empty, dot-free."""
    if not tasks:
        raise ConfigError(f"{who} decoder: no tasks to decode")
    bad = [name for name in tasks if not name or "." in name]
    if bad:
        raise ConfigError(f"{who} decoder: task names {bad} cannot be module names")
