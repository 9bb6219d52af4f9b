"""One federated run from config to finished MLflow run, with checkpoints and honest status.

The MLflow run's status says what happened: FINISHED, FAILED (with the error as a tag) or
KILLED (interrupted; the checkpoint of the last completed round stays for ``--resume``).
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from fmtlbench import __version__, cachekey, checkpoint, signals
from fmtlbench import metric_keys as keys
from fmtlbench import resume as resume_state
from fmtlbench.config import RunConfig
from fmtlbench.energy import EnergyMeter
from fmtlbench.engine import Engine, Evaluation, NullReporter, Reporter
from fmtlbench.errors import ConfigError, TrackingLost
from fmtlbench.federation import Federation, build_federation
from fmtlbench.registry import Registry, load_registry
from fmtlbench.tracking import Tracker


@dataclass
class RunOutcome:
    """What a finished run returns to its caller (the CLI prints it, tests inspect it)."""

    run_id: str
    federation: Federation
    initial: Evaluation | None
    final: Evaluation
    history: dict[int, dict[str, float]]


def _git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(fed: Federation, registry: Registry) -> dict[str, str]:
    cfg = fed.config
    plugins = sorted({f"{p.distribution}=={p.version}" for p in registry.plugins})
    tags = {
        "scenario": fed.scenario.name,
        "algorithm": cfg.algorithm.name,
        "share": str(getattr(fed.algorithm.params, "share", "")),
        "arch": cfg.arch.name,
        "backbone": cfg.backbone.name,
        "weighting": cfg.training.weighting.name,
        # which model P-FL evaluates: each client's personal model or its federated one
        "pfl_model": "personal" if fed.algorithm.personal else "federated",
        "data": "synthetic" if fed.synthetic else "real",
        "seed": str(cfg.seed),
        "clients": str(fed.scenario.num_clients),
        "profile": cfg.profile,
        "partition_hash": fed.manifest.digest(),
        "fmtlbench.version": __version__,
        "torch.version": version("torch"),
        "python.version": platform.python_version(),
        "git_sha": _git_sha(),
        "plugins": json.dumps(plugins),
    }
    versions = [f"fmtlbench=={__version__}", f"torch=={tags['torch.version']}", *plugins]
    tags[cachekey.TAG] = cachekey.cache_key(cfg, tags["partition_hash"], versions, tags["data"])
    digests = {m.encoder.__dict__.get("weights_sha256") for m in fed.models.values()}
    digests.discard(None)
    if digests:
        tags["backbone_weights_sha256"] = ",".join(sorted(digests))
    return tags


def execute(
    config: RunConfig,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    resume: str | None = None,
    rounds: int | None = None,
    tags: dict[str, str] | None = None,
    saved: dict[str, Any] | None = None,
) -> RunOutcome:
    """Run (or resume) one federated run end to end; ``rounds`` extends a resumed run and
    ``tags`` are added to a new run's tags (a sweep's name, for instance). ``saved`` is the
    checkpoint of ``resume`` when the caller has already read it (the CLI does, to show its
    settings), so that it is read once."""
    reporter = reporter or NullReporter()
    registry = registry or load_registry()
    state: dict[str, Any] | None = None
    checkpoint.sweep(config.checkpoint_dir)  # strays of killed writes
    if resume:
        state = saved
        if state is None:
            state = checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, resume))
        config = resume_state.resumed_config(state, rounds)
    from fmtlbench import preflight

    reference = preflight.check(config, registry).reference  # before any data is read
    fed = build_federation(config, registry)
    note = edge_metrics_note(fed)
    if note:
        reporter.message(note)
    tracker = Tracker.of(config.tracking)
    energy = EnergyMeter(config.energy)
    engine = Engine(fed, reporter, reference, energy)
    rounds = config.training.rounds
    start, history, initial = 1, {}, None
    if state is not None:
        if state["partition_hash"] != fed.manifest.digest():
            raise ConfigError(f"checkpoint of run {resume} does not match its partition")
        fed.states = state["states"]
        fed.weighting_states = state.get("weighting", fed.weighting_states)
        fed.personal_states = state.get("personal", fed.personal_states)
        fed.algorithm.load_state_dict(state["algorithm"])
        engine.delivered = resume_state.delivered_ids(state["delivered"])
        start, history, initial = state["round"] + 1, state["history"], state["initial"]
        tracker.resume(resume, checkpoint.checkpoint_path(config.checkpoint_dir, resume).parent)
        run_id = resume
        reporter.message(f"resuming run {run_id} at round {start}/{rounds}")
    else:
        run_id = tracker.start(
            config.tracking.run_name, {**run_tags(fed, registry), **(tags or {})}
        )
        tracker.keep_in(checkpoint.checkpoint_path(config.checkpoint_dir, run_id).parent)
        tracker.log_params(config.flat())
        tracker.log_text(yaml.safe_dump(config.dump(), sort_keys=False), "config.yaml")
        tracker.log_text(fed.manifest.model_dump_json(indent=2), "manifest.json")
    ckpt = checkpoint.checkpoint_path(config.checkpoint_dir, run_id)
    current = start
    try:
        energy.start()
        tracker.set_tags({"energy.method": energy.method()})
        if initial is None and config.training.eval_initial:
            initial = engine.evaluate(0)
            history[0] = {
                **engine.evaluation_metrics(initial),
                **engine.energy_metrics({"eval": engine.lap()}),
            }
            tracker.log_metrics(history[0], step=0)
        for current in range(start, rounds + 1):
            metrics = engine.run_round(current)
            tracker.log_metrics(metrics, step=current)
            history[current] = metrics
            lost = tracker.lost is not None  # stop here, with this round checkpointed
            if current % config.checkpoint_every and current != rounds and not lost:
                continue  # a kill before the next save resumes from the last saved round
            server = fed.algorithm.state_dict()
            checkpoint.save(
                ckpt,
                {
                    "config": config.dump(),
                    "round": current,
                    "states": fed.states,
                    "weighting": fed.weighting_states,
                    "personal": fed.personal_states,
                    "algorithm": server,
                    "delivered": resume_state.delivered_tensors(
                        engine.delivered, fed.states, server
                    ),
                    "partition_hash": fed.manifest.digest(),
                    "history": history,
                    "initial": initial,
                },
            )
            if lost:
                raise tracker.stopped(current, resume_state.command(run_id, config.checkpoint_dir))
        # a checkpoint saved at the last round (killed before closing) runs no round: evaluate
        # the restored states, which gives the same result the final round had
        final = engine.last or engine.evaluate(rounds)
        current = min(current, rounds)
        tracker.log_json(
            {"round": final.round, "clients": final.per_client, "delta": final.delta},
            "metrics/clients.json",
        )
        tracker.log_json(final.summary, "metrics/summary.json")
        totals = {
            keys.energy_total(unit): sum(h.get(keys.energy(unit), 0.0) for h in history.values())
            for unit in ("kwh", "co2_kg")
            if any(keys.energy(unit) in h for h in history.values())
        }
        if totals:
            tracker.log_metrics(totals, step=current)
        if tracker.lost is not None:  # lost after the last round: its checkpoint is saved
            raise tracker.stopped(current, resume_state.command(run_id, config.checkpoint_dir))
    except TrackingLost as exc:
        tracker.finish("KILLED", str(exc))  # kept in the outbox, sent by the flush
        raise
    except KeyboardInterrupt:
        signals.pause("shutdown", current)  # test hook: a second signal arrives here
        if ckpt.is_file():
            note = (
                f"interrupted during round {current}; resume with: "
                f"{resume_state.command(run_id, config.checkpoint_dir)}"
            )
        else:  # interrupted before the first checkpoint: nothing to resume from
            note = f"interrupted during round {current}, before any checkpoint; run it again"
        reporter.message(note)
        tracker.finish("KILLED", note)
        raise
    except BaseException as exc:
        tracker.finish("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        energy.stop()
        fed.executor.close()
    tracker.finish("FINISHED")
    checkpoint.remove(ckpt)
    return RunOutcome(run_id, fed, initial, final, history)


def edge_metrics_note(fed: Federation) -> str | None:
    """The one line saying odsF/oisF are skipped, when edge tasks ask for them but pyEdgeEval
    is missing (the edge loss is still evaluated)."""
    from fmtlbench import edges

    wanted = any(
        spec.odsf_thresholds > 0 and spec.match_distance is not None
        for ds in fed.datasets.values()
        for spec in ds.tasks.values()
    )
    return edges.missing_message() if wanted and not edges.available() else None
