"""The kit's dataset, partitioner and executor checks (``fmtlbench.testing``): every installed
dataset, partitioner and executor through them - Ray on the session's local Ray - and
deliberately broken toy components failing each check with the rule they break, so that a
check that stopped checking would fail here."""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from fmtlbench_builtins.datasets.nyudv2 import NYUDv2
from fmtlbench_builtins.executors.serial import SerialExecutor
from fmtlbench_builtins.partitioners.iid import RandomPartitioner

from fmtlbench.errors import DataError
from fmtlbench.registry import build_registry
from fmtlbench.tasks import TaskSpec
from fmtlbench.testing import (
    ContractError,
    check_dataset,
    check_executor,
    check_partitioner,
    open_twin,
)
from fmtlbench.testing.executors import FAILING

INSTALLED = build_registry()
#: Twins of the toy datasets: smaller than the kit's default, the rules do not need more.
SMALL = NYUDv2.Params(twin_train=6, twin_test=2, twin_height=16, twin_width=20)


# --------------------------------------------------------------------- installed components
@pytest.mark.parametrize("name", INSTALLED.names("dataset"))
def test_installed_datasets_keep_the_contract(name: str, fmtlbench_kit) -> None:
    dataset = fmtlbench_kit.dataset(INSTALLED.get("dataset", name))
    assert dataset.ids("train") and dataset.synthetic


@pytest.mark.parametrize("dataset", INSTALLED.names("dataset"))
@pytest.mark.parametrize("name", INSTALLED.names("partitioner"))
def test_installed_partitioners_keep_the_contract(name: str, dataset: str, fmtlbench_kit) -> None:
    data = open_twin(INSTALLED.get("dataset", dataset), fmtlbench_kit.workdir / "partitioned")
    fmtlbench_kit.partitioner(INSTALLED.get("partitioner", name), dataset=data)


def test_the_partitioner_check_opens_the_nyudv2_twin_by_itself(tmp_path: Path) -> None:
    check_partitioner(INSTALLED.get("partitioner", "iid"))  # in a temporary folder
    check_partitioner(INSTALLED.get("partitioner", "iid"), workdir=tmp_path)
    assert list(tmp_path.glob("twins/nyudv2-*/NYUDv2/gt_sets/train.txt"))


@pytest.mark.parametrize("name", INSTALLED.names("executor"))
def test_installed_executors_keep_the_contract(name: str, fmtlbench_kit, request) -> None:
    if name == "ray":
        ray = request.getfixturevalue("ray_local")  # one local Ray for the session
        fmtlbench_kit.executor(INSTALLED.get("executor", name))
        assert ray.is_initialized()  # the executor's close left the session's Ray up
    else:
        fmtlbench_kit.executor(INSTALLED.get("executor", name))


# --------------------------------------------------------------------- broken toy datasets
class Toy(NYUDv2):
    """A broken NYUD-v2 reader (each subclass breaks one rule)."""

    name = "toy"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        out = super().read(sample_id, tasks)
        self.spoil(out)
        return out

    def spoil(self, sample: dict) -> None:
        """Break the sample in place."""


class ShortLabel(Toy):
    """Its semseg map is one row short."""

    name = "short-label"

    def spoil(self, sample: dict) -> None:
        if "semseg" in sample:
            sample["semseg"] = sample["semseg"][:-1]


class FloatImage(Toy):
    """Its image is float32."""

    name = "float-image"

    def spoil(self, sample: dict) -> None:
        sample["image"] = sample["image"].astype(np.float32)


class GreyImage(Toy):
    """Its image has one channel."""

    name = "grey-image"

    def spoil(self, sample: dict) -> None:
        sample["image"] = sample["image"][..., :1]


class ClassTooHigh(Toy):
    """A semseg pixel holds class 40 of 40 (ids are 0..39)."""

    name = "class-too-high"

    def spoil(self, sample: dict) -> None:
        if "semseg" in sample:
            sample["semseg"][0, 0] = 40


class NanDepth(Toy):
    """A depth pixel is NaN instead of void."""

    name = "nan-depth"

    def spoil(self, sample: dict) -> None:
        if "depth" in sample:
            sample["depth"][0, 0] = np.nan


class Float64Depth(Toy):
    """Its depth is float64."""

    name = "float64-depth"

    def spoil(self, sample: dict) -> None:
        if "depth" in sample:
            sample["depth"] = sample["depth"].astype(np.float64)


class FlatNormals(Toy):
    """Its normals have one channel for three declared."""

    name = "flat-normals"

    def spoil(self, sample: dict) -> None:
        if "normals" in sample:
            sample["normals"] = sample["normals"][..., 0]


class EveryTask(Toy):
    """Reads every task whatever it is asked for."""

    name = "every-task"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        return super().read(sample_id, list(self.tasks))


class LonelyDepth(Toy):
    """Its depth comes out doubled when depth is read alone."""

    name = "lonely-depth"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        out = super().read(sample_id, tasks)
        if list(tasks) == ["depth"]:
            out["depth"] = out["depth"] * 2
        return out


class TwiceListed(Toy):
    """Lists its first training id twice."""

    name = "twice-listed"

    def ids(self, split):  # noqa: ANN001, ANN201
        ids = super().ids(split)
        return ids + ids[:1]


class Leaking(Toy):
    """Lists its first training id in the test split too."""

    name = "leaking"

    def ids(self, split):  # noqa: ANN001, ANN201
        return super().ids(split) + (super().ids("train")[:1] if split == "test" else [])


class NoTest(Toy):
    """Has an empty test split."""

    name = "no-test"

    def ids(self, split):  # noqa: ANN001, ANN201
        return [] if split == "test" else super().ids(split)


class Restless(Toy):
    """Each instance lists its ids rotated by one more place than the last instance."""

    name = "restless"
    instances = itertools.count(1)

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.shift = next(self.instances)

    def ids(self, split):  # noqa: ANN001, ANN201
        ids = super().ids(split)
        shift = self.shift % len(ids)
        return ids[shift:] + ids[:shift]


class NumberedIds(Toy):
    """Hands out its ids as ints."""

    name = "numbered-ids"

    def ids(self, split):  # noqa: ANN001, ANN201
        return [int(i) for i in super().ids(split)]


class UnknownKind(Toy):
    """Declares a task of a kind nobody registered."""

    name = "unknown-kind"
    tasks: ClassVar[dict[str, TaskSpec]] = {
        **NYUDv2.tasks,
        "no-such-kind": TaskSpec("no-such-kind", 1),
    }


class Misnamed(Toy):
    """Files its edge spec under the key depth."""

    name = "misnamed"
    tasks: ClassVar[dict[str, TaskSpec]] = {**NYUDv2.tasks, "depth": TaskSpec("edge", 1)}


class Wandering(Toy):
    """Its twin draws from another seed at every synthesis."""

    name = "wandering"
    syntheses = itertools.count()

    @classmethod
    def synthesize(cls, out, params, seed=0):  # noqa: ANN001, ANN206
        super().synthesize(out, params, seed + next(cls.syntheses))


class Scribbler(Toy):
    """Notes every read in a log file in its data root."""

    name = "scribbler"

    def spoil(self, sample: dict) -> None:
        with (self.root / "gt_sets" / "reads.log").open("a") as log:
            log.write("read\n")


class KeyedLookup(Toy):
    """Looks sample ids up in a dict: an unknown id is a bare KeyError."""

    name = "keyed-lookup"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        known = {i: i for split in ("train", "test") for i in self.ids(split)}
        return super().read(known[sample_id], tasks)


class HalfClass(Toy):
    """Its semseg map is float, with a pixel between two classes."""

    name = "half-class"

    def spoil(self, sample: dict) -> None:
        if "semseg" in sample:
            sample["semseg"] = sample["semseg"].astype(np.float32)
            sample["semseg"][0, 0] = 0.5


class Vague(Toy):
    """Says that a file is missing, but not which sample's."""

    name = "vague"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        if sample_id not in self.ids("train") + self.ids("test"):
            raise DataError("a file is missing")
        return super().read(sample_id, tasks)


class Forgiving(Toy):
    """Reads its first sample for an id it does not have."""

    name = "forgiving"

    def read(self, sample_id, tasks):  # noqa: ANN001, ANN201
        if sample_id not in self.ids("train") + self.ids("test"):
            sample_id = self.ids("train")[0]
        return super().read(sample_id, tasks)


@pytest.mark.parametrize(
    "cls,message",
    [
        (ShortLabel, r"task 'semseg' has shape \(15, 20\); a label map is H x W = \(16, 20\)"),
        (FloatImage, "image must be a uint8 numpy array, got float32"),
        (GreyImage, r"image must be H x W x 3 \(RGB\)"),
        (ClassTooHigh, r"holds class id 40; ids are 0..39 \(classes=40\) or 255"),
        (NanDepth, "task 'depth' holds NaN or infinite values"),
        (Float64Depth, "task 'depth' has dtype float64; dense labels are float32"),
        (FlatNormals, r"task 'normals' has shape \(16, 20\); expected 16 x 20 x 3"),
        (EveryTask, r"returned keys .*; expected 'image' and \[\] only"),
        (LonelyDepth, "gives other 'depth' values than reading every task"),
        (TwiceListed, "lists '000000' more than once"),
        (Leaking, "'000000' is in both the train and the test split"),
        (NoTest, r"ids\('test'\) is empty"),
        (Restless, "changes order between two instances"),
        (NumberedIds, "holds 0 of type int; sample ids are strings"),
        (UnknownKind, "task 'no-such-kind' is of no registered task kind"),
        (Misnamed, r"tasks\['depth'\] is TaskSpec\('edge'\).*must be equal"),
        (Wandering, "two twins synthesised with one seed differ"),
        (Scribbler, "into the data root"),
        (KeyedLookup, "unknown sample id raised KeyError"),
        (HalfClass, "task 'semseg' holds non-integer class ids such as 0.5"),
        (Vague, "unknown sample id gives DataError.*which does not name it"),
        (Forgiving, "unknown sample id returned a sample instead of raising"),
    ],
)
def test_the_kit_fails_broken_datasets_with_the_rule(cls, message, tmp_path) -> None:
    with pytest.raises(ContractError, match=message):
        check_dataset(cls, tmp_path, params=SMALL)


def test_the_data_root_is_given_its_modes_back(tmp_path: Path) -> None:
    dataset = check_dataset(NYUDv2, tmp_path, params=SMALL)
    assert dataset.root.stat().st_mode & 0o200  # writable again after the read-only check
    assert (dataset.root / "gt_sets" / "train.txt").stat().st_mode & 0o200


# --------------------------------------------------------------------- broken toy partitioners
@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory):
    return open_twin(NYUDv2, tmp_path_factory.mktemp("twin"), SMALL.model_copy(
        update={"twin_train": 24}))  # fmt: skip


class Dropper(RandomPartitioner):
    """Loses the last id of the last client."""

    name = "dropper"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        parts = super().split(ids, shares, seed, dataset)
        return [*parts[:-1], parts[-1][:-1]]


class Overlapper(RandomPartitioner):
    """Gives client 0's first id to client 1 as well."""

    name = "overlapper"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        parts = super().split(ids, shares, seed, dataset)
        if len(parts) > 1:
            parts[1].append(parts[0][0])
        return parts


class Doubler(RandomPartitioner):
    """Gives client 0 its first id twice."""

    name = "doubler"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        parts = super().split(ids, shares, seed, dataset)
        parts[0].append(parts[0][0])
        return parts


class Inventor(RandomPartitioner):
    """Renames client 0's first id."""

    name = "inventor"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        parts = super().split(ids, shares, seed, dataset)
        parts[0][0] = "invented"
        return parts


class OneShort(RandomPartitioner):
    """Returns one part fewer than there are clients."""

    name = "one-short"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        return super().split(ids, shares, seed, dataset)[:-1] or [[]]


class Lopsided(RandomPartitioner):
    """Moves one id from the last client to the first: disjoint, complete, wrong sizes."""

    name = "lopsided"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        parts = super().split(ids, shares, seed, dataset)
        if len(parts) > 1:
            parts[0].append(parts[-1].pop())
        return parts


class NumpyIds(RandomPartitioner):
    """Returns its ids as numpy strings."""

    name = "numpy-ids"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        return [list(np.array(p)) for p in super().split(ids, shares, seed, dataset)]


class InPlace(RandomPartitioner):
    """Shuffles the caller's list of ids in place."""

    name = "in-place"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        random.Random(seed).shuffle(ids)
        return super().split(list(ids), shares, seed, dataset)


class Unseeded(RandomPartitioner):
    """Draws from a fresh seed at every call."""

    name = "unseeded"
    calls = itertools.count()

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        return super().split(ids, shares, seed + 100 + next(self.calls), dataset)


class SeedBlind(RandomPartitioner):
    """Declares itself randomised but ignores the seed."""

    name = "seed-blind"

    def split(self, ids, shares, seed, dataset):  # noqa: ANN001, ANN201
        return super().split(ids, shares, 0, dataset)


class Contiguous(SeedBlind):
    """Cuts the ids in their given order, and says so: not randomised."""

    name = "contiguous"
    randomised = False


@pytest.mark.parametrize(
    "cls,message",
    [
        (Dropper, r"shares \[1, 1, 1, 1\] \(seed 0\) dropped id '\d+'"),
        (Overlapper, "gave id '\\d+' to clients 0 and 1: parts must be disjoint"),
        (Doubler, "gave id '\\d+' twice to client 0"),
        (Inventor, "invented id 'invented'"),
        (OneShort, "returned 3 parts for 4 shares"),
        (Lopsided, r"sizes \[7, 6, 6, 5\]; the size rule .* needs exactly \[6, 6, 6, 6\]"),
        (NumpyIds, "as str_, given as str"),
        (InPlace, "changed the list of ids it was given"),
        (Unseeded, "two splits with seed 0 .* differ"),
        (SeedBlind, r"declares randomised = True, but seeds \[0, 1, 2, 3\] all give one split"),
    ],
)
def test_the_kit_fails_broken_partitioners_with_the_rule(cls, message, twin) -> None:
    with pytest.raises(ContractError, match=message):
        check_partitioner(cls, dataset=twin)


def test_a_partitioner_that_is_not_randomised_is_not_asked_to_differ(twin) -> None:
    check_partitioner(Contiguous, dataset=twin)


# --------------------------------------------------------------------- broken toy executors
class Backwards(SerialExecutor):
    """Yields the results last job first."""

    name = "backwards"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        return reversed(list(super().map(fn, jobs)))


class Completion(SerialExecutor):
    """Runs the jobs on threads and yields each result as soon as its job is done."""

    name = "completion"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        with ThreadPoolExecutor(len(jobs)) as pool:
            yield from (f.result() for f in as_completed([pool.submit(fn, j) for j in jobs]))


class Off(SerialExecutor):
    """Yields a result other than the function's."""

    name = "off"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        for result in super().map(fn, jobs):
            yield {**result, "value": result["value"] + 1}


class Short(SerialExecutor):
    """Forgets the last job."""

    name = "short"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        return super().map(fn, jobs[:-1])


class Swallower(SerialExecutor):
    """Yields None for a job that raised."""

    name = "swallower"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        for job in jobs:
            try:
                yield fn(job)
            except Exception:
                yield None


class Hanging(SerialExecutor):
    """Waits (for long) on a job that raised instead of raising."""

    name = "hanging"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        for job in jobs:
            try:
                yield fn(job)
            except Exception:
                threading.Event().wait(10)


class Muffled(SerialExecutor):
    """Raises its own message for a job that raised, losing the job's."""

    name = "muffled"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        for job in jobs:
            try:
                yield fn(job)
            except Exception:
                raise RuntimeError("a job failed") from None


class OneShot(SerialExecutor):
    """Cannot map a second time."""

    name = "one-shot"

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        if getattr(self, "used", False):
            raise RuntimeError("this executor was used already")
        self.used = True
        return super().map(fn, jobs)


class CloseOnce(SerialExecutor):
    """Refuses to be closed twice."""

    name = "close-once"

    def close(self) -> None:
        if getattr(self, "closed", False):
            raise RuntimeError("closed already")
        self.closed = True


@pytest.mark.parametrize(
    "cls,message",
    [
        (Backwards, r"yielded the results of jobs \[5, 4, 3, 2, 1, 0\] .*: results must come"),
        (Completion, r"yielded the results of jobs \[\d, .*: results must come in job order"),
        (Off, "not what running the jobs one after another gives"),
        (Short, "yielded 5 results for 6 jobs"),
        (Swallower, f"job {FAILING} raised ValueError, but map yielded .*None.* without raising"),
        (Hanging, "map of a failing job did not return within 2 s"),
        (Muffled, "which does not carry the job's own message"),
        (OneShot, r"map \(round 2\) raised RuntimeError: this executor was used already"),
        (CloseOnce, "the second close.. of a fresh executor raised RuntimeError"),
    ],
)
def test_the_kit_fails_broken_executors_with_the_rule(cls, message) -> None:
    with pytest.raises(ContractError, match=message):
        check_executor(cls, timeout=2.0)
