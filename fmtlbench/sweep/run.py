"""Running a planned sweep: skip done cells, resume killed ones, run the rest on an executor.

Cells go to ``Executor.run_cells`` as plain data (config dict, resume id, sweep name) with the
module-level ``run_cell``, so a parallel executor can ship them to other processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmtlbench.sweep.cache import SWEEP_TAG
from fmtlbench.sweep.plan import Cell


def run_cell(job: dict[str, Any]) -> str:
    """One cell end to end in this process; returns its MLflow run id."""
    from fmtlbench.config import RunConfig
    from fmtlbench.runner import execute

    config = RunConfig.model_validate(job["config"])
    outcome = execute(config, resume=job["resume"], tags={SWEEP_TAG: job["sweep"]})
    return outcome.run_id


@dataclass
class Report:
    """What a sweep did: counts by outcome, and each failed cell's reason."""

    ran: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{len(self.ran)} ran ({len(self.resumed)} resumed), {len(self.skipped)} skipped "
            f"(done or running), {len(self.invalid)} invalid, {len(self.failed)} failed"
        )


def todo(cells: list[Cell], retry_failed: bool) -> list[Cell]:
    """Cells that need work: pending, killed (resume) and, if asked, failed ones."""
    wanted = {"pending", "killed", *(["failed"] if retry_failed else [])}
    return [c for c in cells if c.state in wanted]


def run_sweep(
    name: str,
    cells: list[Cell],
    executor,
    retry_failed: bool = False,
    on_event: Callable[[Cell, Any], None] | None = None,
) -> Report:
    """Run the cells that need work; a failing cell is reported, never stops the others."""
    report = Report()
    work = todo(cells, retry_failed)
    report.invalid = [c.index for c in cells if c.state == "invalid"]
    report.skipped = [c.index for c in cells if c.state in {"done", "running"}]
    report.skipped += [c.index for c in cells if c.state == "failed" and not retry_failed]
    jobs = [
        {
            "config": c.config.dump(),
            "resume": c.run_id if c.state == "killed" else None,
            "sweep": name,
        }
        for c in work
    ]
    for event in executor.run_cells(run_cell, jobs):
        cell = work[event.index]
        if event.state == "started":
            cell.state = "running"
            if jobs[event.index]["resume"]:
                report.resumed.append(cell.index)
        elif event.state == "finished":
            cell.state, cell.run_id = "done", event.result
            report.ran.append(cell.index)
        else:
            cell.state = "failed"
            report.failed[cell.index] = event.error or "unknown error"
        if on_event is not None:
            on_event(cell, event)
    return report
