"""A picture of who holds what, in the spirit of the FMTL-Bench study's Figure 2.

Clients run along the x axis, tasks along the y axis; a client has a marker in the row of every
task it learns, coloured by its dataset, with the marker's area proportional to the client's
training images. Imbalance across clients (quantity skew, one large cross-domain client) is
then visible at a glance.

The marker geometry (``markers``) is kept apart from the drawing so it can be checked without
reading pixels. matplotlib is imported inside ``draw`` and used through its object API with the
Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fmtlbench.partition import Manifest

#: Marker area (points^2) of the client with the most training images.
LARGEST_AREA = 900.0


@dataclass(frozen=True)
class Marker:
    """One (client, task) cell of the figure."""

    client: int
    task: str
    dataset: str
    samples: int
    area: float


def task_rows(manifest: Manifest) -> list[str]:
    """The tasks any client learns, in the order their kinds are registered (the built-ins in
    the study's order); tasks of no installed kind follow alphabetically."""
    from fmtlbench.tasks import known_tasks

    present = {t for c in manifest.clients for t in c.tasks}
    known = [t for t in known_tasks() if t in present]
    return known + sorted(present - set(known))


def markers(manifest: Manifest) -> list[Marker]:
    """Every (client, task) marker; areas are proportional to training images."""
    largest = max((len(c.train) for c in manifest.clients), default=0) or 1
    return [
        Marker(c.index, task, c.dataset, len(c.train), LARGEST_AREA * len(c.train) / largest)
        for c in manifest.clients
        for task in c.tasks
    ]


def draw(manifest: Manifest, path: Path, title: str = "") -> Path:
    """Write the figure of ``manifest`` as a PNG to ``path`` and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = task_rows(manifest)
    points = markers(manifest)
    datasets = list(dict.fromkeys(c.dataset for c in manifest.clients))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    colour = {name: palette[i % len(palette)] for i, name in enumerate(datasets)}

    clients = len(manifest.clients)
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * clients), 1.4 + 0.7 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name in datasets:
        mine = [p for p in points if p.dataset == name]
        axes.scatter(
            [p.client for p in mine],
            [rows.index(p.task) for p in mine],
            s=[p.area for p in mine],
            color=colour[name],
            alpha=0.75,
            edgecolors="black",
            linewidths=0.5,
            label=name,
        )
    for p in points:
        axes.annotate(
            str(p.samples),
            (p.client, rows.index(p.task)),
            textcoords="offset points",
            xytext=(0, -4 - (p.area**0.5) / 2),
            ha="center",
            va="top",
            fontsize=7,
        )
    axes.set_xticks(range(clients), [f"C{c.index + 1}" for c in manifest.clients])
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlim(-0.7, clients - 0.3)
    axes.set_ylim(len(rows) - 0.4, -0.8)
    axes.set_xlabel("client (marker area = training images)")
    axes.grid(True, linestyle=":", alpha=0.5)
    axes.set_axisbelow(True)
    legend = axes.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(datasets), fontsize=8
    )
    for handle in legend.legend_handles:
        handle.set_sizes([60.0])  # type: ignore[union-attr]
    axes.set_title(title or manifest.scenario, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
