"""The components a run configuration chooses, instantiated and validated.

Kept apart from ``fmtlbench.federation`` (which builds models and data loaders, and so imports
torch) so that validating a configuration — ``fmtlbench run`` before its first import of torch,
every cell of a sweep — costs only the plugins' light modules (``fmtlbench.lazy``).
"""

from __future__ import annotations

from typing import Any

from fmtlbench.config import RunConfig
from fmtlbench.data import component_params
from fmtlbench.registry import Registry
from fmtlbench.scenario import resolve_scenario

#: RunConfig field -> component kind it names.
CHOICES = {
    "algorithm": "algorithm",
    "arch": "decoder",
    "backbone": "backbone",
    "executor": "executor",
}


def resolve_components(config: RunConfig, registry: Registry) -> dict[str, Any]:
    """Instantiate the components ``config`` names, validating their parameters, and resolve
    the scenario: every naming or parameter error surfaces here, before any work starts."""
    chosen: dict[str, Any] = {}
    for field_name, kind in CHOICES.items():
        choice = getattr(config, field_name)
        cls = registry.get(kind, choice.name)
        chosen[field_name] = cls(component_params(cls, choice.params, f"{field_name}.params"))
    weighting = config.training.weighting
    cls = registry.get("weighting", weighting.name)
    chosen["weighting"] = cls(component_params(cls, weighting.params, "training.weighting.params"))
    chosen["scenario"] = resolve_scenario(config.scenario, registry, config.clients)
    return chosen
