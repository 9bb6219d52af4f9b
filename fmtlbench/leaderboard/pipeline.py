"""One leaderboard request end to end: collect, choose references, compute, write, log.

The ``fmtlbench leaderboard`` command parses its options into a ``Request`` and calls
``run``; tests call ``run`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from fmtlbench.errors import ConfigError
from fmtlbench.leaderboard import board as boards
from fmtlbench.leaderboard import cells, collect, reference, report
from fmtlbench.leaderboard.published import read_csv
from fmtlbench.leaderboard.records import Record
from fmtlbench.leaderboard.reference import DEFAULT as DEFAULT_RULE
from fmtlbench.leaderboard.reference import ReferenceRule


@dataclass
class Request:
    """Which runs, against which reference, with which options, and where results go."""

    scenario: str | None = None
    experiment: str = "fmtlbench"
    tracking_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    csv: Path | None = None
    out: Path | None = None
    options: boards.Options = field(default_factory=boards.Options)
    log: bool = True
    rule: ReferenceRule = DEFAULT_RULE

    @property
    def uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")

    @property
    def title(self) -> str:
        if self.csv is not None:
            return self.csv.stem
        parts = [self.scenario or "all scenarios"]
        parts += [f"{k}={v}" for k, v in sorted(self.tags.items())]
        return " ".join(parts)


@dataclass
class Outcome:
    board: boards.Board
    files: list[Path]
    out: Path
    run_id: str | None


def _from_mlflow(request: Request, client) -> tuple[list[Record], Callable, str, str]:
    exp_id = collect.experiment_id(client, request.experiment, request.uri)
    filters = dict(request.tags)
    if request.scenario:
        filters["scenario"] = request.scenario
    records = collect.collect(client, exp_id, filters)
    if not records:
        shown = ", ".join(f"{k}={v}" for k, v in filters.items()) or "no filter"
        raise ConfigError(
            f"no finished fmtlbench runs match {shown} in experiment '{request.experiment}' "
            f"at {request.uri}; check --scenario/--tag/--experiment/--tracking-uri"
        )
    if request.reference:
        fixed = collect.run_record(client, request.reference)
        reference.check_comparable(fixed, records)
        return records, lambda r: fixed, f"run {request.reference} (given)", exp_id
    rule = request.rule
    candidates = collect.reference_candidates(
        client, exp_id, {"algorithm": rule.algorithm, "arch": rule.arch}
    )
    return records, lambda r: reference.choose(r, candidates, rule), rule.describe(), exp_id


def _from_csv(request: Request) -> tuple[list[Record], Callable, str]:
    """The records of the CSV (of ``--scenario`` only, when given) and their reference; every
    row of the file stays a reference candidate, so a niid4 table finds iid1's Local-MD."""
    candidates = read_csv(request.csv)
    records = candidates
    if request.scenario:
        records = [r for r in candidates if r.tags.get("scenario") == request.scenario]
        if not records:
            found = sorted({r.tags["scenario"] for r in candidates if "scenario" in r.tags})
            raise ConfigError(
                f"--scenario {request.scenario}: no rows of {request.csv} have it "
                f"(scenario column: {', '.join(found) or 'absent'})"
            )
    if request.reference:
        name = request.reference
        if not any(r.method.lower() == name.lower() for r in candidates):
            methods = ", ".join(sorted({r.method for r in candidates}))
            raise ConfigError(f"--reference {name}: no such method in {request.csv} ({methods})")
        rule = f"method {name} (given)"
    elif any("algorithm" in r.tags for r in candidates):
        chosen = request.rule
        return records, lambda r: reference.choose(r, candidates, chosen), chosen.describe()
    else:
        name, rule = "local", "the method named 'local' (same seed if available)"
    return records, lambda r: reference.choose_by_method(r, candidates, name), rule


def _log_target(request: Request, client):
    """(client, experiment id) to log a CSV leaderboard into, creating the experiment."""
    from fmtlbench.tracking import artifact_location

    found = client.get_experiment_by_name(request.experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(
        request.experiment, artifact_location=artifact_location(request.uri)
    )


def run(request: Request, console: Console | None = None) -> Outcome:
    """Build, write, print and (unless ``request.log`` is false) log one leaderboard."""
    console = console or Console()
    client = collect.tracking_client(request.uri) if (request.log or not request.csv) else None
    exp_id = None
    if request.csv is not None:
        records, reference_of, rule = _from_csv(request)
    else:
        records, reference_of, rule, exp_id = _from_mlflow(request, client)
    board = boards.build(records, reference_of, request.options, request.title, rule)
    out = request.out or Path("leaderboard") / cells.segment(request.title, keep="-_=.")
    files = report.write(board, out)
    report.show(board, console, out)
    run_id = None
    if request.log:
        exp_id = exp_id or _log_target(request, client)
        params = {
            "source": str(request.csv) if request.csv else request.uri,
            "scenario": request.scenario or "",
            "filters": ", ".join(f"{k}={v}" for k, v in sorted(request.tags.items())),
            "reference": rule,
            "reference_runs": ", ".join(board.references),
            "targets": ",".join(f"{t:g}" for t in request.options.targets),
            "task_weights": str(request.options.weights or "equal"),
            "alpha": str(request.options.alpha),
            "runs": ",".join(r.record.source for r in board.results),
        }
        run_id = report.log_run(board, client, exp_id, out, params)
        console.print(f"logged as MLflow run {run_id} (experiment '{request.experiment}')")
    return Outcome(board, files, out, run_id)
