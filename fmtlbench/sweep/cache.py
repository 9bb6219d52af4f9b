"""The run cache: what MLflow already holds for a cell, found by its cache-key tag.

A FINISHED run means the cell is done; a KILLED (or stale RUNNING) run whose checkpoint still
exists is resumed; a FAILED one is retried only when asked. Only this module reads run states
for sweeps, so ``--status``, ``--dry-run`` and the run itself agree.
"""

from __future__ import annotations

from fmtlbench import cachekey, checkpoint
from fmtlbench.sweep.plan import Cell

#: Sweep-name tag set on every run a sweep starts (``leaderboard --sweep`` filters on it).
SWEEP_TAG = "fmtlbench.sweep"
_PREFERENCE = {"FINISHED": 0, "RUNNING": 1, "KILLED": 2, "FAILED": 3}


def lookup(cells: list[Cell]) -> None:
    """Set each probed cell's ``state`` (done/running/killed/failed/pending) and ``run_id``."""
    from fmtlbench.tracking import Tracker

    trackers: dict[tuple[str, str], Tracker] = {}
    for cell in cells:
        if cell.key is None:
            continue
        where = (cell.config.tracking.uri, cell.config.tracking.experiment)
        if where not in trackers:
            trackers[where] = Tracker(*where)
        tracker = trackers[where]
        runs = tracker.client.search_runs(
            [tracker.experiment_id], f"tags.`{cachekey.TAG}` = '{cell.key}'", max_results=50
        )
        runs = [r for r in runs if r.info.status in _PREFERENCE]
        if not runs:
            cell.state, cell.run_id = "pending", None
            continue
        best = min(runs, key=lambda r: (_PREFERENCE[r.info.status], -r.info.start_time))
        cell.run_id = best.info.run_id
        status = best.info.status
        if status == "FINISHED":
            cell.state = "done"
        elif status == "FAILED":
            cell.state = "failed"
        elif status == "RUNNING":
            cell.state = "running"  # maybe in another process: never started twice
        elif checkpoint.checkpoint_path(cell.config.checkpoint_dir, cell.run_id).exists():
            cell.state = "killed"
        else:
            cell.state, cell.run_id = "pending", None  # killed before its first checkpoint
