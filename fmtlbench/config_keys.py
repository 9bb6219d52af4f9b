"""Dataset-keyed settings checked against the installed datasets.

Why: ``--set data.datasets.nyudv3.twin_train=4`` used to be dropped in silence and the run
trained on the defaults; every table keyed by dataset name is checked here, before any work.
"""

from __future__ import annotations

import difflib

from fmtlbench.config import RunConfig
from fmtlbench.errors import ConfigError
from fmtlbench.registry import Registry


def check_dataset_keys(config: RunConfig, registry: Registry) -> None:
    """Refuse a key of a dataset-keyed table that names no installed dataset."""
    known = registry.names("dataset")
    tables = {
        "data.datasets": config.data.datasets,
        "training.local_epochs": config.training.local_epochs,
        "training.resolution": config.training.resolution,
        "training.eval_resolution": config.training.eval_resolution,
    }
    for field, table in tables.items():
        allowed = known if field == "data.datasets" else [*known, "default"]
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{field}.{key}: unknown dataset '{key}'.{hint} Known: {', '.join(allowed)}."
            )
