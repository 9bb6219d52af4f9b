"""SIGTERM handled like Ctrl-C, so pre-empted runs (Slurm, Kubernetes, Ray, `kill`) end cleanly.

The first SIGTERM raises `Terminated`, a KeyboardInterrupt subclass, so the runner's existing
interrupt path marks the MLflow run KILLED and keeps the last completed round's checkpoint.
Any second SIGINT/SIGTERM during that shutdown gets the default action (immediate exit); this
is safe because checkpoints are replaced atomically.
"""

from __future__ import annotations

import signal
import threading


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
