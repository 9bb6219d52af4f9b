"""What a checkpoint must carry beyond plain values for a resumed run to account like the
uninterrupted one.

A resumed run equals the uninterrupted one exactly when everything that round r+1 reads is
restored. The checkpoint holds the client states (models, normalisation statistics), the
algorithm's server state (``Algorithm.state_dict``: anchors, global model, attention or
precision matrices, cluster labels), the history, the initial evaluation and the delivery
record below. Random streams need no saved state, and none is saved: every one is re-derived
where it is used from values the checkpoint already holds. The engine seeds torch's global
generator (augmentation, dropout) and the client's DataLoader generator (shuffling; also the
base seed of its workers) from (seed, round, client) before each client's local training;
PCGrad's projection orders come from ``random.Random(f"{seed}:{round}")``; evaluation, the
aggregation maths and the other algorithms draw nothing; optimisers live for one client-round
only. ``tests/test_kill.py`` checks this for all nine built-in algorithms with every process
stream (torch, numpy, ``random``) scrambled before the resume.

The engine's delivery record (``Engine.delivered``) holds the storage ids of the tensors each
client already received, so that an anchor resent in the next context is not counted as
downloaded twice. Storage ids are memory addresses, meaningless in another process; the
checkpoint therefore stores the delivered *tensors themselves* (the ones reachable from the
saved client and algorithm states, which are the only ones a later context can reuse), and
the resumed run takes the storage ids of their restored copies. The checkpoint stores each
tensor once however often it is referenced, so a tensor a client holds and the same tensor in
the algorithm's state are one restored copy; views into one storage become separate copies,
which is why the record keeps every view of a delivered storage (``delivered_tensors``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch

from fmtlbench import traffic


def delivered_tensors(delivered: list[set[int]], *sources: Any) -> list[list[torch.Tensor]]:
    """Per client, every tensor of ``sources`` whose storage that client already holds.

    Every tensor, not one per storage: algorithms that combine all clients at once (FedAMP's
    cloud models) return views into one shared storage, one view per client. The checkpoint
    gives each view its own restored copy, so a record holding only the first view of a
    storage would, after the resume, miss the copy the other clients hold and count their
    next context as downloaded again.
    """
    by_id: dict[int, dict[int, torch.Tensor]] = {}
    for source in sources:
        for _, t in traffic.tensors(source):
            if t.numel():
                by_id.setdefault(t.untyped_storage().data_ptr(), {})[id(t)] = t
    return [[t for i in sorted(ids) for t in by_id.get(i, {}).values()] for ids in delivered]


def delivered_ids(saved: list[list[torch.Tensor]]) -> list[set[int]]:
    """The delivery record of a resumed run, from the restored delivered tensors."""
    return [traffic.storage_ids(tensors) for tensors in saved]


#: Flags of ``fmtlbench run`` that may accompany ``--resume``: ``--rounds`` extends the run;
#: ``--set checkpoint_dir=...`` only says where the checkpoint is. Every other setting is the
#: checkpoint's own, since changing it mid-run would give a run no config describes.
SAFE_WITH_RESUME = ("rounds",)


def refuse_unsafe_flags(options: dict[str, Any], sets: tuple[str, ...], config_file: Any) -> None:
    """Raise ``ConfigError`` naming every flag given with ``--resume`` that cannot apply."""
    from fmtlbench.errors import ConfigError

    named = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
    named = [n for n in named if n.lstrip("-") not in SAFE_WITH_RESUME]
    named += [f"--set {s}" for s in sets if not s.strip().startswith("checkpoint_dir=")]
    if config_file is not None:
        named.insert(0, "--config")
    if named:
        raise ConfigError(
            f"{', '.join(named)} cannot be used with --resume: a resumed run keeps its "
            "checkpoint's settings (allowed: --rounds to extend it, --set checkpoint_dir=... "
            "to find the checkpoint)"
        )


def resumed_config(state: dict[str, Any], rounds: int | None = None):
    """The checkpoint's config, with ``rounds`` (if given) extending it past the saved round."""
    from fmtlbench.config import RunConfig
    from fmtlbench.errors import ConfigError

    data = state["config"]
    if rounds is not None:
        if rounds < state["round"]:
            raise ConfigError(
                f"--rounds {rounds} is before the checkpoint's round {state['round']}: "
                "a resumed run can only be extended"
            )
        data = {**data, "training": {**data["training"], "rounds": rounds}}
    return RunConfig.model_validate(data)


def command(run_id: str, checkpoint_dir: Path) -> str:
    """The command line that resumes ``run_id``: ``--set checkpoint_dir`` only when the
    checkpoint is not in the default folder (the one setting ``--resume`` cannot read from it)."""
    from fmtlbench.config import RunConfig

    line = f"fmtlbench run --resume {shlex.quote(run_id)}"
    if Path(checkpoint_dir) != RunConfig.model_fields["checkpoint_dir"].default:
        line += " --set " + shlex.quote(f"checkpoint_dir={checkpoint_dir}")
    return line
