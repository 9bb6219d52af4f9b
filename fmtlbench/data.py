"""Locating datasets: real data under the data root, or a synthetic twin generated once.

The data root is only ever read. Synthetic twins are written into the cache folder, keyed by
the dataset's twin parameters, through a temporary folder that is renamed into place so that an
interrupted generation never leaves a half-written twin behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fmtlbench.atomic import atomic_folder
from fmtlbench.components import Dataset, Params
from fmtlbench.config import DataConfig, describe_validation_error
from fmtlbench.errors import ConfigError, DataError


@dataclass(frozen=True)
class Located:
    """Where a dataset was found and whether it is synthetic."""

    root: Path
    synthetic: bool


def component_params(cls: type, values: dict[str, Any], field: str) -> Params:
    """Validate ``values`` against ``cls.Params``; errors name ``field`` and the bad key."""
    try:
        return cls.Params(**values)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid {field}: {describe_validation_error(exc, prefix=field)}"
        ) from None
    except TypeError as exc:
        raise ConfigError(f"invalid {field}: {exc}") from None


def twin_dir(cls: type[Dataset], params: Params, cache_dir: Path, seed: int = 0) -> Path:
    blob = json.dumps({"params": params.model_dump(mode="json"), "seed": seed}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return Path(cache_dir) / "twins" / f"{cls.name}-{key}" / cls.folder


def ensure_twin(cls: type[Dataset], params: Params, cache_dir: Path, seed: int = 0) -> Path:
    """The twin folder of ``cls`` for ``params``, generated on first use."""
    target = twin_dir(cls, params, cache_dir, seed)
    if target.is_dir():
        return target
    try:
        with atomic_folder(target) as scratch:
            cls.synthesize(scratch, params, seed)
    except (OSError, DataError):
        if not target.is_dir():  # another process may have won the race
            raise
    return target


def locate(cls: type[Dataset], params: Params, config: DataConfig) -> Located:
    """Real data when a data root is configured, else the synthetic twin."""
    if config.root is not None:
        folder = Path(config.root).expanduser() / cls.folder
        if not folder.is_dir():
            raise DataError(
                f"no {cls.folder}/ folder under the data root {config.root} (dataset "
                f"'{cls.name}'); download it there, or unset --data-root/FMTLBENCH_DATA_ROOT "
                "to use the synthetic twin"
            )
        return Located(folder, synthetic=False)
    return Located(ensure_twin(cls, params, config.cache_dir), synthetic=True)


def open_dataset(cls: type[Dataset], config: DataConfig) -> Dataset:
    """Validate the dataset's parameters, locate its folder and construct it."""
    params = component_params(cls, config.datasets.get(cls.name, {}), f"data.datasets.{cls.name}")
    found = locate(cls, params, config)
    cache = (
        Path(config.cache_dir)
        / "datasets"
        / cls.name
        / ("synthetic" if found.synthetic else "real")
    )
    return cls(params, found.root, synthetic=found.synthetic, cache=cache)
