"""Tasks of a dataset and the registered task kinds they are of.

Every dataset names its tasks with ``TaskSpec`` objects; a spec's ``name`` is the name of a
registered task kind (``fmtlbench.components.TaskKind``, ``fmtlbench list tasks``), which
knows the loss, the meter, the primary metric and its direction, the display scale and how
augmentation transforms the labels. This module is the one place that resolves a task's name
to its kind: the engine, the leaderboard and the config all go through ``kind_of``, so no
other module keeps a table keyed by task names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmtlbench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fmtlbench.components import TaskKind
    from fmtlbench.registry import Registry

#: Label value of pixels that carry no supervision (void labels, invalid depth, padding).
IGNORE = 255

#: One instance per kind class: kinds are stateless, so every spec of a kind shares it.
_INSTANCES: dict[type, TaskKind] = {}


class UnknownTaskError(ConfigError, KeyError):
    """A task name that no installed task kind has; a ``KeyError`` too, so dict-style callers
    can catch it."""

    # KeyError would print the message in quotes; users should see a plain sentence.
    __str__ = Exception.__str__


def known_tasks(registry: Registry | None = None) -> list[str]:
    """Names of the installed task kinds, in the order their plugins registered them (the
    built-ins in the study's order: semantic classes, parts, depth, normals, edges, saliency)."""
    from fmtlbench.registry import load_registry

    return (registry or load_registry()).registered("task")


def kind_of(task: str, registry: Registry | None = None) -> TaskKind:
    """The task kind named ``task`` (an ``UnknownTaskError`` naming the installed ones)."""
    from fmtlbench.errors import UnknownComponentError
    from fmtlbench.registry import load_registry

    try:
        cls = (registry or load_registry()).get("task", task)
    except UnknownComponentError as exc:
        raise UnknownTaskError(f"task {task!r} is of no installed task kind: {exc}") from None
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]


def primary_metric(task: str, chosen: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(metric name, lower is better) of the metric that represents ``task`` in tables and
    Δ%: ``chosen[task]`` when a run picked one of the kind's alternatives, else its default.
    Every reader of primaries (engine, Δ%, leaderboard) goes through here."""
    return kind_of(task).primary_metric((chosen or {}).get(task))


def display_scale(task: str, metric: str) -> float:
    """Factor at which tables print ``metric`` of ``task`` (1 for tasks of no installed kind)."""
    try:
        return kind_of(task).display_scale.get(metric, 1.0)
    except UnknownTaskError:
        return 1.0


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset says about one of its tasks.

    ``name`` is the task kind (``fmtlbench list tasks``). ``channels`` is the number of output
    channels a decoder head predicts (classes for segmentation tasks). ``classes`` is set for
    label-map tasks (class ids as labels) and ``None`` otherwise. ``pos_weight`` is the
    positive-class weight of balanced BCE. ``match_distance`` is the odsF matching tolerance
    as a fraction of the image diagonal (BSDS-style; it depends on the dataset's annotation,
    so the dataset declares it).

    Two fields are run settings, stamped in by ``build_federation`` from the config so that
    every evaluator (also in Ray workers) sees them: ``odsf_thresholds`` (0: no odsF/oisF) and
    ``chosen_primary`` (one of the kind's alternatives replacing its default primary).
    """

    name: str
    channels: int
    classes: int | None = None
    pos_weight: float | None = None
    match_distance: float | None = None
    odsf_thresholds: int = 0
    chosen_primary: str | None = None

    @property
    def kind(self) -> TaskKind:
        """The registered task kind this task is of."""
        return kind_of(self.name)

    @property
    def loss_weight(self) -> float:
        """The study's fixed weight ``q_t`` of this task's loss."""
        return self.kind.loss_weight

    @property
    def primary(self) -> tuple[str, bool]:
        """(metric name, lower is better) of the metric that represents this task."""
        return self.kind.primary_metric(self.chosen_primary)
