"""Which PASCAL images contain an annotated person, computed once per file and cached.

Only images with a part-annotated person supervise the parts task; the others get an
all-ignore parts map without their annotation file being parsed again. The answer is kept in a
JSON file in the dataset's cache folder (never in the read-only data root), keyed by the data
root's path, with each file's size and modification time, so an edited or replaced file is
looked at again. Writes are atomic, so concurrent readers never see a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

#: Unsaved answers after which the cache file is rewritten (it is also written on exit).
FLUSH_EVERY = 64


class PersonIndex:
    """``has_person(id)`` answered from the cache, else by ``probe(path)`` on the file.

    Readers that parse the file anyway call ``lookup`` first and ``record`` what they found,
    so no file is parsed twice.
    """

    def __init__(
        self, root: Path, folder: Path, probe: Callable[[Path], bool], cache: Path | None
    ) -> None:
        self.folder = folder
        self.probe = probe
        key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
        self.path = None if cache is None else Path(cache) / f"has_person-{key}.json"
        self.entries: dict[str, list[int]] = {}  # id -> [size, mtime_ns, has_person]
        self.unsaved = 0
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())["entries"]
            except (OSError, ValueError, KeyError, TypeError):
                self.entries = {}  # an unreadable cache is only a cache: start again
        self._finalizer = weakref.finalize(self, PersonIndex._save, self.path, self.entries)

    def file(self, sample_id: str) -> Path:
        return self.folder / f"{sample_id}.mat"

    def lookup(self, sample_id: str) -> bool | None:
        """The cached answer for ``sample_id``, or None if unknown or its file changed."""
        known = self.entries.get(sample_id)
        if known is None:
            return None
        try:
            stat = self.file(sample_id).stat()
        except OSError:
            return None  # gone: let the reader report the missing file
        return bool(known[2]) if known[:2] == [stat.st_size, stat.st_mtime_ns] else None

    def has_person(self, sample_id: str) -> bool:
        """Whether the annotation file of ``sample_id`` has a part-annotated person."""
        answer = self.lookup(sample_id)
        if answer is None:
            answer = self.record(sample_id, self.probe(self.file(sample_id)))
        return answer

    def record(self, sample_id: str, answer: bool) -> bool:
        """Remember ``answer`` for the file of ``sample_id`` as it is now."""
        stat = self.file(sample_id).stat()
        self.entries[sample_id] = [stat.st_size, stat.st_mtime_ns, int(answer)]
        self.unsaved += 1
        if self.unsaved >= FLUSH_EVERY:
            self.flush()
        return answer

    def flush(self) -> None:
        """Write the cache file now (a no-op without a cache folder)."""
        PersonIndex._save(self.path, self.entries)
        self.unsaved = 0

    @staticmethod
    def _save(path: Path | None, entries: dict[str, list[int]]) -> None:
        if path is None or not entries:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            merged = dict(entries)
            if path.is_file():  # keep what other processes found meanwhile
                try:
                    merged = {**json.loads(path.read_text())["entries"], **entries}
                except (OSError, ValueError, KeyError, TypeError):
                    pass
            fd, scratch = tempfile.mkstemp(prefix=".has_person-", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump({"entries": merged}, out)
                os.replace(scratch, path)
            finally:
                Path(scratch).unlink(missing_ok=True)
        except OSError:
            pass  # the cache only saves time; failing to write it must not fail a run
