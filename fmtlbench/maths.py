"""Pure tensor helpers shared by the algorithms: weighted means, deltas, flattening, Gram matrices.

They operate on state-dict fragments (``{key: tensor}``) held on the CPU and never mutate their
inputs, so algorithms can be tested on small hand-made tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fmtlbench import lazy

torch = lazy.module("torch")

State = Mapping[str, "torch.Tensor"]


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Key-wise weighted mean over the states that hold each key.

    Weights are renormalised per key among its holders, so clients with different task sets
    average each decoder only with the clients that have it. Accumulation is in float64 (one
    small matmul per cache-sized block, see ``_blocks``); integer buffers (e.g. BatchNorm's
    ``num_batches_tracked``) are rounded back.
    """
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    keys: dict[str, None] = {}
    for state in states:
        keys.update(dict.fromkeys(state))
    scratch = _Scratch(len(states))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        holders = [(s, w) for s, w in zip(states, weights, strict=True) if key in s]
        total = sum(w for _, w in holders)
        if total <= 0:
            raise ValueError(f"weights of the holders of '{key}' sum to {total}")
        coef = torch.tensor([[w / total for _, w in holders]], dtype=torch.float64)
        ref = holders[0][0][key]
        # floating entries are rounded once from float64 straight into their own dtype, so no
        # float64 copy of a whole entry is ever allocated; integers keep float64 to round
        floating = ref.dtype.is_floating_point
        acc = torch.empty(ref.numel(), dtype=ref.dtype if floating else torch.float64)
        for start, stop, rows in _blocks([s for s, _ in holders], key, None, scratch, wide=True):
            acc[start:stop] = (coef @ rows).view(-1)
        acc = acc.reshape(ref.shape)
        out[key] = acc if floating else acc.round().to(ref.dtype)
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
# K x D matrix. Each key is cut into blocks of columns small enough that the K rows of a block
# stay in cache: the rows are copied into one reused scratch buffer (a fresh K x n tensor per key
# would be a fresh mapping of memory per key, whose page faults cost more than the arithmetic),
# centred there, and used by a float32 matmul while still in cache. So every state is read from
# memory once per helper, as a flat K x D matrix would be, with memory for one block at a time.

#: Columns per block: 16 rows of 2^15 float64 values are 4 MiB, within a last-level cache.
BLOCK = 1 << 15


class _Scratch:
    """One reusable ``K x BLOCK`` buffer per dtype for the blocks of a call."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.buffers: dict[torch.dtype, torch.Tensor] = {}

    def rows(self, dtype: torch.dtype, k: int, n: int) -> torch.Tensor:
        if dtype not in self.buffers:
            self.buffers[dtype] = torch.empty(max(self.k, k) * BLOCK, dtype=dtype)
        return self.buffers[dtype][: k * n].view(k, n)


def _blocks(
    states: Sequence[State],
    key: str,
    centre: State | None,
    scratch: _Scratch,
    wide: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, rows)`` over the flattened ``key``: rows is K x (stop - start), in float32
    (float64 when the states are float64 or ``wide``), a view of ``scratch`` valid until the next
    block. The centre is subtracted before any widening: a difference of nearby float32 values
    is exact or nearly so."""
    flats = [s[key].detach().reshape(-1) for s in states]
    middle = None if centre is None else centre[key].detach().reshape(-1)
    source = flats[0].dtype
    dtype = torch.float64 if wide or source == torch.float64 else torch.float32
    n = flats[0].numel()
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        rows = scratch.rows(dtype, len(flats), stop - start)
        if source == dtype:
            torch.stack([f[start:stop] for f in flats], out=rows)
            if middle is not None:
                rows.sub_(middle[start:stop].to(dtype))
        else:
            for row, f in zip(rows, flats, strict=True):
                part = f[start:stop]
                row.copy_(part if middle is None else part - middle[start:stop].to(source))
        yield start, stop, rows


def common_keys(states: Sequence[State]) -> list[str]:
    """Keys every state holds, in the order of the first state."""
    if not states:
        return []
    rest = [set(s) for s in states[1:]]
    return [k for k in states[0] if all(k in r for r in rest)]


def by_holders(states: Sequence[Mapping[str, Any]]) -> dict[tuple[int, ...], list[str]]:
    """Every name any of ``states`` holds, grouped by the positions of the states holding it
    (in first-seen order): entries that only some clients hold are combined among exactly
    those clients, one group at a time."""
    out: dict[tuple[int, ...], list[str]] = {}
    for name in dict.fromkeys(n for s in states for n in s):
        holders = tuple(j for j, s in enumerate(states) if name in s)
        out.setdefault(holders, []).append(name)
    return out


def gram_of(
    states: Sequence[State],
    keys: Sequence[str],
    centre: State | None = None,
    mean_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """K x K inner products of the states seen as vectors over ``keys``, optionally after
    subtracting ``centre`` from each, or their own weighted mean (``mean_weights``, summing to
    1): one BLAS matmul per block in the states' float32 (float64 states stay float64), summed
    over blocks in float64.

    Centring on a point near the states (the mean, or the global model) keeps the entries small,
    so distances and angles read from the matrix do not lose digits to cancellation. The
    weighted mean is formed block by block from the rows already in cache, so centring on it
    costs no extra pass over the states.
    """
    if centre is not None and mean_weights is not None:
        raise ValueError("give a centre or mean weights, not both")
    out = torch.zeros(len(states), len(states), dtype=torch.float64)
    scratch = _Scratch(len(states))
    mean = None if mean_weights is None else torch.tensor([mean_weights], dtype=torch.float64)
    for key in keys:
        for _, _, rows in _blocks(states, key, centre, scratch):
            if mean is not None:
                rows.sub_(mean.to(rows.dtype) @ rows)
            out += (rows @ rows.T).to(torch.float64)
    return out


def _cast(value: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``value`` shaped and typed like ``ref`` (integers rounded)."""
    value = value.reshape(ref.shape)
    return value.to(ref.dtype) if ref.dtype.is_floating_point else value.round().to(ref.dtype)


def combine(
    states: Sequence[State],
    coefficients: Sequence[float] | torch.Tensor,
    keys: Sequence[str],
    centre: State | None = None,
    base: State | None = None,
) -> dict[str, torch.Tensor]:
    """``base + sum_k c_k (states[k] - centre)`` per key, returned in the dtype of the first
    state (integers rounded); ``centre``/``base`` default to zero. One float32 matmul per block
    for float32 states (float64 states stay float64)."""
    coef = torch.as_tensor(coefficients, dtype=torch.float64).reshape(1, -1)
    if coef.shape[1] != len(states):
        raise ValueError(f"{coef.shape[1]} coefficients for {len(states)} states")
    scratch = _Scratch(len(states))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        ref = states[0][key]
        value: torch.Tensor | None = None
        for start, stop, rows in _blocks(states, key, centre, scratch):
            if value is None:
                value = torch.empty(ref.numel(), dtype=rows.dtype)
                c = coef.to(rows.dtype)
            target = value[start:stop].view(1, -1)
            if base is None:
                torch.mm(c, rows, out=target)
            else:
                here = base[key].detach().reshape(1, -1)[:, start:stop].to(rows.dtype)
                torch.addmm(here, c, rows, out=target)
        if value is None:  # an empty entry
            value = torch.empty(0, dtype=torch.float32)
        out[key] = _cast(value, ref)
    return out


def mix(
    states: Sequence[State], matrix: torch.Tensor, keys: Sequence[str]
) -> list[dict[str, torch.Tensor]]:
    """Row i of ``matrix`` applied to the states: ``out[i][key] = sum_j M_ij states[j][key]``
    for every row at once (one float32 matmul per block for float32 states, float64 for float64
    states; returned in each key's dtype, integers rounded)."""
    weights = matrix.to(torch.float64)
    if weights.shape[1] != len(states):
        raise ValueError(f"matrix has {weights.shape[1]} columns for {len(states)} states")
    m = weights.shape[0]
    scratch = _Scratch(len(states))
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(m)]
    for key in keys:
        ref = states[0][key]
        values: torch.Tensor | None = None
        for start, stop, rows in _blocks(states, key, None, scratch):
            if values is None:
                values = torch.empty(m, ref.numel(), dtype=rows.dtype)
                w = weights.to(rows.dtype)
            # a column block of ``values`` is a valid BLAS matrix (leading dimension numel):
            # the product lands in place, with no temporary to copy
            torch.mm(w, rows, out=values[:, start:stop])
        if values is None:
            values = torch.empty(m, 0)
        for i in range(m):
            out[i][key] = _cast(values[i], ref)
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


@functools.cache
def _squared_distance_function() -> type:
    """The autograd function behind ``squared_distance``, defined on first use because it
    subclasses ``torch.autograd.Function`` and this module must import without torch."""

    class _SquaredDistance(torch.autograd.Function):
        """``sum_n ||live_n - anchor_n||^2`` and its gradient ``2 (live_n - anchor_n)`` as a few
        ``torch._foreach`` kernels over all entries, instead of a Python loop of small autograd
        ops per entry per step (hundreds of entries for a ResNet-18 model). The differences
        computed in the forward pass are kept for the backward, as the per-entry graph kept
        them."""

        @staticmethod
        def forward(
            ctx: Any, anchors: tuple[torch.Tensor, ...], *live: torch.Tensor
        ) -> torch.Tensor:
            diffs = torch._foreach_sub(list(live), list(anchors))
            ctx.diffs = diffs
            return torch.stack(torch._foreach_norm(diffs)).square().sum()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
            wanted = ctx.needs_input_grad[1:]
            diffs = [d for d, w in zip(ctx.diffs, wanted, strict=True) if w]
            grads = iter(torch._foreach_mul(diffs, 2 * grad) if diffs else [])
            ctx.diffs = None
            return (None, *(next(grads) if w else None for w in wanted))

    return _SquaredDistance


def squared_distance(live: State, anchors: State) -> torch.Tensor:
    """``sum_n ||live[n] - anchors[n]||^2`` over the names of ``anchors``, differentiable in
    ``live`` (the proximal and attention terms of FedProx and FedAMP), computed by one fused
    operation over all entries (see ``_squared_distance_function``)."""
    names = list(anchors)
    if not names:
        return torch.zeros(())
    targets = tuple(anchors[n].detach() for n in names)
    return _squared_distance_function().apply(targets, *(live[n] for n in names))
