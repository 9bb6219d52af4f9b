"""Checking a data root before hours of training are spent on it.

For every registered dataset whose folder is under the root: the folders of its layout, the
ids of its split files (duplicates, overlap between train and test), the split sizes (the
real dataset's, or those recorded by ``fmtlbench data synth`` for a twin), and every file of
every task of every sample, decoded through the dataset's own reader, so that what verify
accepts is exactly what a run can read. Nothing is written: the data root stays untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmtlbench.components import Dataset
from fmtlbench.errors import FmtlbenchError

#: File next to the dataset folders in which ``fmtlbench data synth`` records its twins.
TWIN_RECORD = "fmtlbench-twins.json"
SPLITS = ("train", "test")


@dataclass
class Check:
    """What verify found about one dataset folder."""

    dataset: str
    folder: Path
    kind: str  # "real" or "synthetic twin"
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def twin_records(root: Path) -> dict[str, Any]:
    """``folder -> record`` of the twins ``fmtlbench data synth`` wrote under ``root``."""
    path = Path(root) / TWIN_RECORD
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):  # absent or unreadable: no twins recorded
        return {}
    return records if isinstance(records, dict) else {}


def record_twin(root: Path, folder: str, record: dict[str, Any]) -> None:
    """Add a twin's record (dataset, seed, parameters, split sizes) to ``root``'s list."""
    records = twin_records(root)
    records[folder] = record
    (Path(root) / TWIN_RECORD).write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")


def find(root: Path, classes: Sequence[type[Dataset]]) -> list[tuple[type[Dataset], Path]]:
    """Registered datasets whose folder is under ``root`` (or ``root`` itself is one)."""
    root = Path(root)
    found = [(cls, root / cls.folder) for cls in classes if (root / cls.folder).is_dir()]
    if not found:
        found = [(cls, root) for cls in classes if root.name == cls.folder and root.is_dir()]
    return found


def _read_problems(data: Dataset, sample_id: str) -> list[str]:
    """Errors of reading one sample: all tasks at once, and task by task only on failure,
    so that every broken file is named (not just the first)."""
    try:
        data.read(sample_id, list(data.tasks))
        return []
    except FmtlbenchError:
        pass
    problems: list[str] = []
    for task in data.tasks:
        try:
            data.read(sample_id, [task])
        except FmtlbenchError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    return problems


def check(
    cls: type[Dataset],
    folder: Path,
    expected: dict[str, int] | None,
    kind: str,
    progress: Callable[[int, int], None] | None = None,
) -> Check:
    """Verify one dataset folder; ``expected`` split sizes (None: do not check sizes)."""
    result = Check(cls.name, folder, kind)
    for sub in cls.layout:
        if not (folder / sub).is_dir():
            result.problems.append(f"missing folder {folder / sub}")
    data = cls(None, folder, synthetic=kind != "real", cache=None)
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        try:
            ids[split] = data.ids(split)
        except FmtlbenchError as exc:
            result.problems.append(str(exc))
            continue
        result.sizes[split] = len(ids[split])
        seen: set[str] = set()
        for sample_id in ids[split]:
            if sample_id in seen:
                result.problems.append(f"{split} split lists id {sample_id!r} twice")
            seen.add(sample_id)
        want = (expected or {}).get(split)
        if want is not None and len(ids[split]) != want:
            result.problems.append(
                f"{split} split has {len(ids[split])} ids, the {kind} dataset has {want}"
            )
    shared = set(ids.get("train", ())) & set(ids.get("test", ()))
    if shared:
        result.problems.append(
            f"{len(shared)} ids are in both train and test, e.g. {sorted(shared)[0]!r}"
        )
    samples = list(dict.fromkeys(ids.get("train", []) + ids.get("test", [])))
    for done, sample_id in enumerate(samples, start=1):
        result.problems += _read_problems(data, sample_id)
        if progress is not None:
            progress(done, len(samples))
    return result


def verify_root(
    root: Path,
    classes: Sequence[type[Dataset]],
    counts: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Check]:
    """Check every dataset folder under ``root``; sizes are checked unless ``counts`` is off."""
    checks = []
    for cls, folder in find(root, classes):
        record = twin_records(folder.parent).get(cls.folder)
        kind = "synthetic twin" if record else "real"
        expected = (record or {}).get("sizes") if record else dict(cls.expected_sizes)
        step = None if progress is None else (lambda d, n, name=cls.name: progress(name, d, n))
        checks.append(check(cls, folder, expected if counts else None, kind, step))
    return checks
