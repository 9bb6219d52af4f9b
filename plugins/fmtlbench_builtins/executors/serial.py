"""The reference executor: clients one after another in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fmtlbench import hookimpl
from fmtlbench.components import Executor


class SerialExecutor(Executor):
    """Runs clients one after another in this process (the reproducible reference)."""

    name = "serial"

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Any]:
        for job in jobs:
            yield fn(job)


@hookimpl
def register_executors():
    return [SerialExecutor]
