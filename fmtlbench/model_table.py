"""Model sizes and costs: parameters per part and FLOPs per forward, for any backbone x arch.

This is the table of SPEC section 4 computed from the real components, so a reader can check
that results and communication costs mean what they mean in the study. Models are built on
PyTorch's "meta" device: shapes without storage, so even the 80 M-parameter Swin-T MD model at
the paper's resolution is sized and costed in a fraction of a second without allocating memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from fmtlbench.components import Backbone, Decoder
from fmtlbench.config import TrainingConfig, load_profile
from fmtlbench.errors import ConfigError
from fmtlbench.model import MultiTaskModel, build_model
from fmtlbench.registry import Registry
from fmtlbench.tasks import TaskSpec

#: The four rows of SPEC section 4 (4 NYUD tasks): backbones x architectures.
STUDY_BACKBONES = ("resnet18", "swin-t")
STUDY_ARCHS = ("md", "tc")
STUDY_DATASET = "nyudv2"
#: Profile whose per-dataset training resolution is the study's (the default table size).
STUDY_PROFILE = "paper"


@dataclass(frozen=True)
class ModelRow:
    """Sizes of one model: parameters per part and FLOPs of one forward of one image.

    ``decoder`` counts every decoder parameter (task heads included) except the TC module,
    which ``module`` counts (0 for decoders without one), as in the study's table.
    """

    backbone: str
    arch: str
    tasks: tuple[str, ...]
    resolution: tuple[int, int]
    encoder: int
    decoder: int
    module: int
    flops: int

    @property
    def total(self) -> int:
        return self.encoder + self.decoder + self.module


def parameter_breakdown(model: MultiTaskModel) -> dict[str, int]:
    """Trainable parameters of ``encoder``, ``decoder`` and the TC ``module``.

    Encoder and decoder follow the parameter groups (``task`` entries belong to the decoder);
    a decoder marks its conditioning module through an optional ``is_conditioning(key)``.
    """
    tags = model.groups()
    conditioning = getattr(model.decoder, "is_conditioning", None)
    counts = {"encoder": 0, "decoder": 0, "module": 0}
    for name, param in model.named_parameters():
        part = "encoder" if tags[name] == "encoder" else "decoder"
        inner = name.partition(".")[2]
        if part == "decoder" and conditioning is not None and conditioning(inner):
            part = "module"
        counts[part] += param.numel()
    return counts


def forward_flops(model: MultiTaskModel, resolution: Sequence[int]) -> int:
    """FLOPs of one forward of a 1 x 3 x H x W image through all of the model's tasks, on the
    model's device, as counted by ``torch.utils.flop_counter`` (2 per multiply-add; only the
    operators it knows: convolutions, matrix products, attention)."""
    device = next(model.parameters()).device
    image = torch.zeros(1, 3, *resolution, device=device)
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(image)
    return int(counter.get_total_flops())


def model_row(
    backbone: Backbone,
    arch: Decoder,
    tasks: dict[str, TaskSpec],
    resolution: tuple[int, int],
    device: str = "meta",
) -> ModelRow:
    """Build one model on ``device`` (``meta``: no memory, no initialisation) and size it."""
    with torch.device(device):
        model = build_model(backbone, arch, tasks, resolution)
    parts = parameter_breakdown(model)
    return ModelRow(
        backbone=backbone.name,
        arch=arch.name,
        tasks=tuple(tasks),
        resolution=(int(resolution[0]), int(resolution[1])),
        flops=forward_flops(model, resolution),
        **parts,
    )


def study_resolution(dataset: str) -> tuple[int, int]:
    """The study's training crop for ``dataset`` (from the ``paper`` profile)."""
    table = load_profile(STUDY_PROFILE)["training"]["resolution"]
    height, width = TrainingConfig.per_dataset(table, dataset)
    return int(height), int(width)


def select_tasks(
    registry: Registry, dataset: str, tasks: Sequence[str] | None
) -> dict[str, TaskSpec]:
    """The ``TaskSpec`` of each named task of ``dataset`` (all of them when ``tasks`` is empty)."""
    known: dict[str, TaskSpec] = registry.get("dataset", dataset).tasks
    names = list(tasks) if tasks else list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"--tasks: dataset {dataset!r} has no task {unknown[0]!r}; its tasks: "
            f"{', '.join(known)}"
        )
    return {name: known[name] for name in dict.fromkeys(names)}


def model_rows(
    registry: Registry,
    backbones: Sequence[str] = STUDY_BACKBONES,
    archs: Sequence[str] = STUDY_ARCHS,
    dataset: str = STUDY_DATASET,
    tasks: Sequence[str] | None = None,
    resolution: tuple[int, int] | None = None,
) -> list[ModelRow]:
    """One row per backbone x arch (components with their default parameters), for the given
    tasks of ``dataset`` (default all) at ``resolution`` (default: the study's crop)."""
    specs = select_tasks(registry, dataset, tasks)
    size = resolution if resolution is not None else study_resolution(dataset)
    rows = []
    for backbone in backbones:
        for arch in archs:
            rows.append(
                model_row(
                    registry.get("backbone", backbone)(),
                    registry.get("decoder", arch)(),
                    specs,
                    size,
                )
            )
    return rows


__all__ = [
    "ModelRow",
    "forward_flops",
    "model_row",
    "model_rows",
    "parameter_breakdown",
    "select_tasks",
    "study_resolution",
]
