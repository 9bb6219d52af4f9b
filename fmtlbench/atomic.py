"""Folders that appear whole or not at all.

Synthetic twins and extracted archives are written into a private temporary folder next to
their destination and renamed into place only when complete, so an interruption never leaves a
half-written dataset that a later run would mistake for a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fmtlbench.errors import DataError


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a path (not yet created) to fill; it becomes ``out`` when the block succeeds.

    ``out`` must not exist. The yielded path lives in a temporary sibling of ``out`` (same file
    system, so the final rename is atomic) that is removed whatever happens.
    """
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} already exists; delete it to write it again")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield scratch / out.name
        os.replace(scratch / out.name, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable: the folder entry itself is flushed,
    not only the file's bytes (checkpoints and the tracking outbox rely on it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
