"""Loss weightings: a client's step differentiates one weighted sum of its task losses.

``q_t`` below is the study's fixed weight of task ``t`` (``TaskSpec.loss_weight``) and ``L_t``
the task's unweighted loss of the batch. ``equal`` is the study's own loss; the others build on
it, so that every method starts from (or, for DWA, is in its first two epochs exactly) the
study's balance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Params, Weighting
from fmtlbench.errors import ConfigError
from fmtlbench.tasks import TaskSpec

torch = lazy.module("torch")


class Equal(Weighting):
    """The study's default task weights q_t: sum_t q_t L_t (the results of the study)."""

    name = "equal"

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        from fmtlbench.losses import weighted_sum

        self.record({t: self.specs[t].loss_weight for t in losses})
        return weighted_sum(self.specs, losses)


class FixedParams(Params):
    """User-given task weights, for every client or per client."""

    weights: dict[str, float] = Field(
        default_factory=dict, description="task name -> weight q_t, for every client"
    )
    clients: dict[int, dict[str, float]] = Field(
        default_factory=dict,
        description="client index -> {task: weight}: q_{k,t}, overriding `weights` for k",
    )


class Fixed(Weighting):
    """User-given task weights q_{k,t}: sum_t q_{k,t} L_t (replacing the study's q_t)."""

    name = "fixed"
    Params: ClassVar[type[Params]] = FixedParams

    def table(self, client: int, specs: Mapping[str, TaskSpec]) -> dict[str, float]:
        """The client's weight of each of its tasks; a task left without one is an error."""
        own = {**self.params.weights, **self.params.clients.get(client, {})}
        missing = [t for t in specs if t not in own]
        if missing:
            raise ConfigError(
                f"weighting 'fixed' has no weight for task(s) {', '.join(missing)} of client "
                f"{client}; set training.weighting.params.weights.<task> (or .clients.{client})"
            )
        bad = {t: own[t] for t in specs if not (math.isfinite(own[t]) and own[t] >= 0)}
        if bad:
            raise ConfigError(f"weighting 'fixed': weights must be finite and >= 0, got {bad}")
        return {t: float(own[t]) for t in specs}

    def check(self, client: int, specs: Mapping[str, TaskSpec], precision: str) -> None:
        self.table(client, specs)

    def begin(
        self, client: int, specs: Mapping[str, TaskSpec], state: Mapping[str, Any], device: Any
    ) -> None:
        super().begin(client, specs, state, device)
        self.q = self.table(client, specs)

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.record({t: self.q[t] for t in losses})
        return sum(self.q[t] * loss for t, loss in losses.items())  # type: ignore[return-value]


class UncertaintyParams(Params):
    """Start of the learnable log-variances."""

    init: float = Field(
        0.0, ge=-10, le=10, description="initial log-variance s_t = log sigma_t^2 of every task"
    )


class Uncertainty(Weighting):
    """Uncertainty weighting (Kendall et al. 2018): sum_t 1/2 (exp(-s_t) q_t L_t + s_t).

    Kendall, Gal and Cipolla, "Multi-task learning using uncertainty to weigh losses for scene
    geometry and semantics" (CVPR 2018): ``L = Σ_t 1/(2σ_t²) L_t + log σ_t``, written with the
    log-variance ``s_t = log σ_t²`` the paper itself trains for numerical stability, which
    gives ``L = Σ_t ½ (e^{-s_t} q_t L_t + s_t)``; the study's ``q_t`` is kept inside, and the
    regression form serves every task. The ``s_t`` are learnt by the client's AdamW (no weight
    decay) and are client-private state: they travel with the client's job and result from
    round to round and are never averaged.
    The logged weight of a task is its coefficient ``½ e^{-s_t} q_t``.
    """

    name = "uncertainty"
    Params: ClassVar[type[Params]] = UncertaintyParams

    def begin(
        self, client: int, specs: Mapping[str, TaskSpec], state: Mapping[str, Any], device: Any
    ) -> None:
        super().begin(client, specs, state, device)
        saved = dict(state.get("log_var", {}))
        self.tasks = list(specs)
        values = [float(saved.get(t, self.params.init)) for t in self.tasks]
        self.log_var = torch.tensor(values, dtype=torch.float32, device=device, requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.log_var]

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = None
        coefficients = {}
        for i, t in enumerate(self.tasks):
            if t not in losses:
                continue
            s = self.log_var[i]
            precision = torch.exp(-s)
            coefficients[t] = 0.5 * float(precision.detach()) * self.specs[t].loss_weight
            term = 0.5 * (precision * self.specs[t].loss_weight * losses[t] + s)
            total = term if total is None else total + term
        self.record(coefficients)
        return total

    def state_dict(self) -> dict[str, Any]:
        values = self.log_var.detach().cpu().tolist()
        return {"log_var": dict(zip(self.tasks, values, strict=True))}


class DWAParams(Params):
    """Temperature of the softmax over loss ratios."""

    temperature: float = Field(
        2.0, gt=0, le=1000, description="softmax temperature tau (the paper's 2)"
    )


class DWA(Weighting):
    """Dynamic weight average (Liu et al. 2019): w_t = T softmax(r_t / tau), r_t a loss ratio.

    Liu, Johns and Davison, "End-to-end multi-task learning with attention" (CVPR 2019):
    ``w_t(e) = T exp(r_t(e-1)/τ) / Σ_i exp(r_i(e-1)/τ)`` with ``r_t(e-1) = L_t(e-1)/L_t(e-2)``
    the ratio of the task's mean training losses over the two previous epochs, ``T`` the number
    of tasks, and ``w_t = 1`` while fewer than two epochs are known. A client's epochs count
    across rounds: the last two epochs' mean losses are client-private state carried from one
    round to the next, so with one local epoch per round the weights of round r come from
    rounds r-1 and r-2. The step loss is ``Σ_t w_t q_t L_t``; a ratio whose older loss is 0
    counts as 1 (no information). The logged weight of a task is ``w_t q_t``.
    """

    name = "dwa"
    Params: ClassVar[type[Params]] = DWAParams

    def begin(
        self, client: int, specs: Mapping[str, TaskSpec], state: Mapping[str, Any], device: Any
    ) -> None:
        super().begin(client, specs, state, device)
        self.history: list[dict[str, float]] = [dict(h) for h in state.get("history", [])]
        self.w = dict.fromkeys(specs, 1.0)

    def epoch_start(self) -> None:
        self.w = dwa_weights(self.history, list(self.specs), self.params.temperature)

    def epoch_end(self, means: Mapping[str, float]) -> None:
        self.history = [*self.history, dict(means)][-2:]

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        coefficients = {t: self.w[t] * self.specs[t].loss_weight for t in losses}
        self.record(coefficients)
        return sum(coefficients[t] * loss for t, loss in losses.items())  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}


def dwa_weights(
    history: list[dict[str, float]], tasks: list[str], temperature: float
) -> dict[str, float]:
    """DWA's weights from the mean losses of the last two epochs (oldest first)."""
    if len(history) < 2 or not all(t in h for h in history[-2:] for t in tasks):
        return dict.fromkeys(tasks, 1.0)
    older, newer = history[-2], history[-1]
    ratios = {t: newer[t] / older[t] if older[t] != 0 else 1.0 for t in tasks}
    top = max(r / temperature for r in ratios.values())
    exps = {t: math.exp(r / temperature - top) for t, r in ratios.items()}
    norm = sum(exps.values())
    return {t: len(tasks) * e / norm for t, e in exps.items()}


@hookimpl
def register_weightings() -> list[type[Weighting]]:
    return [Equal, Fixed, Uncertainty, DWA]
