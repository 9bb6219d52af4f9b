"""The client side of a round: self-contained client jobs and the worker that trains them.

A ``ClientJob`` carries everything one client's local training needs (its state, the
algorithm's context and client-side parameters, the schedule, the round seed), so an executor
may run it in another process or on another machine. A ``Worker`` holds the clients' data
and one working model per model structure, built once; the serial executor calls the run's
own worker in this process, the ``ray`` executor builds one worker per actor from the run's
config - the same code path, so serial stays the reference for every executor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from fmtlbench.components import Algorithm, Params, Phase, Update, Weighting
from fmtlbench.exchange import ExchangeView
from fmtlbench.federation import Federation, State, derive_seed, snapshot, to_device
from fmtlbench.training import step_settings, train_local


@dataclass
class ClientJob:
    """One client's local training in one round, with nothing left to look up on the server."""

    client: int
    round: int
    lr: float
    phases: list[Phase]
    context: Any
    #: ``derive_seed(run seed, round, client)``: seeds torch and the client's shuffling.
    seed: int
    #: The client's state (state keys) at the start of the round.
    state: State
    #: Exchange names the client sends up.
    wanted: list[str]
    #: The algorithm's class and parameters: a fresh instance gives ``client_loss``, so the
    #: client side cannot read or change server-side algorithm state.
    algorithm: tuple[type[Algorithm], Params]
    #: The task weighting's class and parameters (a fresh instance per client and round) and
    #: the state it left at the end of this client's previous round (``{}`` at first).
    weighting: tuple[type[Weighting], Params] | None = None
    weighting_state: dict[str, Any] = field(default_factory=dict)
    #: Under a ``personal`` algorithm: the personal model's state at the start of the round,
    #: its schedule and the algorithm's ``personal_context`` (None otherwise).
    personal_state: State | None = None
    personal_phases: list[Phase] = field(default_factory=list)
    personal_context: Any = None


@dataclass
class ClientResult:
    client: int
    state: State
    update: Update
    losses: dict[str, float]
    #: The weighting's state after the round: the next round's ``weighting_state``.
    weighting_state: dict[str, Any] = field(default_factory=dict)
    #: Per task, the mean coefficient of its loss the client used (``Weighting.weights``).
    task_weights: dict[str, float] = field(default_factory=dict)
    #: The personal model's state after the round (``personal`` algorithms), else None.
    personal_state: State | None = None


class Worker:
    """Trains client jobs on the clients' data with working models built once.

    Pickling a worker ships only its run config; unpickling builds the federation from it
    (data, partition, models) - which is how an executor gives each of its processes its own
    worker. Training reads nothing of the federation but data and models, so a worker built
    elsewhere gives bit-identical results on the same device.
    """

    def __init__(self, fed: Federation) -> None:
        self.fed = fed

    @classmethod
    def from_config(cls, config: Any, device: str | None = None) -> Worker:
        """A worker built in this process from a run config. ``device`` (default: the
        environment's ``FMTLBENCH_WORKER_DEVICE``, set by an executor that reserved a GPU for
        this process) overrides the config's own."""
        from fmtlbench.federation import build_federation
        from fmtlbench.registry import load_registry

        device = device or os.environ.get("FMTLBENCH_WORKER_DEVICE")
        if device is not None:
            config = config.model_copy(update={"device": device})
        return cls(build_federation(config, load_registry()))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Worker.from_config, (self.fed.config,))

    def __call__(self, job: ClientJob) -> ClientResult:
        return self.train(job)

    def train(self, job: ClientJob) -> ClientResult:
        """Run ``job``: the client's state into its working model, local training, the new
        state and the update the client sends up."""
        fed, k = self.fed, job.client
        client = fed.clients[k]
        self.seed(job, job.seed)
        model = fed.model_of(k)
        model.load_state_dict(job.state)
        cls, params = job.algorithm
        side = cls(params)
        view = ExchangeView(model, fed.names[k])
        weighting = None
        if job.weighting is not None and len(client.specs) > 1:  # one task: the identity
            wcls, wparams = job.weighting
            weighting = wcls(wparams)
            weighting.begin(k, client.specs, job.weighting_state, fed.device)
        losses = self.fit(
            job, model, job.phases, side.client_loss, view, job.context, weighting=weighting
        )
        state = snapshot(model)
        wanted = set(job.wanted)
        sent = {name: state[key] for key, name in fed.names[k].items() if name in wanted}
        if weighting is None:
            carried = dict(job.weighting_state)
            used = {t: float(spec.loss_weight) for t, spec in client.specs.items()}
        else:
            carried, used = weighting.state_dict(), weighting.weights()
        update = Update(k, len(client.train.dataset), sent)
        personal = None if job.personal_state is None else self.train_personal(job, side, view)
        return ClientResult(k, state, update, losses, carried, used, personal)

    def train_personal(self, job: ClientJob, side: Algorithm, view: ExchangeView) -> State:
        """The personal model's local training of a round: after the federated model's, on
        the same working model (``view`` follows it), from its own seed so that its batches
        and dropout do not depend on what the federated training drew. The study's task
        weights apply; the run's task weighting balances the federated model only."""
        self.seed(job, derive_seed(job.seed, "personal"))
        model = self.fed.model_of(job.client)
        model.load_state_dict(job.personal_state)
        self.fit(job, model, job.personal_phases, side.personal_loss, view, job.personal_context)
        return snapshot(model)

    def seed(self, job: ClientJob, seed: int) -> None:
        """Seed torch and the client's shuffling for one local training."""
        torch.manual_seed(seed)
        self.fed.clients[job.client].train.generator.manual_seed(seed)

    def fit(
        self,
        job: ClientJob,
        model: Any,
        phases: list[Phase],
        term: Any,
        view: ExchangeView,
        context: Any,
        weighting: Weighting | None = None,
    ) -> dict[str, float]:
        """Local training of ``model`` on the job's client for ``phases``, adding the
        algorithm's client-side ``term(view, context)`` at every step; the mean losses."""
        fed, client = self.fed, self.fed.clients[job.client]
        return train_local(
            model,
            client.train,
            client.specs,
            phases,
            client.epochs,
            job.lr,
            fed.config.training.weight_decay,
            lambda _model, ctx: term(view, ctx),
            to_device(context, fed.device),
            **step_settings(fed.config.training),
            weighting=weighting,
        )
