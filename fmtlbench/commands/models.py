"""``fmtlbench models``: what the model families cost (parameters and FLOPs).

Only click is imported here; torch and the plugins load when a sub-command runs.
"""

from __future__ import annotations

import re

import click

from fmtlbench.errors import ConfigError


def _names(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also accept comma-separated lists: ``-b a,b -b c``."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def parse_resolution(text: str) -> tuple[int, int]:
    """``"448x576"`` -> ``(448, 576)``; anything else is a one-line error naming the option."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 16:
        raise ConfigError(
            f"--resolution {text!r}: expected HEIGHTxWIDTH with both at least 16, e.g. 448x576"
        )
    return int(match[1]), int(match[2])


@click.group()
def models() -> None:
    """Model families: parameter counts and cost per forward."""


@models.command("table")
@click.option(
    "--backbone",
    "backbones",
    multiple=True,
    help="Backbone(s), repeatable or comma-separated [default: resnet18,swin-t].",
)
@click.option(
    "--arch", "archs", multiple=True, help="Architecture(s), e.g. md,tc [default: md,tc]."
)
@click.option("--dataset", default="nyudv2", show_default=True, help="Dataset giving the tasks.")
@click.option("--tasks", help="Comma-separated tasks of the dataset [default: all of them].")
@click.option(
    "--resolution", help="Input size HxW [default: the study's crop for the dataset, 448x576]."
)
def table(
    backbones: tuple[str, ...],
    archs: tuple[str, ...],
    dataset: str,
    tasks: str | None,
    resolution: str | None,
) -> None:
    """Encoder / decoder / TC-module / total parameters and GFLOPs per forward.

    Without options: the four rows of the study's table (resnet18 and swin-t, MD and TC, four
    NYUD-v2 tasks) at the study's resolution.
    """
    from rich.console import Console
    from rich.table import Table

    from fmtlbench.model_table import STUDY_ARCHS, STUDY_BACKBONES, model_rows
    from fmtlbench.registry import load_registry

    size = parse_resolution(resolution) if resolution else None
    rows = model_rows(
        load_registry(),
        backbones=_names(backbones) or STUDY_BACKBONES,
        archs=_names(archs) or STUDY_ARCHS,
        dataset=dataset,
        tasks=_names((tasks,)) if tasks else None,
        resolution=size,
    )
    first = rows[0]
    out = Table(
        title=f"{dataset}: {', '.join(first.tasks)} at {first.resolution[0]}x{first.resolution[1]}",
        caption="parameters in millions; GFLOPs of one forward of one image through all tasks "
        "(torch.utils.flop_counter: 2 per multiply-add, convolutions and matrix products)",
    )
    for column in ("backbone", "arch", "encoder", "decoder", "TC module", "total", "GFLOPs"):
        out.add_column(column, justify="left" if column in ("backbone", "arch") else "right")
    for row in rows:
        out.add_row(
            row.backbone,
            row.arch,
            f"{row.encoder / 1e6:.2f}",
            f"{row.decoder / 1e6:.2f}",
            f"{row.module / 1e6:.2f}" if row.module else "-",
            f"{row.total / 1e6:.2f}",
            f"{row.flops / 1e9:.2f}",
        )
    Console().print(out)
