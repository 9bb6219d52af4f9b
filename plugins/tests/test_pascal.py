"""The pascal-context plugin: its twin's files, its reader, edges, parts and the person cache.

What the reader returns is checked against what the renderer produced (read back through the
real file formats), the ``.mat`` files against scipy's own view of them, edges against a naive
Laplacian and a sequential thinning written here, and the read-only guarantee by comparing the
data root's files, sizes and modification times before and after reading everything.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from fmtlbench_builtins.datasets.annotation import (
    PART_GROUPS,
    read_label_map,
    read_parts,
    write_label_map,
)
from fmtlbench_builtins.datasets.contour import laplacian, thin
from fmtlbench_builtins.datasets.pascal import PascalContext, in_voc12, register_datasets
from fmtlbench_builtins.datasets.photo import render_photo
from PIL import Image
from pydantic import ValidationError
from scipy.io import loadmat, savemat

from fmtlbench.errors import ConfigError, DataError
from fmtlbench.tasks import IGNORE

TASKS = ["semseg", "parts", "normals", "edge", "saliency"]
SMALL = {"twin_train": 6, "twin_test": 4, "twin_height": 48, "twin_width": 64}
PNG_NORMAL_TOL = (1 + np.sqrt(3)) / 255  # 8-bit rounding of each component, then renormalised


def make_twin(root: Path, seed: int = 0, cache: Path | None = None, **params) -> PascalContext:
    p = PascalContext.Params(**{**SMALL, **params})
    PascalContext.synthesize(root / "PASCALContext", p, seed=seed)
    return PascalContext(p, root / "PASCALContext", synthetic=True, cache=cache)


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Relative path -> (sha256, size, mtime_ns) of every file and folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> PascalContext:
    base = tmp_path_factory.mktemp("pascal")
    return make_twin(base / "data", cache=base / "cache", twin_voc12_share=0.5)


@pytest.fixture(scope="module")
def truth(twin: PascalContext) -> dict[str, dict]:
    """The renderer's own labels of every twin photo (seed 0: photo seed = index)."""
    ids = twin.ids("train") + twin.ids("test")
    return {sample_id: render_photo(index, 48, 64) for index, sample_id in enumerate(ids)}


def naive_void_band(labels: np.ndarray) -> np.ndarray:
    h, w = labels.shape
    band = np.zeros_like(labels, dtype=bool)
    for i in range(h):
        for j in range(w):
            for y in range(max(i - 1, 0), min(i + 2, h)):
                for x in range(max(j - 1, 0), min(j + 2, w)):
                    a, b = labels[i, j], labels[y, x]
                    band[i, j] |= a != b and (a != 0 or b != 0)
    return band


def naive_laplacian(labels: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian with the border reflected about the edge pixel (d c b|a b c d)."""
    h, w = labels.shape
    lab = labels.astype(np.float64)

    def at(i: int, j: int) -> float:
        i = -i if i < 0 else (2 * (h - 1) - i if i >= h else i)
        j = -j if j < 0 else (2 * (w - 1) - j if j >= w else j)
        return lab[i, j]

    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = at(i - 1, j) + at(i + 1, j) + at(i, j - 1) + at(i, j + 1) - 4 * lab[i, j]
    return out


def sequential_thin(mask: np.ndarray) -> np.ndarray:
    """Guo-Hall thinning written pixel by pixel from the paper's conditions; deletions of a
    subiteration are decided on the image as it was at its start (parallel algorithm)."""
    img = np.pad(np.asarray(mask, dtype=bool), 1)
    offsets = [(0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)]
    while True:
        changed = False
        for first in (True, False):
            doomed = []
            for i, j in zip(*np.nonzero(img), strict=True):
                x = [bool(img[i + dy, j + dx]) for dy, dx in offsets]

                def p(k: int, x: list[bool] = x) -> bool:
                    return x[(k - 1) % 8]  # x1..x8, and x9 is x1

                c = sum((not p(2 * k - 1)) and (p(2 * k) or p(2 * k + 1)) for k in range(1, 5))
                n1 = sum(p(2 * k - 1) or p(2 * k) for k in range(1, 5))
                n2 = sum(p(2 * k) or p(2 * k + 1) for k in range(1, 5))
                g3 = (p(2) or p(3) or not p(8)) and p(1) if first else (
                    (p(6) or p(7) or not p(4)) and p(5)
                )  # fmt: skip
                if c == 1 and 2 <= min(n1, n2) <= 3 and not g3:
                    doomed.append((i, j))
            for i, j in doomed:
                img[i, j] = False
            changed |= bool(doomed)
        if not changed:
            return img[1:-1, 1:-1]


# --------------------------------------------------------------------------- registration
def test_hook_registers_the_dataset() -> None:
    assert register_datasets() == [PascalContext]
    assert (PascalContext.name, PascalContext.folder) == ("pascal-context", "PASCALContext")
    specs = PascalContext.tasks
    assert {t: s.channels for t, s in specs.items()} == {
        "semseg": 21, "parts": 7, "normals": 3, "edge": 1, "saliency": 1
    }  # fmt: skip
    assert specs["semseg"].classes == 21 and specs["parts"].classes == 7
    assert specs["edge"].pos_weight == 0.95 and specs["saliency"].pos_weight is None
    assert PascalContext.expected_sizes == {"train": 4998, "test": 5105}


# --------------------------------------------------------------------------- edges
def test_thinning_matches_the_documented_example_and_a_sequential_version() -> None:
    square = np.zeros((7, 7), dtype=bool)
    square[1:-1, 2:-2] = True
    square[0, 1] = True
    expected = np.zeros((7, 7), dtype=bool)  # scikit-image's documented result of thin()
    expected[[0, 1, 2, 3, 4], [1, 2, 3, 3, 3]] = True
    np.testing.assert_array_equal(thin(square), expected)
    rng = np.random.default_rng(0)
    for _ in range(6):
        blob = rng.random((14, 17)) < 0.55
        np.testing.assert_array_equal(thin(blob), sequential_thin(blob))


def test_laplacian_matches_a_naive_loop_and_a_hand_value() -> None:
    labels = np.array([[0, 0, 3], [0, 5, 3], [2, 2, 3]])
    # centre: 0 + 2 + 0 + 3 - 4 * 5 = -15; corner (0, 0) reflects to (1, 0) and (0, 1): 0
    lap = laplacian(labels)
    assert lap[1, 1] == -15 and lap[0, 0] == 0
    rng = np.random.default_rng(1)
    random_labels = rng.integers(0, 4, size=(9, 11))
    np.testing.assert_array_equal(laplacian(random_labels), naive_laplacian(random_labels))


# --------------------------------------------------------------------------- the twin
def test_twin_layout_and_file_formats(twin: PascalContext) -> None:
    ids = twin.ids("train") + twin.ids("test")
    assert ids == [f"2008_{i:06d}" for i in range(10)] and len(twin.ids("test")) == 4
    expected = {"ImageSets/Context/train.txt", "ImageSets/Context/val.txt"}
    for index, i in enumerate(ids):
        folder = "VOC12" if in_voc12(index, 0.5) else "pascal-context"
        expected |= {f"JPEGImages/{i}.jpg", f"semseg/{folder}/{i}.png", f"human_parts/{i}.mat",
                     f"pascal-context/trainval/{i}.mat", f"normals_distill/{i}.png",
                     f"sal_distill/{i}.png"}  # fmt: skip
    files = {str(p.relative_to(twin.root)) for p in twin.root.rglob("*") if p.is_file()}
    assert files == expected
    assert sum(in_voc12(i, 0.5) for i in range(10)) == 5
    with Image.open(twin.root / "JPEGImages" / f"{ids[0]}.jpg") as img:
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 48))
    with Image.open(twin.root / "semseg" / "VOC12" / f"{ids[1]}.png") as img:
        assert img.mode == "P" and img.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]
    with Image.open(twin.root / "semseg" / "pascal-context" / f"{ids[0]}.png") as img:
        assert img.mode == "L"
    label_map = loadmat(twin.root / "pascal-context" / "trainval" / f"{ids[0]}.mat")["LabelMap"]
    assert label_map.dtype == np.uint16 and label_map.shape == (48, 64)


def test_part_files_have_the_pascal_part_struct(twin: PascalContext, truth: dict) -> None:
    """Read with scipy alone: anno.imname, anno.objects(i).class/class_ind/mask/parts."""
    for sample_id, photo in truth.items():
        anno = loadmat(twin.root / "human_parts" / f"{sample_id}.mat")["anno"]
        assert anno.dtype.names == ("imname", "objects")
        assert anno["imname"][0, 0][0] == sample_id
        objects = anno["objects"][0, 0]
        assert objects.dtype.names == ("class", "class_ind", "mask", "parts")
        assert objects.shape == (1, len(photo["objects"]))
        for record, obj in zip(objects[0], photo["objects"], strict=True):
            assert record["class"][0] == obj.name and record["class_ind"][0, 0] == obj.class_index
            np.testing.assert_array_equal(record["mask"], obj.mask.astype(np.uint8))
            if obj.parts:
                names = [str(p["part_name"][0]) for p in record["parts"][0]]
                assert names == [name for name, _ in obj.parts]
            else:
                assert record["parts"].size == 0


def test_loaded_labels_equal_what_the_generator_wrote(twin: PascalContext, truth: dict) -> None:
    totals = {task: np.zeros(256, dtype=np.int64) for task in ("semseg", "parts")}
    expected_totals = {task: np.zeros(256, dtype=np.int64) for task in ("semseg", "parts")}
    for index, (sample_id, photo) in enumerate(truth.items()):
        got = twin.read(sample_id, TASKS)
        assert got["image"].dtype == np.uint8 and got["image"].shape == (48, 64, 3)
        assert np.abs(got["image"].astype(int) - photo["image"]).mean() < 4  # JPEG at q=95
        semseg = photo["semseg"]
        if in_voc12(index, 0.5):
            semseg = np.where(naive_void_band(semseg), IGNORE, semseg)
        np.testing.assert_array_equal(got["semseg"], semseg)
        np.testing.assert_array_equal(got["parts"], photo["parts"])
        np.testing.assert_array_equal(got["saliency"], photo["saliency"])
        edges = sequential_thin(naive_laplacian(photo["label_map"]) != 0)
        np.testing.assert_array_equal(got["edge"], edges.astype(np.float32))
        invalid = (photo["normals"] == IGNORE).all(-1)
        np.testing.assert_array_equal((got["normals"] == IGNORE).all(-1), invalid)
        assert np.abs(got["normals"][~invalid] - photo["normals"][~invalid]).max() <= PNG_NORMAL_TOL
        for task in totals:
            totals[task] += np.bincount(got[task].ravel(), minlength=256)
            expected_totals[task] += np.bincount(
                (semseg if task == "semseg" else photo[task]).ravel(), minlength=256
            )
    for task in totals:
        np.testing.assert_array_equal(totals[task], expected_totals[task])
    # The twin exercises what it should: several classes, every part group, void pixels.
    assert (totals["semseg"][1:21] > 0).sum() >= 3 and totals["semseg"][IGNORE] > 0
    assert (totals["parts"][1:7] > 0).all() and totals["parts"][IGNORE] > 0


def test_parts_map_follows_part_names_and_ignores_other_classes(tmp_path: Path) -> None:
    """A hand-written file in MATLAB's own encodings (double class_ind, [] for no parts)."""
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[:, :3] = 1
    dog = np.zeros((4, 6), dtype=np.uint8)
    dog[:, 4:] = 1
    part = [("part_name", object), ("mask", object)]
    person_parts = np.zeros((1, 3), dtype=part)
    for j, (name, rows) in enumerate((("hair", [0]), ("rlarm", [1]), ("lfoot", [3]))):
        m = np.zeros((4, 6))
        m[rows, :3] = 1
        person_parts[0, j] = (name, m)
    dog_parts = np.zeros((1, 1), dtype=part)
    dog_parts[0, 0] = ("head", dog.astype(float))
    objects = np.zeros((1, 2), dtype=[("class", object), ("class_ind", object),
                                      ("mask", object), ("parts", object)])  # fmt: skip
    objects[0, 0] = ("person", np.array([[15.0]]), mask, person_parts)
    objects[0, 1] = ("dog", np.array([[12.0]]), dog, dog_parts)
    path = tmp_path / "x.mat"
    savemat(path, {"anno": {"imname": "x", "objects": objects}})
    from fmtlbench_builtins.datasets.annotation import parts_map

    got = parts_map(read_parts(path), (4, 6), path)
    expected = np.zeros((4, 6), dtype=np.uint8)
    expected[0, :3], expected[1, :3], expected[3, :3] = 1, 4, 6
    expected[2, :3] = IGNORE  # person pixels no part covers
    np.testing.assert_array_equal(got, expected)  # the dog's "head" is not a person part
    by_group = {
        1: "head hair leye reye lear rear lebrow rebrow nose mouth", 2: "torso neck",
        3: "luarm ruarm", 4: "llarm rlarm lhand rhand", 5: "luleg ruleg",
        6: "llleg rlleg lfoot rfoot",
    }  # fmt: skip
    assert PART_GROUPS == {name: g for g, names in by_group.items() for name in names.split()}
    person_parts[0, 0] = ("tentacle", person_parts[0, 0][1])
    savemat(path, {"anno": {"imname": "x", "objects": objects}})
    with pytest.raises(DataError, match="x.mat.*unknown person part 'tentacle'"):
        parts_map(read_parts(path), (4, 6), path)


def test_images_without_people_ignore_parts_and_the_cache_is_outside_the_root(
    twin: PascalContext, truth: dict
) -> None:
    people = {i: any(o.is_person_with_parts for o in p["objects"]) for i, p in truth.items()}
    assert 0 < sum(people.values()) < len(people)  # both kinds are in the twin
    for sample_id, has in people.items():
        assert twin.has_person(sample_id) == has
        if not has:
            assert (twin.read(sample_id, ["parts"])["parts"] == IGNORE).all()
    twin.persons.flush()
    caches = list(twin.cache.glob("has_person-*.json"))
    assert len(caches) == 1 and twin.root not in caches[0].parents
    entries = json.loads(caches[0].read_text())["entries"]
    assert {i: bool(e[2]) for i, e in entries.items()} == people
    again = PascalContext(twin.params, twin.root, synthetic=True, cache=twin.cache)
    assert {i: again.persons.lookup(i) for i in people} == people  # answered by the cache


def test_read_only_root_is_never_written(twin: PascalContext, tmp_path: Path) -> None:
    root = tmp_path / "PASCALContext"
    shutil.copytree(twin.root, root)
    paths = [root, *root.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(root)
    try:
        data = PascalContext(twin.params, root, synthetic=False, cache=tmp_path / "cache")
        for sample_id in data.ids("train") + data.ids("test"):
            data.read(sample_id, TASKS)
        del data
        gc.collect()  # the person cache is written when the dataset goes away
        assert snapshot(root) == before
        assert list((tmp_path / "cache").glob("has_person-*.json"))
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_broken_and_missing_files_are_named(twin: PascalContext, tmp_path: Path) -> None:
    root = tmp_path / "PASCALContext"
    shutil.copytree(twin.root, root)
    data = PascalContext(twin.params, root, synthetic=True)
    first = data.ids("train")[0]
    for relative, tasks in (
        (f"JPEGImages/{first}.jpg", ["edge"]),
        (f"human_parts/{first}.mat", ["parts"]),
        (f"pascal-context/trainval/{first}.mat", ["edge"]),
        (f"sal_distill/{first}.png", ["saliency"]),
        (f"normals_distill/{first}.png", ["normals"]),
    ):
        path = root / relative
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        with pytest.raises(DataError, match=relative):
            data.read(first, tasks)
        path.write_bytes(original)
    second = data.ids("train")[1]
    (root / "sal_distill" / f"{second}.png").unlink()
    with pytest.raises(DataError, match=f"sal_distill/{second}.png"):
        data.read(second, ["saliency"])
    data.read(second, ["semseg", "parts", "normals", "edge"])  # only requested tasks are read
    semseg = [root / f / f"{second}.png" for f in ("semseg/VOC12", "semseg/pascal-context")]
    for path in semseg:
        path.unlink(missing_ok=True)
    with pytest.raises(DataError, match="semseg/VOC12.*nor.*semseg/pascal-context"):
        data.read(second, ["semseg"])
    (root / "ImageSets" / "Context" / "val.txt").unlink()
    with pytest.raises(DataError, match="ImageSets/Context/val.txt"):
        data.ids("test")
    with pytest.raises(ConfigError, match="'depth'"):
        data.read(first, ["depth"])


def test_voc12_semseg_takes_precedence(twin: PascalContext, tmp_path: Path) -> None:
    root = tmp_path / "PASCALContext"
    shutil.copytree(twin.root, root)
    sample_id = twin.ids("train")[0]  # index 0: its semseg is in semseg/pascal-context
    assert (root / "semseg" / "pascal-context" / f"{sample_id}.png").is_file()
    Image.fromarray(np.full((48, 64), 7, dtype=np.uint8)).save(
        root / "semseg" / "VOC12" / f"{sample_id}.png"
    )
    data = PascalContext(twin.params, root, synthetic=False)
    assert (data.read(sample_id, ["semseg"])["semseg"] == 7).all()
    Image.fromarray(np.full((48, 64), 40, dtype=np.uint8)).save(
        root / "semseg" / "VOC12" / f"{sample_id}.png"
    )
    with pytest.raises(DataError, match="label 40"):
        data.read(sample_id, ["semseg"])


def test_twin_is_deterministic_and_params_are_validated(twin, tmp_path: Path) -> None:
    first = make_twin(tmp_path / "a", seed=3, twin_train=2, twin_test=1)
    again = make_twin(tmp_path / "b", seed=3, twin_train=2, twin_test=1)
    other = make_twin(tmp_path / "c", seed=4, twin_train=2, twin_test=1)
    hashes = [{k: v[0] for k, v in snapshot(d.root).items()} for d in (first, again, other)]
    assert hashes[0] == hashes[1] and hashes[0] != hashes[2]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["PASCALContext"]
    for bad in ({"twin_train": 0}, {"twin_voc12_share": 1.5}, {"twin_depth": 1}):
        with pytest.raises(ValidationError):
            PascalContext.Params(**bad)
    with pytest.raises(DataError, match="already exists"):
        PascalContext.synthesize(twin.root, twin.params)


def test_label_maps_written_a_second_apart_are_the_same_bytes(tmp_path: Path) -> None:
    """scipy stamps the clock into a MAT header; twins must not depend on when they were made."""
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    write_label_map(tmp_path / "a.mat", labels)
    time.sleep(1.1)
    write_label_map(tmp_path / "b.mat", labels)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    np.testing.assert_array_equal(read_label_map(tmp_path / "b.mat"), labels)
    assert loadmat(tmp_path / "b.mat")["LabelMap"].dtype == np.uint16
