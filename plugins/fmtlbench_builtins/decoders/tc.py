"""The task-conditioned architecture (TC): one decoder shared by all tasks (SPEC section 4).

Instead of one decoder per task, a single U-Net-like decoder (the MD layout: 1x1 skips, then
upsample-concatenate-3x3 stages) serves every task; it learns what is specific to a task through
its normalisation. Every 3x3 conv is followed by instance norm whose per-channel scale and shift
are computed from a task embedding, and the embedding comes from a fixed code per task sent
through a small MLP (8 x Linear(120, 120)): the "TC module". The decoder runs once per task, and
a 1x1 head per task predicts its channels. The 1x1 skip projections stay plain, as in MD (they
do not depend on the task, so they run once per forward): modulating them too would add 0.29 M
parameters on resnet18 and put TC 4.5% above the study's size.

Task codes are derived from the task's name alone, so every client, whatever its task set,
gives the same task the same code and the shared decoder and MLP mean the same thing on all of
them (which is what lets algorithms average them). With the backbone's hinted shapes, four NYUD
tasks give 7.12 M decoder + 0.12 M module parameters on resnet18 (study: 7.09 M + 0.12 M) and
13.76 M + 0.12 M on Swin-T (study: 13.76 M + 0.12 M).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PositiveInt

from fmtlbench import hookimpl
from fmtlbench.components import Decoder, Params
from fmtlbench.tasks import TaskSpec

from .unet import UNetParams, unet_shape

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .tc_layers import SharedDecoder


class TaskConditionedParams(UNetParams):
    """Shape of the shared decoder and of the task embedding."""

    code_dim: PositiveInt = Field(120, description="size of each task's fixed code and embedding")
    mlp_layers: PositiveInt = Field(
        8,
        description="Linear(code_dim, code_dim) layers of the MLP turning a code into an embedding",
    )


class TaskConditioned(Decoder):
    """Task-conditioned (TC): one shared decoder, modulated per task by a task embedding."""

    name = "tc"
    Params: ClassVar[type[Params]] = TaskConditionedParams

    def build(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        tasks: dict[str, TaskSpec],
        *,
        hints: Mapping[str, Any] | None = None,
    ) -> SharedDecoder:
        from .tc_layers import SharedDecoder

        widths, convs = unet_shape(self.params, channels, reductions, tasks, hints, "tc")
        return SharedDecoder(channels, widths, convs, tasks, self.params)


@hookimpl
def register_decoders() -> list[type[Decoder]]:
    return [TaskConditioned]
