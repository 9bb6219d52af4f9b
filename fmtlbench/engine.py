"""The round loop: local training through the executor, aggregation, evaluation, tracking,
checkpointing. Algorithms own the maths; the engine owns everything else."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fmtlbench import metric_keys as keys
from fmtlbench import signals, traffic
from fmtlbench.config import RunConfig
from fmtlbench.delta import delta_percent
from fmtlbench.errors import ConfigError
from fmtlbench.evaluation import TaskMetrics, evaluate, state_digest, summarise
from fmtlbench.federation import Federation, derive_seed
from fmtlbench.schedule import round_lr
from fmtlbench.worker import ClientJob, Worker

Summary = dict[str, dict[str, dict[str, tuple[float, float]]]]


class Reporter(Protocol):
    """What the engine tells the person watching (the CLI draws it; tests ignore it)."""

    def message(self, text: str) -> None: ...
    def round_started(self, round: int, rounds: int, clients: int) -> None: ...
    def client_done(self, client: int, losses: Mapping[str, float]) -> None: ...
    def round_finished(self, round: int, metrics: Mapping[str, float]) -> None: ...


class NullReporter:
    def message(self, text: str) -> None:
        pass

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        pass

    def client_done(self, client: int, losses: Mapping[str, float]) -> None:
        pass

    def round_finished(self, round: int, metrics: Mapping[str, float]) -> None:
        pass


def primary_keys(pairs: Iterable[tuple[str, str, Any]]) -> list[str]:
    """Metric keys of the primary metric of each (dataset, task, spec), globally and personally
    evaluated: what a delta-percent reference must hold (the pre-flight check uses it too)."""
    names = [
        str(keys.TaskMetric(setting, ds, task, spec.primary[0]))
        for ds, task, spec in pairs
        for setting in keys.SETTINGS
    ]
    return list(dict.fromkeys(names))


@dataclass
class Evaluation:
    """One evaluation round: per-client metrics and their summary, for G-FL and P-FL."""

    round: int
    per_client: dict[str, list[dict[str, dict[str, float]]]]
    summary: dict[str, Summary]
    delta: dict[str, float] = field(default_factory=dict)
    #: Evaluations run, and evaluations saved because a client's (model, set, tasks) had been
    #: evaluated already (see ``Engine.evaluate``).
    evaluated: int = 0
    shared: int = 0
    #: Seconds spent computing state digests (to show that keying costs little).
    digest_seconds: float = 0.0


class Engine:
    """Runs the federated rounds of a ``Federation``."""

    def __init__(
        self,
        fed: Federation,
        reporter: Reporter | None = None,
        reference: Mapping[str, float] | None = None,
        energy: Any = None,
    ) -> None:
        self.fed = fed
        #: An ``fmtlbench.energy.EnergyMeter`` (started by the runner) or None.
        self.energy = energy
        self.config: RunConfig = fed.config
        self.reporter = reporter or NullReporter()
        #: Trains the client jobs; executors running them elsewhere rebuild it from the config.
        self.worker = Worker(fed)
        self.reference = dict(reference or {})
        #: Storage ids each client already holds, so a resent tensor is not counted as
        #: downloaded again; it is part of a checkpoint, since it changes ``comm/*``.
        self.delivered: list[set[int]] = [set() for _ in fed.clients]
        #: The latest evaluation (the final one once the last round ran).
        self.last: Evaluation | None = None
        if self.reference:
            missing = [k for k in self.reference_keys() if k not in self.reference]
            if missing:
                raise ConfigError(
                    f"the reference run lacks {', '.join(missing)}: a delta-percent reference "
                    "must be evaluated on the same datasets and tasks as this run"
                )

    def reference_keys(self) -> list[str]:
        """Metric keys of the primary metric of every (dataset, task) this run evaluates."""
        return primary_keys(
            (c.dataset.name, task, spec) for c in self.fed.clients for task, spec in c.specs.items()
        )

    # ------------------------------------------------------------------ clients
    def client_jobs(self, r: int, lr: float) -> list[ClientJob]:
        """Round ``r``'s self-contained client jobs: what each client needs, copied out of the
        server side (state, context, schedule, the algorithm's client-side parameters)."""
        fed, algo = self.fed, self.fed.algorithm
        w_params = None if fed.weighting is None else fed.weighting.params
        return [
            ClientJob(
                client=k,
                round=r,
                lr=lr,
                phases=algo.local_phases(k),
                context=algo.context(k),
                seed=derive_seed(self.config.seed, r, k),
                state=fed.states[k],
                wanted=list(algo.exchanged_names(k)),
                algorithm=(type(algo), algo.params),
                weighting=None if fed.weighting is None else (type(fed.weighting), w_params),
                weighting_state=fed.weighting_states[k] if fed.weighting_states else {},
                **(self.personal_job(k) if algo.personal else {}),
            )
            for k in range(len(fed.clients))
        ]

    def personal_job(self, k: int) -> dict[str, Any]:
        """The personal model's part of client ``k``'s job (``personal`` algorithms)."""
        algo = self.fed.algorithm
        return {
            "personal_state": self.fed.personal_states[k],
            "personal_phases": algo.personal_phases(k),
            "personal_context": algo.personal_context(k),
        }

    # ------------------------------------------------------------------ rounds
    def run_round(self, r: int) -> dict[str, float]:
        """Train, aggregate and (maybe) evaluate round ``r``; returns the metrics to log."""
        fed, cfg = self.fed, self.config.training
        lr = round_lr(cfg.lr, r, cfg.rounds, cfg.warmup_rounds)
        self.reporter.round_started(r, cfg.rounds, len(fed.clients))
        jobs = self.client_jobs(r, lr)
        metrics: dict[str, float] = {keys.LR: lr}
        down = [
            traffic.context_bytes(j.context, fed.groups[j.client], self.delivered[j.client])
            for j in jobs
        ]
        t0 = time.perf_counter()
        updates = []
        for result in fed.executor.map(self.worker, jobs):
            fed.states[result.client] = result.state
            if fed.weighting_states:
                fed.weighting_states[result.client] = result.weighting_state
            if result.personal_state is not None:
                fed.personal_states[result.client] = result.personal_state
            updates.append(result.update)
            for key, value in result.losses.items():
                metrics[keys.client_train(result.client, key)] = value
            for task, value in result.task_weights.items():
                metrics[keys.client_task_weight(result.client, task)] = value
            self.reporter.client_done(result.client, result.losses)
            if len(updates) == 1:
                signals.pause("round", r)  # test hook (mid-round), inert by default
        t1 = time.perf_counter()
        phase_laps = {"train": self.lap()}
        payloads = fed.algorithm.aggregate(r, updates)
        algo = fed.algorithm
        metrics.update({keys.algorithm(algo.name, k): v for k, v in algo.round_metrics().items()})
        for k, payload in payloads.items():
            fed.apply(k, payload)
        t2 = time.perf_counter()
        up = {u.client: traffic.by_group(u.entries, fed.groups[u.client]) for u in updates}
        for k, payload in payloads.items():
            for group, size in traffic.by_group(payload, fed.groups[k]).items():
                down[k][group] = down[k].get(group, 0) + size
            self.delivered[k] = traffic.storage_ids(payload)
        metrics.update(self.traffic_metrics(up, down))
        phase_laps["aggregate"] = self.lap()
        names = [keys.client_train(u.client, "total") for u in updates]
        totals = [metrics[n] for n in names if n in metrics]
        metrics[keys.TRAIN_LOSS] = sum(totals) / max(len(totals), 1)
        if r % cfg.eval_every == 0 or r == cfg.rounds:
            metrics.update(self.evaluation_metrics(self.evaluate(r)))
        phase_laps["eval"] = self.lap()
        t3 = time.perf_counter()
        spans = {"train": t1 - t0, "aggregate": t2 - t1, "eval": t3 - t2}
        metrics.update({keys.time(phase): seconds for phase, seconds in spans.items()})
        metrics.update(self.energy_metrics(phase_laps))
        self.reporter.round_finished(r, metrics)
        return metrics

    def lap(self) -> tuple[float, float]:
        """(kWh, kg CO2e) since the previous lap, or NaNs when energy is not measured."""
        return self.energy.lap() if self.energy is not None else (float("nan"), float("nan"))

    @staticmethod
    def energy_metrics(laps: Mapping[str, tuple[float, float]]) -> dict[str, float]:
        """Per-phase and per-round energy and emissions (omitted when not measured)."""
        out: dict[str, float] = {}
        for phase, (kwh, co2) in laps.items():
            if kwh == kwh:  # not NaN
                out[keys.energy("kwh", phase)] = kwh
                out[keys.energy("co2_kg", phase)] = co2
        measured = [laps[p] for p in laps if laps[p][0] == laps[p][0]]
        if measured:
            out[keys.energy("kwh")] = sum(k for k, _ in measured)
            out[keys.energy("co2_kg")] = sum(c for _, c in measured)
        return out

    @staticmethod
    def traffic_metrics(
        up: dict[int, dict[str, int]], down: list[dict[str, int]]
    ) -> dict[str, float]:
        """Totals and per client/group bytes of one round, as MLflow metrics."""
        out: dict[str, float] = {}
        for direction, table in (("up", up), ("down", dict(enumerate(down)))):
            total = 0
            for k, groups in table.items():
                for group, size in groups.items():
                    out[str(keys.Traffic(k, direction, group))] = size
                    total += size
            out[keys.traffic_total(direction)] = total
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, r: int) -> Evaluation:
        """G-FL (official test split) and P-FL (local test set) metrics of every client.

        Each (model, evaluation set, tasks) is evaluated once: clients whose states have the
        same content digest (``fmtlbench.evaluation.state_digest``) and ask for the same tasks
        on the same loader share one evaluation. Under FedAvg every client holds the global
        model, so G-FL costs one pass over the official test split instead of K. Every client
        still gets its own row (a copy of the shared metrics); ``shared`` counts the
        evaluations saved this way. Edge odsF/oisF are left to the last evaluation unless
        ``training.metrics.edge_at`` says otherwise (see ``MetricsConfig.interim``)."""
        fed = self.fed
        settings = fed.config.training
        final = r == settings.rounds
        per_client: dict[str, list] = {"G": [], "P": []}
        done: dict[tuple, TaskMetrics] = {}
        shared, digest_seconds, memo = 0, 0.0, {}
        for k, client in enumerate(fed.clients):
            t0 = time.perf_counter()
            digests = {False: state_digest(fed.states[k], memo)}
            if fed.personal_states:
                digests[True] = state_digest(fed.personal_states[k], memo)
            digest_seconds += time.perf_counter() - t0
            loaded = None
            # G-FL: the federated model on the official test split; P-FL: the personalised
            # model (the personal one under a ``personal`` algorithm) on the local test set
            splits = (
                ("G", fed.global_tests[client.dataset.name], False),
                ("P", client.test, bool(fed.personal_states)),
            )
            specs = client.specs
            if not final:
                specs = {t: settings.metrics.interim(spec) for t, spec in specs.items()}
            for kind, loader, personal in splits:
                key = (client.structure, digests[personal], id(loader), tuple(specs))
                if key in done:
                    shared += 1
                else:
                    if loaded != personal:  # loaded only when something is left to evaluate
                        model, loaded = fed.load(k, personal), personal
                    done[key] = evaluate(model, loader, specs)
                per_client[kind].append(copy.deepcopy(done[key]))
        summary = {
            kind: summarise([(c.dataset.name, m) for c, m in zip(fed.clients, rows, strict=True)])
            for kind, rows in per_client.items()
        }
        result = Evaluation(
            r,
            per_client,
            summary,
            evaluated=len(done),
            shared=shared,
            digest_seconds=digest_seconds,
        )
        if self.reference:
            for kind in keys.SETTINGS:
                result.delta[kind] = self.delta(kind, summary[kind])
        self.last = result
        return result

    def delta(self, kind: str, summary: Summary) -> float:
        """Delta-percent of the primary metric of every (dataset, task) against the reference
        run's final value of the same metric (``kind`` is "G" or "P")."""
        values, refs, lower = {}, {}, {}
        for ds, tasks in summary.items():
            for task, metrics in tasks.items():
                spec = self.fed.datasets[ds].tasks[task]
                metric, low = spec.primary
                key = str(keys.TaskMetric(kind, ds, task, metric))
                values[key], lower[key] = metrics[metric][0], low
                refs[key] = self.reference[key]
        return delta_percent(values, refs, lower)

    @staticmethod
    def evaluation_metrics(ev: Evaluation) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, summary in ev.summary.items():
            for ds, tasks in summary.items():
                for task, metrics in tasks.items():
                    for metric, (mean, std) in metrics.items():
                        key = keys.TaskMetric(kind, ds, task, metric)
                        out[str(key)] = mean
                        out[key.std] = std
        for kind, rows in ev.per_client.items():
            for k, tasks in enumerate(rows):
                for task, metrics in tasks.items():
                    for metric, value in metrics.items():
                        out[str(keys.ClientMetric(k, kind, task, metric))] = value
        for kind, value in ev.delta.items():
            out[keys.delta(kind)] = value
        out[keys.EVAL_EVALUATED] = float(ev.evaluated)
        out[keys.EVAL_SHARED] = float(ev.shared)
        out[keys.time("eval_digest")] = ev.digest_seconds  # wall time: under time/ with the others
        return out
