"""The multi-task model: one encoder, one decoder, every state-dict entry tagged with a group.

Federated algorithms decide what to exchange by parameter group (``fmtlbench.components.GROUPS``),
never by key names. So the model must be able to say, for every entry of its state dict, which
group it belongs to, and must refuse to exist when it cannot: an untagged entry would silently
stay out of (or slip into) the exchange, which is exactly the kind of defect (BN statistics never
exchanged) this benchmark exists to avoid.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from fmtlbench.components import GROUPS, PARAMETER_GROUPS, Backbone, Decoder
from fmtlbench.errors import ConfigError, RegistryError
from fmtlbench.tasks import TaskSpec

#: Groups a decoder's ``group_of`` may give its parameters.
DECODER_PARAMETER_GROUPS = frozenset({"decoder", "task"})


class MultiTaskModel(nn.Module):
    """An encoder shared by all tasks and a decoder producing one full-resolution map per task.

    The encoder runs once per forward; the decoder runs only for the requested tasks, so a
    task-by-task schedule does not pay for tasks it does not train.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, tasks: dict[str, TaskSpec]) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("a model needs at least one task")
        self.encoder = encoder
        self.decoder = decoder
        self.tasks = dict(tasks)

    def forward(self, image: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Predictions ``{task: N x channels x H x W}`` at the input's size.

        Outputs are resized bilinearly when the decoder's resolution differs from the image's
        (input sizes not divisible by the encoder's strides), then passed through the task kind's
        ``activate`` (directions come out L2-normalised, so losses and metrics see unit vectors).
        """
        names = list(self.tasks) if tasks is None else list(tasks)
        unknown = [name for name in names if name not in self.tasks]
        if unknown:
            raise ValueError(f"tasks {unknown} are not tasks of this model ({list(self.tasks)})")
        features = self.encoder(image)
        outputs = self.decoder(features, names)
        size = tuple(image.shape[-2:])
        result: dict[str, Tensor] = {}
        for name in names:
            out = outputs[name]
            if tuple(out.shape[-2:]) != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            result[name] = self.tasks[name].kind.activate(out)
        return result

    def groups(self) -> dict[str, str]:
        """Every ``state_dict()`` key mapped to its parameter group.

        Encoder parameters are ``encoder`` and its buffers ``encoder.stats``; decoder buffers are
        ``decoder.stats`` and decoder parameters are what the decoder's ``group_of`` says
        (``decoder`` or ``task``). Raises ``RegistryError`` if any entry is left untagged or is
        tagged with an unknown group.
        """
        parameters = {name for name, _ in self.named_parameters(remove_duplicate=False)}
        buffers = {name for name, _ in self.named_buffers(remove_duplicate=False)}
        tags: dict[str, str] = {}
        for key in self.state_dict():
            tags[key] = self._group_of(key, key in parameters, key in buffers)
        return tags

    def _group_of(self, key: str, is_parameter: bool, is_buffer: bool) -> str:
        """The group of one state-dict key; see ``groups``."""
        part, _, inner = key.partition(".")
        if part == "encoder" and (is_parameter or is_buffer):
            return "encoder" if is_parameter else "encoder.stats"
        if part == "decoder" and is_buffer:
            return "decoder.stats"
        if part == "decoder" and is_parameter:
            group = self.decoder.group_of(inner)
            if group not in DECODER_PARAMETER_GROUPS:
                raise RegistryError(
                    f"decoder {type(self.decoder).__name__} tags parameter {inner!r} as "
                    f"{group!r}; decoder parameters must be one of "
                    f"{sorted(DECODER_PARAMETER_GROUPS)} (known groups: {list(GROUPS)})"
                )
            return group
        raise RegistryError(
            f"state-dict entry {key!r} belongs to no parameter group: only encoder and decoder "
            "parameters and buffers can be tagged, so it would escape the exchange choice"
        )


def build_model(
    backbone: Backbone,
    decoder: Decoder,
    tasks: dict[str, TaskSpec],
    resolution: tuple[int, int],
) -> MultiTaskModel:
    """Build the encoder for ``resolution``, the decoder on its feature pyramid, and join them.

    The group tags are checked here, once, so that a plugin that forgets to tag an entry fails
    when the model is built rather than silently in the middle of a federated run. A decoder
    whose ``build`` takes a keyword ``hints`` receives the encoder's ``decoder_hints`` (the
    study's decoder shape for that backbone, e.g. ``{"widths": ..., "convs": ...}``); decoders
    written without it are called exactly as before.
    """
    encoder = backbone.build(resolution)
    channels = list(getattr(encoder, "channels", None) or [])
    reductions = list(getattr(encoder, "reductions", None) or [])
    if not channels or len(channels) != len(reductions):
        raise RegistryError(
            f"backbone {backbone.name!r} built a module without matching non-empty `channels` "
            f"and `reductions` lists (got {channels} and {reductions})"
        )
    head = decoder.build(channels, reductions, tasks, **_hint_kwargs(decoder, encoder))
    model = MultiTaskModel(encoder, head, tasks)
    model.groups()
    return model


def _hint_kwargs(decoder: Decoder, encoder: Any) -> dict[str, Any]:
    """``{"hints": encoder.decoder_hints}`` if the decoder's ``build`` takes hints, else ``{}``."""
    if "hints" not in inspect.signature(decoder.build).parameters:
        return {}
    return {"hints": dict(getattr(encoder, "decoder_hints", None) or {})}


def count_parameters(model: MultiTaskModel) -> dict[str, int]:
    """Number of trainable-parameter elements per group (each shared tensor counted once)."""
    tags = model.groups()
    counts = dict.fromkeys(PARAMETER_GROUPS, 0)
    for name, param in model.named_parameters():
        counts[tags[name]] += param.numel()
    return counts


__all__ = ["PARAMETER_GROUPS", "MultiTaskModel", "build_model", "count_parameters"]
