"""The live terminal view of a running sweep: cells done / running / failed / pending, elapsed
time and an ETA.

It is fed by the same ``CellEvent`` stream every executor yields from ``run_cells`` (serial or
Ray), so it needs nothing executor-specific. Redrawing is left to rich's ``Live`` at one frame
per second from a string of a few dozen characters, far below 0.5% of a core; every event is
also printed as one line above the view, so a log captured without a terminal keeps them.
"""

from __future__ import annotations

import time
from typing import Any

from fmtlbench.sweep.pilot import duration


class Progress:
    """Counts and timing of one sweep run, rendered as one status line."""

    def __init__(self, name: str, states: list[str], clock=time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self.started = clock()
        self.todo = len(states)
        self.counts = {"done": 0, "running": 0, "failed": 0}
        self.skipped = sum(s in {"done", "running", "failed", "invalid"} for s in states)

    def update(self, state: str) -> None:
        """One ``CellEvent.state``: started, finished or failed."""
        if state == "started":
            self.counts["running"] += 1
            return
        self.counts["running"] = max(self.counts["running"] - 1, 0)
        self.counts["done" if state == "finished" else "failed"] += 1

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def eta(self) -> float | None:
        """Remaining time at the rate cells have finished so far (parallel runs included)."""
        finished = self.counts["done"] + self.counts["failed"]
        if not finished:
            return None
        return self.elapsed / finished * (self.todo - finished)

    def pending(self) -> int:
        c = self.counts
        return self.todo - c["done"] - c["failed"] - c["running"]

    def line(self) -> str:
        c = self.counts
        eta = self.eta()
        return (
            f"sweep '{self.name}': {c['done']} done, {c['running']} running, {c['failed']} "
            f"failed, {self.pending()} pending of {self.todo} to run "
            f"({self.skipped} not needing a run) | elapsed {duration(self.elapsed)}"
            f" | ETA {duration(eta) if eta is not None else 'after the first cell'}"
        )

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.line(), style="bold")
