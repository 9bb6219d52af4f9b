"""The dataset contract, checked on the dataset's own synthetic twin read back by its reader.

A dataset is the one component whose mistakes do not crash: a label one pixel short, a depth
map in float64 or a class id past the last class trains and evaluates quietly wrong. So
``check_dataset`` synthesises a small twin (sized like the kit's tiny runs, ``tiny.TWIN``,
where the dataset's ``Params`` accept those fields) and reads every sample of it through the
dataset's own ``ids`` and ``read``, checking:

- declarations: every key of ``tasks`` is a registered task kind and its ``TaskSpec.name``
  equals the key;
- ids: both splits non-empty, strings, unique, disjoint, listed in the same order by two
  instances;
- samples: ``image`` uint8 H x W x 3; one array per requested task with the image's H x W, in
  the form its kind expects (label maps H x W integer-valued in ``0..classes-1`` or
  ``IGNORE``; other tasks float32 H x W, or H x W x C for C channels, finite); a request for
  some tasks returns those and no others, with the same values;
- determinism: a second twin with the same seed has the same ids and the same bytes;
- the data root is only read: no file under it is created, changed or removed by reading
  (its folders are also made read-only while it is read, which binds unless running as root);
- an unknown sample id is a ``FmtlbenchError`` naming the id, not a ``KeyError`` traceback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmtlbench.components import Dataset, Params
from fmtlbench.errors import FmtlbenchError
from fmtlbench.tasks import IGNORE, TaskSpec
from fmtlbench.testing.checks import ContractError, check_component
from fmtlbench.testing.tiny import TWIN

if TYPE_CHECKING:  # pragma: no cover - typing only
    from fmtlbench.registry import Registry

#: A sample id no dataset has: reading it must be a clear error.
UNKNOWN_ID = "fmtlbench-kit-no-such-sample"


def _fail(cls: Any, rule: str) -> None:
    raise ContractError(f"dataset {getattr(cls, 'name', cls)!s}: {rule}")


def twin_params(cls: type[Dataset], **values: Any) -> Params:
    """``cls.Params`` with the kit's tiny twin sizes for the fields it has, then ``values``."""
    fields = cls.Params.model_fields
    return cls.Params(**{k: v for k, v in TWIN.items() if k in fields}, **values)


def open_twin(
    cls: type[Dataset], workdir: Path, params: Params | None = None, seed: int = 0
) -> Dataset:
    """A dataset instance on its synthetic twin under ``workdir`` (generated on first use,
    the way a run generates it): the tiny real dataset the kit's other checks work on."""
    from fmtlbench.data import ensure_twin

    params = params if params is not None else twin_params(cls)
    root = ensure_twin(cls, params, Path(workdir), seed)
    return cls(params, root, synthetic=True, cache=root.parent / "cache")


def _declarations(cls: type[Dataset], registry: Registry | None) -> None:
    from fmtlbench.tasks import UnknownTaskError, kind_of

    tasks = getattr(cls, "tasks", None)
    if not isinstance(tasks, Mapping) or not tasks:
        _fail(cls, "tasks must be a non-empty dict of task name -> TaskSpec")
    for key, spec in tasks.items():
        if not isinstance(spec, TaskSpec):
            _fail(cls, f"tasks[{key!r}] is a {type(spec).__name__}, not a TaskSpec")
        if spec.name != key:
            _fail(
                cls,
                f"tasks[{key!r}] is TaskSpec({spec.name!r}): a task is named by its kind, so "
                "the key and TaskSpec.name must be equal",
            )
        try:
            kind_of(key, registry)
        except UnknownTaskError:
            _fail(
                cls,
                f"task {key!r} is of no registered task kind (fmtlbench list tasks); name a "
                "registered kind, or register yours with register_tasks",
            )


def _ids(cls: type[Dataset], dataset: Dataset, again: Dataset) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for split in ("train", "test"):
        ids = list(dataset.ids(split))
        if not ids:
            _fail(cls, f"ids({split!r}) is empty on the synthetic twin")
        foreign = [i for i in ids if not isinstance(i, str)]
        if foreign:
            _fail(
                cls,
                f"ids({split!r}) holds {foreign[0]!r} of type {type(foreign[0]).__name__}; "
                "sample ids are strings (manifests store them as JSON strings)",
            )
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            _fail(cls, f"ids({split!r}) lists {twice[0]!r} more than once")
        if list(again.ids(split)) != ids:
            _fail(
                cls,
                f"ids({split!r}) changes order between two instances on one folder; list "
                "ids in file order (partitions are seeded permutations of this order)",
            )
        out[split] = ids
    shared = sorted(set(out["train"]) & set(out["test"]))
    if shared:
        _fail(cls, f"sample {shared[0]!r} is in both the train and the test split")
    return out


def _sample(
    cls: type[Dataset], sample_id: str, sample: Any, tasks: list[str]
) -> dict[str, np.ndarray]:
    where = f"read({sample_id!r}, {tasks})"
    if not isinstance(sample, Mapping):
        _fail(cls, f"{where} returned a {type(sample).__name__}, not a dict of arrays")
    keys = set(sample)
    if keys != {"image", *tasks}:
        _fail(cls, f"{where} returned keys {sorted(keys)}; expected 'image' and {tasks} only")
    image = sample["image"]
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        what = getattr(image, "dtype", type(image).__name__)
        _fail(cls, f"{where}: image must be a uint8 numpy array, got {what}")
    if image.ndim != 3 or image.shape[2] != 3:
        _fail(cls, f"{where}: image must be H x W x 3 (RGB), got shape {image.shape}")
    hw = image.shape[:2]
    for task in tasks:
        _label(cls, f"{where}: task {task!r}", cls.tasks[task], sample[task], hw)
    return dict(sample)


def _label(cls: type[Dataset], where: str, spec: TaskSpec, label: Any, hw: tuple) -> None:
    if not isinstance(label, np.ndarray):
        _fail(cls, f"{where} is a {type(label).__name__}, not a numpy array")
    if spec.classes is not None:
        if label.shape != hw:
            _fail(cls, f"{where} has shape {label.shape}; a label map is H x W = {hw}")
        if label.dtype.kind not in "uif":
            _fail(cls, f"{where} has dtype {label.dtype}; class ids are integers (uint8)")
        values = np.unique(label)
        if label.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            _fail(cls, f"{where} holds non-integer class ids such as {values[values % 1 != 0][0]}")
        bad = values[((values < 0) | (values >= spec.classes)) & (values != IGNORE)]
        if bad.size:
            _fail(
                cls,
                f"{where} holds class id {bad[0]}; ids are 0..{spec.classes - 1} "
                f"(classes={spec.classes}) or {IGNORE} (void)",
            )
        return
    shapes = [(*hw, spec.channels)] + ([hw] if spec.channels == 1 else [])
    if label.shape not in shapes:
        want = " or ".join(" x ".join(map(str, s)) for s in shapes)
        _fail(cls, f"{where} has shape {label.shape}; expected {want} (channels={spec.channels})")
    if label.dtype != np.float32:
        _fail(cls, f"{where} has dtype {label.dtype}; dense labels are float32")
    if not np.isfinite(label).all():
        _fail(cls, f"{where} holds NaN or infinite values; mark void pixels {IGNORE} instead")


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` -> (size, modification time in ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        out[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return out


@contextmanager
def _read_only(root: Path) -> Iterator[None]:
    """Take write permission off every folder and file under ``root`` while the block runs,
    and give the original modes back afterwards."""
    modes: dict[Path, int] = {}
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    try:
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            modes[path] = mode
            os.chmod(path, mode & ~writable)
        yield
    finally:
        for path, mode in modes.items():
            try:
                os.chmod(path, mode)
            except OSError:
                pass


def _read_all(cls: type[Dataset], dataset: Dataset, ids: dict[str, list[str]]) -> list[dict]:
    tasks = list(cls.tasks)
    samples = []
    for split in ("train", "test"):
        for sample_id in ids[split]:
            samples.append(_sample(cls, sample_id, dataset.read(sample_id, tasks), tasks))
    first = ids["train"][0]
    for subset in [[], *([t] for t in tasks), tasks[::-1][:2]]:
        part = _sample(cls, first, dataset.read(first, subset), subset)
        for key in ("image", *subset):
            if not np.array_equal(part[key], samples[0][key], equal_nan=True):
                _fail(
                    cls,
                    f"read({first!r}, {subset}) gives other {key!r} values than reading "
                    "every task: what one task reads must not depend on the others asked",
                )
    return samples


def _unknown_id(cls: type[Dataset], dataset: Dataset) -> None:
    try:
        dataset.read(UNKNOWN_ID, list(cls.tasks))
    except FmtlbenchError as exc:
        if UNKNOWN_ID not in str(exc):
            _fail(cls, f"reading an unknown sample id gives {exc!r}, which does not name it")
        return
    except Exception as exc:  # what the rule is about: no bare KeyError/OSError traceback
        _fail(
            cls,
            f"reading an unknown sample id raised {type(exc).__name__}: {exc}; raise a "
            "fmtlbench.errors.DataError naming the id (or its missing file)",
        )
    _fail(cls, "reading an unknown sample id returned a sample instead of raising DataError")


def _same_bytes(cls: type[Dataset], first: list[dict], second: list[dict]) -> None:
    for a, b in zip(first, second, strict=True):
        for key in a:
            x, y = np.asarray(a[key]), np.asarray(b[key])
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                _fail(
                    cls,
                    f"two twins synthesised with one seed differ ({key!r} of a sample): "
                    "synthesize must draw everything from its seed",
                )


def check_dataset(
    cls: type[Dataset],
    workdir: Path,
    params: Params | None = None,
    seed: int = 0,
    registry: Registry | None = None,
) -> Dataset:
    """Run the dataset contract (module docstring) on ``cls``'s synthetic twin, synthesised
    with ``params`` (default: the kit's tiny sizes) and ``seed`` into folders under
    ``workdir``; ``registry`` resolves task kinds (default: the installed ones). Returns the
    dataset instance on the twin, for checks of components that need a real dataset."""
    check_component(cls, "dataset")
    _declarations(cls, registry)
    params = params if params is not None else twin_params(cls)
    dataset = open_twin(cls, Path(workdir) / "twin", params, seed)
    root = dataset.root
    before = _snapshot(root)
    fix = "the data root is read-only: write derived files under self.cache"
    try:
        with _read_only(root):
            ids = _ids(cls, dataset, open_twin(cls, Path(workdir) / "twin", params, seed))
            samples = _read_all(cls, dataset, ids)
            _unknown_id(cls, dataset)
    except PermissionError as exc:
        _fail(cls, f"reading tried to write into the data root ({exc}); {fix}")
    after = _snapshot(root)
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        _fail(
            cls,
            f"reading wrote into the data root ({changed[0]!r} under {root} was created, "
            f"changed or removed); {fix}",
        )
    other = open_twin(cls, Path(workdir) / "twin-again", params, seed)
    if {s: list(other.ids(s)) for s in ("train", "test")} != ids:
        _fail(cls, "two twins synthesised with one seed list different ids")
    _same_bytes(cls, samples, _read_all(cls, other, ids))
    return dataset
