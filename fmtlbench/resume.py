"""What a checkpoint must carry beyond plain values for a resumed run to account like the
uninterrupted one.

The engine's delivery record (``Engine.delivered``) holds the storage ids of the tensors each
client already received, so that an anchor resent in the next context is not counted as
downloaded twice. Storage ids are memory addresses, meaningless in another process; the
checkpoint therefore stores the delivered *tensors themselves* (the ones reachable from the
saved client and algorithm states, which are the only ones a later context can reuse), and
the resumed run takes the storage ids of their restored copies. The checkpoint stores each
tensor once however often it is referenced, so the restored copies share storage exactly where
the originals did.
"""

from __future__ import annotations

from typing import Any

import torch

from fmtlbench import traffic


def delivered_tensors(delivered: list[set[int]], *sources: Any) -> list[list[torch.Tensor]]:
    """Per client, the tensors of ``sources`` whose storage that client already holds."""
    by_id: dict[int, torch.Tensor] = {}
    for source in sources:
        for _, t in traffic.tensors(source):
            if t.numel():
                by_id.setdefault(t.untyped_storage().data_ptr(), t)
    return [[by_id[i] for i in sorted(ids) if i in by_id] for ids in delivered]


def delivered_ids(saved: list[list[torch.Tensor]]) -> list[set[int]]:
    """The delivery record of a resumed run, from the restored delivered tensors."""
    return [traffic.storage_ids(tensors) for tensors in saved]
