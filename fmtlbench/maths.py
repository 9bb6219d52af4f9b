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


# --------------------------------------------------------------------------- over clients
# The helpers below treat K client states as K vectors over ``keys`` without ever building the
# K x D matrix: inner products and combinations are float32 matmuls key by key (Gram sums in
# float64), so a server step over K full models needs memory for one key's K slices at a time.


def common_keys(states: Sequence[State]) -> list[str]:
    """Keys every state holds, in the order of the first state."""
    if not states:
        return []
    rest = [set(s) for s in states[1:]]
    return [k for k in states[0] if all(k in r for r in rest)]


def _rows(states: Sequence[State], key: str, centre: State | None) -> torch.Tensor:
    """K x n rows of one key in float32 (float64 states stay float64). The centre is subtracted
    before any widening: a difference of nearby float32 values is exact or nearly so."""
    rows = torch.stack([s[key].detach().reshape(-1) for s in states])
    if centre is not None:
        rows = rows - centre[key].detach().reshape(1, -1).to(rows.dtype)
    return rows if rows.dtype == torch.float64 else rows.to(torch.float32)


def gram_of(
    states: Sequence[State], keys: Sequence[str], centre: State | None = None
) -> torch.Tensor:
    """K x K inner products of the states seen as vectors over ``keys``, optionally after
    subtracting ``centre`` from each: one BLAS matmul per key in the states' float32 (float64
    states stay float64), summed over keys in float64.

    Centring on a point near the states (the mean, or the global model) keeps the entries small,
    so distances and angles read from the matrix do not lose digits to cancellation.
    """
    out = torch.zeros(len(states), len(states), dtype=torch.float64)
    for key in keys:
        rows = _rows(states, key, centre)
        out += (rows @ rows.T).to(torch.float64)
    return out


def combine(
    states: Sequence[State],
    coefficients: Sequence[float] | torch.Tensor,
    keys: Sequence[str],
    centre: State | None = None,
    base: State | None = None,
) -> dict[str, torch.Tensor]:
    """``base + sum_k c_k (states[k] - centre)`` per key, returned in the dtype of the first
    state (integers rounded); ``centre``/``base`` default to zero. One float32 matmul per key
    for float32 states (float64 states stay float64)."""
    coef = torch.as_tensor(coefficients, dtype=torch.float64).reshape(1, -1)
    if coef.shape[1] != len(states):
        raise ValueError(f"{coef.shape[1]} coefficients for {len(states)} states")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        ref = states[0][key]
        rows = _rows(states, key, centre)
        value = (coef.to(rows.dtype) @ rows).reshape(ref.shape)
        if base is not None:
            value = value + base[key].detach().to(value.dtype)
        out[key] = (
            value.to(ref.dtype) if ref.dtype.is_floating_point else value.round().to(ref.dtype)
        )
    return out


def mix(
    states: Sequence[State], matrix: torch.Tensor, keys: Sequence[str]
) -> list[dict[str, torch.Tensor]]:
    """Row i of ``matrix`` applied to the states: ``out[i][key] = sum_j M_ij states[j][key]``
    for every row at once (one float32 matmul per key for float32 states, float64 for float64
    states; returned in each key's dtype, integers rounded)."""
    weights = matrix.to(torch.float64)
    if weights.shape[1] != len(states):
        raise ValueError(f"matrix has {weights.shape[1]} columns for {len(states)} states")
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(weights.shape[0])]
    for key in keys:
        ref = states[0][key]
        rows = _rows(states, key, None)
        values = weights.to(rows.dtype) @ rows
        for i, row in enumerate(values):
            row = row.reshape(ref.shape)
            out[i][key] = (
                row.to(ref.dtype) if ref.dtype.is_floating_point else row.round().to(ref.dtype)
            )
    return out


def squared_distances(gram_matrix: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``G_ii + G_jj - 2 G_ij`` (clamped at 0, exact zeros
    on the diagonal)."""
    diag = torch.diagonal(gram_matrix)
    out = (diag[:, None] + diag[None, :] - 2 * gram_matrix).clamp_min(0)
    return out.fill_diagonal_(0)


def cosine_distances(gram_matrix: torch.Tensor) -> torch.Tensor:
    """Pairwise ``1 - cos`` from a Gram matrix; a zero vector has cosine 0 with everything else
    (distance 1), so it joins no group by accident."""
    norms = torch.diagonal(gram_matrix).clamp_min(0).sqrt()
    scale = norms[:, None] * norms[None, :]
    cos = torch.where(scale > 0, gram_matrix / scale.clamp_min(1e-300), torch.zeros_like(scale))
    out = (1 - cos.clamp(-1, 1)).clamp_min(0)
    return out.fill_diagonal_(0)


def project_conflicts(gram_matrix: torch.Tensor, orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """PCGrad's projections, done on coefficients: row i of the result expresses the projected
    vector i as a combination of the original vectors.

    Vector i visits the others in ``orders[i]``; whenever its running projection has a negative
    inner product with original vector j, the component along j is removed. Inner products come
    from the Gram matrix, so the projections cost K x K work whatever the vectors' length.
    """
    k = gram_matrix.shape[0]
    out = torch.eye(k, dtype=torch.float64)
    for i in range(k):
        coef = out[i].clone()
        for j in orders[i]:
            if j == i or gram_matrix[j, j] <= 0:
                continue
            dot = coef @ gram_matrix[:, j]
            if dot < 0:
                coef[j] -= dot / gram_matrix[j, j]
        out[i] = coef
    return out


def cagrad_weights(gram_matrix: torch.Tensor, weights: Sequence[float], c: float) -> torch.Tensor:
    """CAGrad's simplex weights w minimising ``g_w . g0 + c |g0| |g_w|`` (g_w = sum_k w_k v_k,
    g0 = sum_k weights_k v_k), from the Gram matrix of the vectors v_k.

    The objective is convex (a linear term plus a norm of a linear map), so a local solver finds
    the global minimum; SLSQP handles the simplex constraint directly. The Gram matrix is scaled
    to unit mean diagonal first, which leaves the minimiser unchanged and the solver well scaled.
    """
    import numpy as np
    from scipy.optimize import minimize

    gm = gram_matrix.detach().to(torch.float64).cpu().numpy()
    k = gm.shape[0]
    scale = float(np.mean(np.diag(gm)))
    if k == 1 or scale <= 0:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    gm = gm / scale
    p = np.asarray(weights, dtype=np.float64)
    gp = gm @ p
    g0_norm = float(np.sqrt(max(p @ gp, 0.0)))
    tiny = 1e-12

    def objective(w: np.ndarray) -> float:
        return float(w @ gp + c * g0_norm * np.sqrt(max(w @ gm @ w, 0.0) + tiny))

    def gradient(w: np.ndarray) -> np.ndarray:
        return gp + c * g0_norm * (gm @ w) / np.sqrt(max(w @ gm @ w, 0.0) + tiny)

    result = minimize(
        objective,
        np.full(k, 1.0 / k),
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(k)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    w = np.clip(result.x, 0.0, None)
    return torch.as_tensor(w / w.sum(), dtype=torch.float64)


def cagrad_coefficients(
    gram_matrix: torch.Tensor, weights: Sequence[float], c: float
) -> torch.Tensor:
    """Coefficients a with CAGrad's update ``(g0 + c |g0| g_w / |g_w|) / (1 + c^2) = sum_k a_k
    v_k`` (the rescaled update of the CAGrad paper); without conflict-averse direction
    (|g_w| = 0) the update is ``g0 / (1 + c^2)``."""
    p = torch.as_tensor(weights, dtype=torch.float64)
    gm = gram_matrix.to(torch.float64)
    w = cagrad_weights(gm, p.tolist(), c)
    g0_norm = max(float(p @ gm @ p), 0.0) ** 0.5
    gw_norm = max(float(w @ gm @ w), 0.0) ** 0.5
    extra = c * g0_norm / gw_norm * w if gw_norm > 0 else torch.zeros_like(w)
    return (p + extra) / (1 + c**2)


def squared_distance(live: State, anchors: State) -> torch.Tensor:
    """``sum_n ||live[n] - anchors[n]||^2`` over the names of ``anchors``, differentiable in
    ``live`` (the proximal and attention terms of FedProx and FedAMP)."""
    return sum(((live[n] - anchor) ** 2).sum() for n, anchor in anchors.items())
