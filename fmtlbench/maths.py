"""Pure tensor helpers shared by the algorithms: weighted means, deltas, flattening, Gram matrices.

They operate on state-dict fragments (``{key: tensor}``) held on the CPU and never mutate their
inputs, so algorithms can be tested on small hand-made tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

State = Mapping[str, torch.Tensor]


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Key-wise weighted mean over the states that hold each key.

    Weights are renormalised per key among its holders, so clients with different task sets
    average each decoder only with the clients that have it. Accumulation is in float64;
    integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are rounded back.
    """
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    keys: dict[str, None] = {}
    for state in states:
        keys.update(dict.fromkeys(state))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        holders = [(s[key], w) for s, w in zip(states, weights, strict=True) if key in s]
        total = sum(w for _, w in holders)
        if total <= 0:
            raise ValueError(f"weights of the holders of '{key}' sum to {total}")
        acc = torch.zeros(holders[0][0].shape, dtype=torch.float64)
        for tensor, w in holders:
            acc += tensor.detach().to(torch.float64) * (w / total)
        dtype = holders[0][0].dtype
        out[key] = acc.round().to(dtype) if not dtype.is_floating_point else acc.to(dtype)
    return out


def delta(state: State, base: State) -> dict[str, torch.Tensor]:
    """``state - base`` for the floating-point keys of ``state``."""
    return {k: v - base[k] for k, v in state.items() if v.dtype.is_floating_point}


def flatten(state: State, keys: Sequence[str]) -> torch.Tensor:
    """The tensors of ``keys`` concatenated into one float64 vector."""
    return torch.cat([state[k].detach().reshape(-1).to(torch.float64) for k in keys])


def unflatten(vector: torch.Tensor, like: State, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Split ``vector`` back into tensors shaped and typed like ``like[keys]``."""
    out, start = {}, 0
    for key in keys:
        ref = like[key]
        out[key] = vector[start : start + ref.numel()].reshape(ref.shape).to(ref.dtype)
        start += ref.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, keys need {start}")
    return out


def gram(vectors: torch.Tensor) -> torch.Tensor:
    """K x K matrix of inner products of the rows of ``vectors`` (K x D)."""
    return vectors @ vectors.T


def nbytes(state: State) -> int:
    """Bytes needed to send ``state`` as raw tensors."""
    return sum(t.numel() * t.element_size() for t in state.values())
