"""CAGrad at the server (after Liu et al., NeurIPS 2021), clients playing the role of tasks.

The server keeps the global model g. Each round, client k's update is ``Delta_k = w_k - g`` over
the trainable parameters every client holds (measured against the global model all clients
started from, never a stale base). With the aggregation weights p, ``g0 = sum_k p_k Delta_k``
(FedAvg's step); CAGrad looks for the step within ``c |g0|`` of g0 that most improves the
worst-off client. Its dual gives simplex weights w minimising ``g_w . g0 + c |g0| |g_w|``
(``g_w = sum_k w_k Delta_k``), solved from the K x K Gram matrix of the updates, and the step is
``(g0 + c |g0| g_w / |g_w|) / (1 + c^2)``, the paper's rescaled update, applied to g. The signs
work out unchanged for updates instead of gradients: every quantity above is invariant to
flipping all vectors. ``c = 0`` gives exactly FedAvg's step.

The global model, the updates and the payloads are handled by
``fmtlbench.global_step.GlobalStepAlgorithm``; this module only computes the coefficients.
"""

from __future__ import annotations

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams
from fmtlbench.global_step import GlobalStepAlgorithm
from fmtlbench.maths import cagrad_coefficients

torch = lazy.module("torch")


class CAGradParams(AlgorithmParams):
    """FedAvg's parameters plus the radius of CAGrad's conflict-averse ball."""

    c: float = Field(
        0.4, ge=0, description="radius c of the ball |d - g0| <= c|g0| around the mean update"
    )


class CAGrad(GlobalStepAlgorithm):
    """Server-side CAGrad: a conflict-averse step from the client updates, applied globally."""

    name = "cagrad"
    Params = CAGradParams

    def coefficients(self, round: int, gram: torch.Tensor, weights: list[float]) -> torch.Tensor:
        return cagrad_coefficients(gram, weights, self.params.c)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [CAGrad]
