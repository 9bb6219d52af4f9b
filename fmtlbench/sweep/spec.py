"""What a sweep is: a name, a profile, fixed overrides and grid axes over config paths.

A sweep file (YAML/TOML) and the ``fmtlbench sweep`` flags both become one ``SweepSpec``, so
there is one way of expanding cells. ``grid`` may be one mapping (a cartesian product) or a
list of mappings (the union of several products), which is how a table's "-E" rows sit next to
its plain rows without multiplying them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fmtlbench.config import describe_validation_error, read_mapping
from fmtlbench.errors import ConfigError

#: Sweep flag -> the config path it sets and the component kind ``all`` expands over.
AXIS_FLAGS: dict[str, tuple[str, str | None]] = {
    "scenarios": ("scenario", "scenario"),
    "algos": ("algorithm.name", "algorithm"),
    "archs": ("arch.name", "decoder"),
    "backbones": ("backbone.name", "backbone"),
    "seeds": ("seed", None),
    "clients": ("clients", None),
}
#: Config path -> component kind, for ``all`` in sweep files too.
KIND_OF_PATH = {path: kind for path, kind in AXIS_FLAGS.values() if kind}

Grid = dict[str, list[Any]]


class SweepSpec(BaseModel):
    """A sweep: cells are ``set`` merged with every combination of each grid's axes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    profile: str | None = None
    fixed: dict[str, Any] = Field(default_factory=dict, alias="set")
    grid: list[Grid] = Field(default_factory=lambda: [{}])

    @field_validator("grid", mode="before")
    @classmethod
    def _grids(cls, value: Any) -> Any:
        grids = [value] if isinstance(value, dict) else value
        if not isinstance(grids, list):
            return value  # let pydantic name the problem
        out = []
        for grid in grids:
            if not isinstance(grid, dict):
                return value  # let pydantic name the problem
            out.append({k: v if isinstance(v, list) else [v] for k, v in grid.items()})
        return out

    @field_validator("grid")
    @classmethod
    def _axes_not_empty(cls, grids: list[Grid]) -> list[Grid]:
        for grid in grids:
            for key, values in grid.items():
                if not values:
                    raise ValueError(f"axis '{key}' has no values")
        return grids


def parse_spec(data: dict[str, Any], source: str) -> SweepSpec:
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid sweep {source}: {describe_validation_error(exc)}") from None


def builtin_names() -> list[str]:
    folder = resources.files("fmtlbench.sweep.builtin")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_spec(name_or_path: str) -> SweepSpec:
    """A built-in sweep by name, or a sweep file by path."""
    if name_or_path in builtin_names():
        import yaml

        text = resources.files("fmtlbench.sweep.builtin").joinpath(f"{name_or_path}.yaml")
        return parse_spec(yaml.safe_load(text.read_text()) or {}, f"'{name_or_path}'")
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml", ".toml", ".json"} or path.exists():
        return parse_spec(read_mapping(path), f"file {path}")
    raise ConfigError(
        f"unknown sweep '{name_or_path}': give a sweep file or one of {', '.join(builtin_names())}"
        " (see `fmtlbench sweep --list`)"
    )
