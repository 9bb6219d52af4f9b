"""Scenarios are data: which clients exist, on which dataset, with which tasks and data shares.

A ``ScenarioSpec`` is declarative and can be loaded from a YAML, TOML or JSON file, so users
write their own scenarios without code. Plugins register built-in specs through the
``register_scenarios`` hook. Materialising a spec into concrete sample ids is the job of
``fmtlbench.partition``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fmtlbench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fmtlbench.registry import Registry


class ClientGroup(BaseModel):
    """``count`` clients on one dataset with the same task set.

    ``tasks="all"`` means every task the dataset labels. ``shares`` gives each client's relative
    amount of data among all clients of the same dataset: ``"equal"`` (1 each), ``"skew"``
    (1, 2, ..., count within the group) or an explicit list of ``count`` positive numbers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    tasks: list[str] | Literal["all"] = "all"
    count: int = Field(1, ge=1)
    shares: list[float] | Literal["equal", "skew"] = "equal"

    @model_validator(mode="after")
    def _shares_match_count(self) -> ClientGroup:
        if isinstance(self.shares, list):
            if len(self.shares) != self.count:
                raise ValueError(f"shares has {len(self.shares)} entries for {self.count} clients")
            if any(s <= 0 for s in self.shares):
                raise ValueError("shares must be positive")
        return self

    def client_shares(self) -> list[float]:
        if self.shares == "equal":
            return [1.0] * self.count
        if self.shares == "skew":
            return [float(i + 1) for i in range(self.count)]
        return list(self.shares)


class ScenarioSpec(BaseModel):
    """A named federated data scenario: client groups plus the partitioner that splits data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    description: str = ""
    groups: list[ClientGroup] = Field(min_length=1)
    partitioner: str = "iid"
    partitioner_params: dict[str, Any] = Field(default_factory=dict)
    local_test_fraction: float = Field(0.1, gt=0, lt=1)

    @property
    def num_clients(self) -> int:
        return sum(g.count for g in self.groups)


def load_scenario_file(path: Path) -> ScenarioSpec:
    """Read a user's scenario file; errors name the file and the offending field."""
    from fmtlbench.config import read_mapping

    data = read_mapping(path)
    data.setdefault("name", path.stem)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        from fmtlbench.config import describe_validation_error

        raise ConfigError(f"scenario file {path}: {describe_validation_error(exc)}") from None


def resolve_scenario(name: str, registry: Registry, clients: int | None = None) -> ScenarioSpec:
    """A registered scenario by name, or a scenario file by path; ``clients`` resizes a
    single-group scenario (the study's iid1 with K = 2, 4, 6, 8)."""
    path = Path(name)
    if path.suffix in {".yaml", ".yml", ".toml", ".json"}:
        spec = load_scenario_file(path)
    else:
        spec = registry.get("scenario", name)
    if clients is None:
        return spec
    if len(spec.groups) != 1:
        raise ConfigError(
            f"--clients/clients needs a single-group scenario; '{spec.name}' has "
            f"{len(spec.groups)} groups (write a scenario file instead)"
        )
    group = spec.groups[0]
    shares = group.shares if isinstance(group.shares, str) else "equal"
    resized = group.model_copy(update={"count": clients, "shares": shares})
    return spec.model_copy(update={"groups": [resized]})
