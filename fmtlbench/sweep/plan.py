"""From a sweep spec to validated cells: one full ``RunConfig`` per cell, built by the same
``build_config`` path as ``fmtlbench run``.

Validation happens for every cell before anything runs: a config or component error names the
cell and stops the sweep; a cell the algorithm refuses for its scenario (``IncompatibleError``
while building the federation, which also gives the partition hash of the cache key) is kept
in the plan as *invalid* with its reason, as the study's NULL cells are.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fmtlbench.config import RunConfig, build_config, parse_assignment
from fmtlbench.errors import ConfigError, FmtlbenchError, WeightsMissingError
from fmtlbench.sweep.spec import KIND_OF_PATH, SweepSpec


@dataclass
class Cell:
    """One run of a sweep: its axis values, its config and what is known of it."""

    index: int
    axes: dict[str, Any]
    config: RunConfig
    key: str | None = None
    invalid: str | None = None
    state: str = "pending"
    run_id: str | None = None
    #: A precondition the cell's run needs and this machine lacks (e.g. pretrained weights):
    #: the plan stays useful, the run itself refuses to start until it is met.
    warning: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.axes.items()) or "(single cell)"


def _tree(path: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {path.split(".")[-1]: value}
    for part in reversed(path.split(".")[:-1]):
        node = {part: node}
    return node


def _expand(path: str, values: list[Any], registry) -> list[Any]:
    """``all`` in a component axis is every registered name of that kind."""
    kind = KIND_OF_PATH.get(path)
    out: list[Any] = []
    for value in values:
        if value == "all" and kind:
            out.extend(registry.names(kind))
        else:
            out.append(value)
    unique: list[Any] = []  # not dict.fromkeys: a value may be a list or mapping
    for value in out:
        if value not in unique:
            unique.append(value)
    return unique


def combinations(spec: SweepSpec, registry) -> list[dict[str, Any]]:
    """Every cell's axis values, grids in order, duplicates dropped."""
    seen: list[dict[str, Any]] = []
    for grid in spec.grid:
        axes = {path: _expand(path, values, registry) for path, values in grid.items()}
        for combo in itertools.product(*axes.values()):
            cell = dict(zip(axes, combo, strict=True))
            if cell not in seen:
                seen.append(cell)
    return seen


def fixed_overrides(spec: SweepSpec, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The overrides every cell shares: profile, the spec's ``set`` and the CLI's ``--set``."""
    out: list[dict[str, Any]] = [{"profile": spec.profile}] if spec.profile else []
    out.extend(_tree(k, v) for k, v in spec.fixed.items())
    return out + extra


def build_cells(spec: SweepSpec, registry, extra: list[dict[str, Any]] | None = None) -> list[Cell]:
    """Configs of every cell, each validated with its components; errors name the cell."""
    from fmtlbench.choices import resolve_components

    base = fixed_overrides(spec, extra or [])
    cells = []
    for index, axes in enumerate(combinations(spec, registry)):
        overrides = base + [_tree(k, v) for k, v in axes.items()]
        label = " ".join(f"{k}={v}" for k, v in axes.items())
        try:
            config = build_config(None, overrides)
            resolve_components(config, registry)
        except FmtlbenchError as exc:
            raise ConfigError(f"sweep '{spec.name}' cell {index} ({label}): {exc}") from None
        cells.append(Cell(index, axes, config))
    return cells


def probe(cell: Cell, registry, pilot=None) -> None:
    """Build the cell's federation (no training) to learn its cache key, or why it is invalid.

    Missing pretrained weights do not make a cell invalid: its validity is then judged on the
    same models with random weights, and the missing weights become the cell's warning (its
    cache key, which hashes the weights, stays unknown until they are there). With a
    ``pilot`` (``fmtlbench.sweep.pilot.Pilot``) the cell's estimated cost goes to
    ``extra["cost"]``."""
    from fmtlbench import cachekey
    from fmtlbench.federation import build_federation
    from fmtlbench.runner import run_tags

    config = cell.config
    try:
        try:
            fed = build_federation(config, registry)
        except WeightsMissingError as exc:
            cell.warning = str(exc)
            config = without_weights(config)
            fed = build_federation(config, registry)
    except FmtlbenchError as exc:
        cell.invalid, cell.state = str(exc), "invalid"
        return
    cell.extra["structures"] = sorted({str(k) for k in fed.models})
    if pilot is not None:
        cell.extra["cost"] = pilot.cost(fed)
    if cell.warning is None:
        cell.key = run_tags(fed, registry)[cachekey.TAG]


def without_weights(config: RunConfig) -> RunConfig:
    """The same run from random backbone weights: same models, nothing to load."""
    data = config.dump()
    data["backbone"].setdefault("params", {})["weights"] = "scratch"
    return RunConfig.model_validate(data)


def grid_from_assignment(text: str) -> dict[str, list[Any]]:
    """``--grid key=v1,v2`` -> ``{key: [v1, v2]}``, each value parsed as YAML (as ``--set``)."""
    key, sep, raw = text.partition("=")
    values = [parse_assignment(f"v={v}")["v"] for v in raw.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise ConfigError(f"--grid '{text}' must look like key.path=v1,v2")
    return {key.strip(): values}
