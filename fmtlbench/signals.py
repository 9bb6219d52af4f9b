"""SIGTERM handled like Ctrl-C, so pre-empted runs (Slurm, Kubernetes, Ray, `kill`) end cleanly.

The first SIGTERM raises `Terminated`, a KeyboardInterrupt subclass, so the runner's existing
interrupt path marks the MLflow run KILLED and keeps the last completed round's checkpoint.
Any second SIGINT/SIGTERM during that shutdown gets the default action (immediate exit); this
is safe because checkpoints are replaced atomically.

``pause`` is a documented test hook, inert unless ``FMTLBENCH_PAUSE`` is set: it holds the run
at a named point so that a test can send a real signal exactly there (mid-round, inside the
checkpoint write, during the shutdown that follows a first signal) instead of at a moment left
to chance.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

#: ``<point>:<round>`` at which ``pause`` holds the run, e.g. ``checkpoint-write:2``; several
#: separated by commas (``round:2,shutdown:2`` holds mid-round, then again in the shutdown).
PAUSE_ENV = "FMTLBENCH_PAUSE"
#: File that ``pause`` creates once the run is held there (the test waits for it).
PAUSE_FILE_ENV = "FMTLBENCH_PAUSE_FILE"
#: The points: after the first client of a round trained (the round half done), between the
#: checkpoint's temporary file being written and its rename, and in the interrupt handling.
PAUSE_POINTS = ("round", "checkpoint-write", "shutdown")
#: How long a held run waits for its signal before going on (a test that never sends one).
PAUSE_SECONDS = 120.0


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; the CLI exits with 143 (128 + 15)."""


def _on_signal(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def install() -> None:
    """Route SIGTERM and SIGINT through `_on_signal` (main thread only, else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def pause(point: str, round: int | None) -> None:
    """Hold the run here when ``FMTLBENCH_PAUSE`` names ``point`` and ``round`` (a test hook).

    Creates the file named by ``FMTLBENCH_PAUSE_FILE`` and sleeps, so the signal the test then
    sends arrives at this point: SIGINT/SIGTERM raise from the sleep as they would from the work
    the point stands for, SIGKILL ends the process there.
    """
    here = f"{point}:{round}"
    if here not in os.environ.get(PAUSE_ENV, "").split(","):
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:  # replaced whole, so a reader sees one point's line, never half of it
        part = Path(f"{marker}.{os.getpid()}")
        part.write_text(f"{os.getpid()} {here}\n")
        os.replace(part, marker)
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
