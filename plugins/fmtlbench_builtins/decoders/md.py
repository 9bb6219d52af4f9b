"""The multi-decoder architecture (MD): one U-Net-like decoder per task (SPEC section 4).

Every task gets its own decoder, so clients holding different task sets have differently shaped
models; algorithms then exchange the encoder only (the "-E" variants) or the decoders of the
tasks clients share. Each decoder projects every encoder scale with a 1x1 "skip" conv, then
walks from the coarsest scale to the finest: upsample, concatenate the skip, a few 3x3
conv-BN-ReLU layers; finally it upsamples to full resolution and a 1x1 head predicts the task's
channels. Widths and layers per stage default to the backbone's ``decoder_hints`` (the study's
shapes): ResNet widths [64, 128, 256, 256, 512] with three 3x3 layers per stage give 26.44 M
decoder parameters for four NYUD tasks (study: 26.21 M); Swin widths [96, 192, 384, 768] with
2, 2 and 6 layers in the three stages, then one final upsampling from stride 4, give 52.26 M
(study: 52.28 M).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from fmtlbench import hookimpl
from fmtlbench.components import Decoder, Params
from fmtlbench.tasks import TaskSpec

from .unet import UNetParams, unet_shape

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .md_layers import TaskDecoders


class MultiDecoder(Decoder):
    """Multi-decoder (MD): one U-Net-like decoder and 1x1 head per task."""

    name = "md"
    Params: ClassVar[type[Params]] = UNetParams

    def build(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        tasks: dict[str, TaskSpec],
        *,
        hints: Mapping[str, Any] | None = None,
    ) -> TaskDecoders:
        from .md_layers import TaskDecoder, TaskDecoders

        widths, convs = unet_shape(self.params, channels, reductions, tasks, hints, "md")
        decoders = {
            name: TaskDecoder(channels, widths, convs, reductions[0], spec.channels)
            for name, spec in tasks.items()
        }
        return TaskDecoders(decoders, scales=len(channels))


@hookimpl
def register_decoders() -> list[type[Decoder]]:
    return [MultiDecoder]
