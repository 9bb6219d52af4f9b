"""Scenarios are data: which clients exist, on which dataset, with which tasks and data shares.

A ``ScenarioSpec`` is declarative and can be loaded from a YAML, TOML or JSON file, so users
write their own scenarios without code. Plugins register built-in specs through the
``register_scenarios`` hook. Materialising a spec into concrete sample ids is the job of
``fmtlbench.partition``.

Size rules. Every client gets a *share*: its relative amount of data among all clients of the
same dataset (ST and MT clients alike draw from one pool per dataset). Shares come either from
each group (``shares`` of a ``ClientGroup``: equal, skewed 1:2:...:count inside the group, or an
explicit list) or, with ``sizes: skew`` on the scenario, from one rule running across the groups
in the order they are declared: the j-th client of a dataset gets share j+1. The latter is how
the study's niid5 reads ("niid2 with quantity skew 1:2:3:4, semseg smallest, depth largest").
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fmtlbench.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fmtlbench.registry import Registry

#: File suffixes ``--scenario`` treats as a scenario file rather than a registered name.
SCENARIO_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


class ClientGroup(BaseModel):
    """``count`` clients on one dataset with the same task set.

    ``tasks="all"`` means every task the dataset labels. ``shares`` gives each client's relative
    amount of data among all clients of the same dataset: ``"equal"`` (1 each), ``"skew"``
    (1, 2, ..., count within the group) or an explicit list of ``count`` positive numbers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(description="registered dataset name, e.g. nyudv2")
    tasks: list[str] | Literal["all"] = Field(
        "all", description="tasks every client of the group learns; 'all' = all the dataset has"
    )
    count: int = Field(1, ge=1, description="number of clients in the group")
    shares: list[float] | Literal["equal", "skew"] = Field(
        "equal", description="relative data amounts: equal, skew (1:2:...:count) or a list"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClientGroup:
        if isinstance(self.tasks, list):
            if not self.tasks:
                raise ValueError("tasks is empty; list at least one task or write 'all'")
            repeated = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
            if repeated:
                raise ValueError(f"tasks lists {', '.join(repeated)} more than once")
        if isinstance(self.shares, list):
            if len(self.shares) != self.count:
                raise ValueError(f"shares has {len(self.shares)} entries for {self.count} clients")
            if any(not s > 0 for s in self.shares):
                raise ValueError("shares must be positive")
        return self

    def client_shares(self) -> list[float]:
        """This group's shares, one per client, under the group's own rule."""
        if self.shares == "equal":
            return [1.0] * self.count
        if self.shares == "skew":
            return [float(i + 1) for i in range(self.count)]
        return [float(s) for s in self.shares]


class ScenarioSpec(BaseModel):
    """A named federated data scenario: client groups plus the partitioner that splits data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    title: str = Field("", description="short label, e.g. the study's SDMT")
    description: str = ""
    groups: list[ClientGroup] = Field(min_length=1)
    sizes: Literal["groups", "skew"] = Field(
        "groups",
        description="groups: each group's shares; skew: the j-th client of each dataset, "
        "counted across groups in declaration order, gets share j+1",
    )
    partitioner: str = Field("iid", description="registered partitioner that splits each dataset")
    partitioner_params: dict[str, Any] = Field(default_factory=dict)
    local_test_fraction: float = Field(
        0.1, gt=0, lt=1, description="part of each client's data held out as its local test set"
    )

    @model_validator(mode="after")
    def _one_size_rule(self) -> ScenarioSpec:
        if self.sizes == "skew":
            own = [i for i, g in enumerate(self.groups) if g.shares != "equal"]
            if own:
                raise ValueError(
                    f"sizes is 'skew' but group(s) {', '.join(map(str, own))} set their own "
                    "shares; use one size rule (drop the groups' shares or sizes: skew)"
                )
        return self

    @property
    def num_clients(self) -> int:
        return sum(g.count for g in self.groups)

    def client_shares(self) -> list[float]:
        """One share per client, in client order (groups in declaration order)."""
        if self.sizes == "groups":
            return [s for g in self.groups for s in g.client_shares()]
        seen: dict[str, int] = {}
        out = []
        for group in self.groups:
            for _ in range(group.count):
                seen[group.dataset] = seen.get(group.dataset, 0) + 1
                out.append(float(seen[group.dataset]))
        return out

    def resized(self, clients: int) -> ScenarioSpec:
        """This scenario with its single group resized to ``clients`` clients (the study's
        case study: iid1 with K = 2, 4, 6, 8). The size rule is kept."""
        if len(self.groups) != 1:
            raise ConfigError(
                f"--clients/clients needs a single-group scenario; '{self.name}' has "
                f"{len(self.groups)} groups (write a scenario file instead)"
            )
        group = self.groups[0]
        if isinstance(group.shares, list) and len(group.shares) != clients:
            raise ConfigError(
                f"--clients/clients={clients} cannot resize scenario '{self.name}': its group "
                f"lists {len(group.shares)} explicit shares (write a scenario file instead)"
            )
        return self.model_copy(update={"groups": [group.model_copy(update={"count": clients})]})


def load_scenario_file(path: Path) -> ScenarioSpec:
    """Read a user's scenario file; errors name the file and the offending field."""
    from fmtlbench.config import describe_validation_error, read_mapping

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"scenario file {path} does not exist; pass a registered scenario name "
            "(see `fmtlbench scenarios list`) or the path of a YAML/TOML/JSON scenario file"
        )
    data = read_mapping(path)
    data.setdefault("name", path.stem)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"scenario file {path}: {describe_validation_error(exc)}") from None


def resolve_scenario(name: str, registry: Registry, clients: int | None = None) -> ScenarioSpec:
    """A registered scenario by name, or a scenario file by path; ``clients`` resizes a
    single-group scenario (the study's iid1 with K = 2, 4, 6, 8)."""
    if Path(name).suffix in SCENARIO_SUFFIXES:
        spec = load_scenario_file(Path(name))
    else:
        spec = registry.get("scenario", name)
    return spec if clients is None else spec.resized(clients)
