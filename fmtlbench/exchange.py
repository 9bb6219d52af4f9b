"""The names under which clients exchange state entries, so that heterogeneous clients line up.

A state-dict key is local to one model structure; an exchange name is what algorithms see, and
two clients' entries are combined only when their exchange names are equal:

- encoder entries and decoder entries shared by all tasks keep their key;
- task-specific entries are named ``<dataset>/<key>``: the same task on another dataset is
  another task (other classes, other label semantics), so it is never averaged with it;
- when every client holds exactly one task (the study's single-decoder "SD" rows), the decoder
  bodies have the same structure whatever the task, so they are exchanged under a task-agnostic
  alias (the task segment of the key replaced by ``*``), while the task heads stay private.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fmtlbench.errors import IncompatibleError, RegistryError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

PRIVATE_IN_SD = frozenset({"task"})


def _task_of(model: nn.Module, key: str) -> str | None:
    part, _, inner = key.partition(".")
    if part != "decoder":
        return None
    task_of = getattr(model.decoder, "task_of", None)
    if task_of is None:
        raise RegistryError(
            f"decoder {type(model.decoder).__name__} has no task_of(key): it cannot say which "
            "entries are task-specific, so heterogeneous clients cannot exchange safely"
        )
    return task_of(inner)


def _alias(key: str, task: str) -> str:
    parts = key.split(".")
    if task not in parts:
        raise RegistryError(f"task-specific key {key!r} does not contain its task {task!r}")
    return ".".join("*" if p == task else p for p in parts)


def exchange_names(
    models: Sequence[nn.Module], datasets: Sequence[str], groups: Sequence[dict[str, str]]
) -> list[dict[str, str]]:
    """Per client: state key -> exchange name, for every entry that may be exchanged."""
    single = all(len(getattr(m, "tasks", {})) == 1 for m in models)
    out = []
    for model, dataset, tags in zip(models, datasets, groups, strict=True):
        names: dict[str, str] = {}
        for key, group in tags.items():
            task = _task_of(model, key)
            if task is None:
                names[key] = key
            elif single:
                if group not in PRIVATE_IN_SD:
                    names[key] = _alias(key, task)
            else:
                names[key] = f"{dataset}/{key}"
        out.append(names)
    return out


def check_shapes(
    shapes: Sequence[dict[str, tuple[int, ...]]], exchanged: Sequence[Sequence[str]]
) -> None:
    """Refuse a run in which two clients would exchange one name with different shapes."""
    seen: dict[str, tuple[int, tuple[int, ...]]] = {}
    for k, names in enumerate(exchanged):
        for name in names:
            shape = shapes[k][name]
            first = seen.setdefault(name, (k, shape))
            if first[1] != shape:
                raise IncompatibleError(
                    f"clients {first[0]} and {k} would exchange '{name}' with different shapes "
                    f"{first[1]} and {shape}: their models differ there. Exchange the encoder "
                    "only (--set algorithm.params.share=encoder) or use clients with matching "
                    "models"
                )


class ExchangeView:
    """A client's working model seen through exchange names: what client-side algorithm terms
    (FedProx, FedAMP, FedMTL) use to compare live parameters with what the server sent."""

    def __init__(self, module: nn.Module, names: dict[str, str]) -> None:
        self.module = module
        self._parameters = {names[key]: p for key, p in module.named_parameters() if key in names}

    def parameters(self) -> dict[str, nn.Parameter]:
        """Live, trainable parameters of the exchangeable entries, by exchange name."""
        return self._parameters
