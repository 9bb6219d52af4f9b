"""Gradient weightings: torchjd's aggregators over the per-task gradients of shared parameters.

Each step, the rows of the Jacobian are the gradients of the weighted task losses ``q_t L_t``
(the study's balance as the starting point) with respect to the client's *shared* trainable
parameters, those every task's loss depends on (``fmtlbench.training.split_parameters``: the
encoder under MD; encoder, shared decoder and task-embedding MLP under TC). torchjd fills
their ``.jac`` fields (``torchjd.autojac.backward``) and its aggregator turns the Jacobian into
the update written to ``.grad`` (``torchjd.autojac.jac_to_grad``). A parameter of one task
alone (an MD task decoder, a TC head) receives that task's own gradient of ``q_t L_t``.

torchjd is an optional dependency (``pip install 'fmtlbench[jacobian]'``, Nash-MTL
through torchjd's ``nash-mtl`` extra); a missing one is refused when the run is built. fp16
training is refused too: its loss scaling would scale the Jacobian, and the aggregators are not
all invariant to that. The logged weight of a task is ``w_t q_t``, with ``w`` the aggregator's
weights of the Jacobian's rows (its update is ``Σ_t w_t q_t ∇L_t``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Params, Weighting
from fmtlbench.errors import ConfigError
from fmtlbench.tasks import TaskSpec

torch = lazy.module("torch")


class JacobianWeighting(Weighting):
    """Base of the torchjd weightings: subclasses say which aggregator to build."""

    gradient: ClassVar[bool] = True

    def aggregator(self, tasks: int) -> Any:
        """A torchjd aggregator for a Jacobian of ``tasks`` rows."""
        raise NotImplementedError

    def _build(self, tasks: int) -> Any:
        try:
            return self.aggregator(tasks)
        except ImportError as exc:
            raise ConfigError(
                f"weighting '{self.name}' needs torchjd and its dependencies ({exc}); install "
                "them with: pip install 'fmtlbench[jacobian]'"
            ) from None

    def check(self, client: int, specs: Mapping[str, TaskSpec], precision: str) -> None:
        if precision == "fp16":
            raise ConfigError(
                f"weighting '{self.name}' aggregates a Jacobian, which fp16 loss scaling would "
                "scale; use training.precision=bf16 or fp32"
            )
        self._build(len(specs))

    def begin(
        self, client: int, specs: Mapping[str, TaskSpec], state: Mapping[str, Any], device: Any
    ) -> None:
        super().begin(client, specs, state, device)
        self._aggregator = self._build(len(specs))

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared: Sequence[torch.Tensor],
        specific: Sequence[torch.Tensor],
    ) -> None:
        from torchjd.autojac import backward, jac_to_grad

        tasks = list(losses)
        rows = [self.specs[t].loss_weight * losses[t] for t in tasks]
        if specific:  # each such parameter serves one task: the sum gives it that task's gradient
            torch.autograd.backward(sum(rows), inputs=list(specific), retain_graph=bool(shared))
        if not shared:
            self.record({t: self.specs[t].loss_weight for t in tasks})
            return
        backward(rows, inputs=list(shared))
        weights = jac_to_grad(list(shared), self._aggregator)
        if weights is None:  # an aggregator without weights: nothing to report but q
            self.record({t: self.specs[t].loss_weight for t in tasks})
            return
        w = weights.detach().cpu().tolist()
        self.record({t: w[i] * self.specs[t].loss_weight for i, t in enumerate(tasks)})


class UPGrad(JacobianWeighting):
    """torchjd's UPGrad: every task gradient projected onto the dual cone of all, averaged."""

    name = "upgrad"

    def aggregator(self, tasks: int) -> Any:
        from torchjd.aggregation import UPGrad as Aggregator

        return Aggregator()


class MGDAParams(Params):
    """The stopping rule of MGDA's Frank-Wolfe solver."""

    epsilon: float = Field(0.001, gt=0, le=1, description="stop when the step is below this")
    max_iters: int = Field(100, ge=1, le=100_000, description="most Frank-Wolfe iterations")


class MGDA(JacobianWeighting):
    """torchjd's MGDA: the minimum-norm point of the task gradients' convex hull."""

    name = "mgda"
    Params: ClassVar[type[Params]] = MGDAParams

    def aggregator(self, tasks: int) -> Any:
        from torchjd.aggregation import MGDA as Aggregator

        return Aggregator(epsilon=self.params.epsilon, max_iters=self.params.max_iters)


class AlignedMTLParams(Params):
    """How Aligned-MTL scales the aligned gradients."""

    scale_mode: Literal["min", "median", "rmse"] = Field(
        "min", description="eigenvalue the balance transformation scales by (torchjd's)"
    )


class AlignedMTL(JacobianWeighting):
    """torchjd's Aligned-MTL: task gradients made orthogonal and of equal norm."""

    name = "aligned-mtl"
    Params: ClassVar[type[Params]] = AlignedMTLParams

    def aggregator(self, tasks: int) -> Any:
        from torchjd.aggregation import AlignedMTL as Aggregator

        return Aggregator(scale_mode=self.params.scale_mode)


class NashMTLParams(Params):
    """torchjd's Nash-MTL settings."""

    max_norm: float = Field(1.0, ge=0, description="largest norm of the update; 0: no clipping")
    update_weights_every: int = Field(1, ge=1, description="steps between new weights")
    optim_niter: int = Field(20, ge=1, le=10_000, description="iterations of its solver")


class NashMTL(JacobianWeighting):
    """torchjd's Nash-MTL: the task gradients' Nash bargaining solution (cvxpy extra).

    torchjd's Nash-MTL keeps state between steps (its previous weights); it lives for one
    client's round, so every round of a client starts it afresh.
    """

    name = "nash-mtl"
    Params: ClassVar[type[Params]] = NashMTLParams

    def aggregator(self, tasks: int) -> Any:
        from torchjd.aggregation import NashMTL as Aggregator

        return Aggregator(
            n_tasks=tasks,
            max_norm=self.params.max_norm,
            update_weights_every=self.params.update_weights_every,
            optim_niter=self.params.optim_niter,
        )


@hookimpl
def register_weightings() -> list[type[Weighting]]:
    return [UPGrad, MGDA, AlignedMTL, NashMTL]
