"""The kit as a pytest plugin (entry point ``pytest11``): the ``fmtlbench_kit`` fixture.

Loaded by pytest in every environment where fmtlbench is installed, so it imports nothing
heavy: the checks are imported when a test asks for the fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class Kit:
    """The kit's checks bound to a temporary working folder of the test session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def component(self, cls: type, kind: str) -> None:
        from fmtlbench.testing import check_component

        check_component(cls, kind)

    def algorithm(self, cls: type, **options: Any) -> dict:
        from fmtlbench.testing import check_algorithm

        return check_algorithm(cls, self.workdir, **options)

    def backbone(self, cls: type) -> None:
        from fmtlbench.testing import check_backbone

        check_backbone(cls)

    def decoder(self, cls: type) -> None:
        from fmtlbench.testing import check_decoder

        check_decoder(cls)

    def task_kind(self, cls: type, spec: Any, target: Any) -> None:
        from fmtlbench.testing import check_task_kind

        check_task_kind(cls, spec, target)

    def dataset(self, cls: type, **options: Any) -> Any:
        """``check_dataset`` on the dataset's twin in this session's folder; the instance."""
        from fmtlbench.testing import check_dataset

        return check_dataset(cls, self.workdir / "datasets" / cls.name, **options)

    def partitioner(self, cls: type, **options: Any) -> None:
        """``check_partitioner``; without a ``dataset``, on the nyudv2 twin of this session."""
        from fmtlbench.testing import check_partitioner

        options.setdefault("workdir", self.workdir / "partitioners")
        check_partitioner(cls, **options)

    def executor(self, cls: type, **options: Any) -> None:
        """``check_executor``; pass ``params`` to point it at a running cluster."""
        from fmtlbench.testing import check_executor

        check_executor(cls, **options)


@pytest.fixture(scope="session")
def fmtlbench_kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    """fmtlbench's contract checks, working in a session temporary folder (the tiny
    federations they build are shared by every check of the session)."""
    return Kit(tmp_path_factory.mktemp("fmtlbench-kit"))
