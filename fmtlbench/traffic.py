"""Communication accounting: bytes actually sent up and down, per client and parameter group.

Uploads are the entries of each client's ``Update``. Downloads are the payload the server sends
after aggregation plus whatever tensors the algorithm ships in the client's job context (e.g.
FedMTL's K models), except tensors the client already received as its last payload (FedProx's
anchor is the global model it was just sent), which a real deployment would not send twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

#: Group name used for context tensors that are not state-dict entries of the client.
CONTEXT = "context"


def tensors(obj: Any) -> Iterator[tuple[str | None, torch.Tensor]]:
    """(state-dict key or None, tensor) for every tensor inside nested dicts/lists/tuples."""
    if isinstance(obj, torch.Tensor):
        yield None, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(value, torch.Tensor):
                yield str(key), value
            else:
                yield from tensors(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from tensors(value)


def by_group(state: Mapping[str, torch.Tensor], groups: Mapping[str, str]) -> dict[str, int]:
    """Bytes of ``state`` per parameter group (keys unknown to ``groups`` count as context)."""
    out: dict[str, int] = {}
    for key, tensor in state.items():
        group = groups.get(key, CONTEXT)
        out[group] = out.get(group, 0) + tensor.numel() * tensor.element_size()
    return out


def storage_ids(obj: Any) -> set[int]:
    return {t.untyped_storage().data_ptr() for _, t in tensors(obj) if t.numel()}


def context_bytes(context: Any, groups: Mapping[str, str], delivered: set[int]) -> dict[str, int]:
    """Bytes per group of the context tensors that were not already delivered."""
    out: dict[str, int] = {}
    for key, tensor in tensors(context):
        if not tensor.numel() or tensor.untyped_storage().data_ptr() in delivered:
            continue
        group = groups.get(key, CONTEXT) if key is not None else CONTEXT
        out[group] = out.get(group, 0) + tensor.numel() * tensor.element_size()
    return out
