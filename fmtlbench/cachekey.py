"""Run content hash ("cache key"): one digest of everything that determines a run's result.

Two runs with the same key produce the same metrics, so a sweep can skip a cell whose key
already has a FINISHED run. Settings that only say where results go or how the run is driven
(tracking, executor, checkpoint folder, data/cache paths, energy metering) are left out, so
changing them never invalidates finished work. This module owns the tag name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fmtlbench.config import DEFAULT_WEIGHTING

if TYPE_CHECKING:
    from fmtlbench.config import RunConfig

TAG = "fmtlbench.cache_key"

# Top-level RunConfig fields that do not change the result.
_IGNORED = ("tracking", "executor", "checkpoint_dir", "checkpoint_every", "energy", "smoke")
# DataConfig fields that are locations, not content (the data kind is hashed instead).
_IGNORED_DATA = ("root", "cache_dir")
# TrainingConfig fields that change speed, never a metric (tests hold workers to that).
_IGNORED_TRAINING = ("workers", "pin_memory", "persistent_workers", "non_blocking")
# ``training.weighting`` at its default, left out of the hash (see ``cache_key``).
_DEFAULT_WEIGHTING = {"name": DEFAULT_WEIGHTING, "params": {}}


def cache_key(
    config: RunConfig,
    partition_hash: str,
    versions: Iterable[str],
    data_kind: str,
) -> str:
    """SHA-256 over the result-determining config, partition manifest, versions and data kind.

    ``versions`` are ``distribution==version`` strings of fmtlbench, torch and every plugin.
    """
    cfg: dict[str, Any] = config.dump()
    for name in _IGNORED:
        cfg.pop(name, None)
    for name in _IGNORED_DATA:
        cfg.get("data", {}).pop(name, None)
    for name in _IGNORED_TRAINING:
        cfg.get("training", {}).pop(name, None)
    if cfg.get("training", {}).get("weighting") == _DEFAULT_WEIGHTING:
        # the default weighting is the study's loss: runs from before the setting existed
        # computed exactly this, so their keys stay valid
        cfg["training"].pop("weighting")
    payload = {
        "config": cfg,
        "partition_hash": partition_hash,
        "versions": sorted(set(versions)),
        "data": data_kind,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
