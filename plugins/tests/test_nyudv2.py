"""The nyudv2 plugin: its synthetic twin, its reader, and the two real frames.

The twin is checked against the renderer's own output (what was written is what is read), the
geometry against independent estimates (normals from depth by finite differences, edges from a
naive neighbour loop), and the reader against the raw files of real NYUD-v2 frames.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from fmtlbench_builtins.datasets.nyudv2 import NYUDv2, register_datasets
from fmtlbench_builtins.datasets.scene import intrinsics, render_scene
from PIL import Image
from pydantic import ValidationError

from fmtlbench.errors import ConfigError, DataError
from fmtlbench.tasks import IGNORE

TASKS = ["semseg", "depth", "normals", "edge"]
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "NYUDv2-sample"
SMALL = {"twin_train": 4, "twin_test": 2, "twin_height": 32, "twin_width": 40}
#: Worst-case per-component error of a unit normal stored in 8 bits and renormalised:
#: rounding moves each component by <= 1/255, the length by <= sqrt(3)/255.
PNG_NORMAL_TOL = (1 + np.sqrt(3)) / 255


def twin(root: Path, seed: int = 0, **params: object) -> NYUDv2:
    p = NYUDv2.Params(**{**SMALL, **params})
    NYUDv2.synthesize(root / "NYUDv2", p, seed=seed)
    return NYUDv2(p, root / "NYUDv2", synthetic=True)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def png_twin(tmp_path_factory: pytest.TempPathFactory) -> NYUDv2:
    return twin(tmp_path_factory.mktemp("png"))


@pytest.fixture(scope="module")
def npy_twin(tmp_path_factory: pytest.TempPathFactory) -> NYUDv2:
    return twin(tmp_path_factory.mktemp("npy"), twin_image_format="jpg", twin_label_format="npy")


def test_hook_registers_the_dataset() -> None:
    assert register_datasets() == [NYUDv2]
    assert NYUDv2.name == "nyudv2" and NYUDv2.folder == "NYUDv2"
    assert {t: s.channels for t, s in NYUDv2.tasks.items()} == {
        "semseg": 40, "depth": 1, "normals": 3, "edge": 1
    }  # fmt: skip
    assert NYUDv2.tasks["edge"].pos_weight == 0.8 and NYUDv2.tasks["semseg"].classes == 40


@pytest.mark.parametrize(
    ("fixture", "image_ext", "label_ext"), [("png_twin", "png", "png"), ("npy_twin", "jpg", "npy")]
)
def test_twin_layout_and_file_types(
    fixture: str, image_ext: str, label_ext: str, request: pytest.FixtureRequest
) -> None:
    data: NYUDv2 = request.getfixturevalue(fixture)
    ids = [f"{i:06d}" for i in range(6)]
    assert (data.root / "gt_sets" / "train.txt").read_text() == "".join(i + "\n" for i in ids[:4])
    assert data.ids("train") == ids[:4] and data.ids("test") == ids[4:]
    expected = {"gt_sets/train.txt", "gt_sets/val.txt"}
    for i in ids:
        expected |= {f"images/{i}.{image_ext}", f"segmentation/{i}.png", f"depth/{i}.npy"}
        expected |= {f"normals/{i}.{label_ext}", f"edge/{i}.{label_ext}"}
    assert set(snapshot(data.root)) == expected
    with Image.open(data.root / "images" / f"000000.{image_ext}") as img:
        assert (img.format, img.mode, img.size) == (
            {"png": "PNG", "jpg": "JPEG"}[image_ext],
            "RGB",
            (40, 32),
        )
    with Image.open(data.root / "segmentation" / "000000.png") as img:
        seg = np.array(img)
        assert img.mode == "L" and seg.max() <= 40
    depth = np.load(data.root / "depth" / "000000.npy")
    assert depth.dtype == np.float32 and depth.shape == (32, 40) and depth.min() >= 0
    if label_ext == "png":
        with Image.open(data.root / "normals" / "000000.png") as img:
            assert img.mode == "RGB"
            black = (np.array(img) == 0).all(-1)
        np.testing.assert_array_equal(black, depth == 0)  # invalid normals are written 0,0,0
        with Image.open(data.root / "edge" / "000000.png") as img:
            assert img.mode == "L" and set(np.unique(np.array(img))) <= {0, 255}
    else:
        normals = np.load(data.root / "normals" / "000000.npy")
        assert normals.shape == (32, 40, 3)
        assert set(np.unique(np.load(data.root / "edge" / "000000.npy"))) <= {0.0, 1.0}


def test_twin_is_deterministic_by_seed(tmp_path: Path) -> None:
    first = snapshot(twin(tmp_path / "a", seed=3).root)
    again = snapshot(twin(tmp_path / "b", seed=3).root)
    other = snapshot(twin(tmp_path / "c", seed=4).root)
    assert first == again
    assert first["images/000000.png"] != other["images/000000.png"]
    assert sorted(os.listdir(tmp_path / "a")) == ["NYUDv2"]  # no temporary folder left behind


@pytest.mark.parametrize("fixture", ["png_twin", "npy_twin"])
def test_loaded_twin_equals_the_rendered_scenes(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    data: NYUDv2 = request.getfixturevalue(fixture)
    tol = PNG_NORMAL_TOL if fixture == "png_twin" else 1e-6
    for index, sample_id in enumerate(data.ids("train") + data.ids("test")):
        truth = render_scene(index, 32, 40)  # seed 0: scene seeds are 0 * 1_000_003 + index
        got = data.read(sample_id, TASKS)
        assert got["image"].dtype == np.uint8 and got["image"].shape == (32, 40, 3)
        err = np.abs(got["image"].astype(int) - truth["image"]).mean()
        assert err == 0 if fixture == "png_twin" else err < 4
        assert got["semseg"].dtype == np.uint8
        np.testing.assert_array_equal(
            np.bincount(got["semseg"].ravel(), minlength=256),
            np.bincount(truth["semseg"].ravel(), minlength=256),
        )
        np.testing.assert_array_equal(got["semseg"], truth["semseg"])
        np.testing.assert_array_equal(got["depth"], truth["depth"])
        np.testing.assert_array_equal(got["edge"], truth["edge"])
        invalid = truth["normals"] == IGNORE
        np.testing.assert_array_equal(got["normals"] == IGNORE, invalid)
        assert np.abs(got["normals"][~invalid] - truth["normals"][~invalid]).max() <= tol


def test_scenes_have_invalid_pixels_and_plausible_depth() -> None:
    scenes = [render_scene(seed, 48, 64) for seed in range(6)]
    depth = np.stack([s["depth"] for s in scenes])
    assert (depth == IGNORE).any() and any((s["semseg"] == IGNORE).any() for s in scenes)
    valid = depth[depth != IGNORE]
    assert 0.5 <= valid.min() and valid.max() <= 10
    for s in scenes:  # normals are invalid exactly where depth is
        np.testing.assert_array_equal((s["normals"] == IGNORE).all(-1), s["depth"] == IGNORE)
        ok = s["depth"] != IGNORE
        np.testing.assert_allclose(np.linalg.norm(s["normals"][ok], axis=-1), 1, atol=1e-5)
    assert len(np.unique(np.stack([s["semseg"] for s in scenes]))) >= 8


def test_floor_normals_point_up_and_back_wall_faces_the_camera() -> None:
    for seed in range(5):
        s = render_scene(seed, 48, 64)
        floor = (s["semseg"] == 1) & (s["depth"] != IGNORE)
        assert floor.sum() > 50
        assert s["normals"][floor][:, 1].min() > 0.9  # camera pitch is at most 16 degrees


def test_normals_agree_with_finite_differences_of_depth() -> None:
    """Back-project depth with the camera intrinsics; the cross product of the differences to
    the right and lower neighbours is the surface normal on planar room surfaces."""
    errors = []
    for seed in range(4):
        s = render_scene(seed, 60, 80)
        focal, cx, cy = intrinsics(60, 80)
        v, u = np.mgrid[0:60, 0:80]
        d = s["depth"].astype(np.float64)
        points = np.stack([(u + 0.5 - cx) / focal * d, -(v + 0.5 - cy) / focal * d, -d], -1)
        right = points[:-1, 1:] - points[:-1, :-1]
        down = points[1:, :-1] - points[:-1, :-1]
        estimate = np.cross(down, right)
        estimate /= np.linalg.norm(estimate, axis=-1, keepdims=True)
        lab = s["semseg"]
        same = (lab[:-1, :-1] == lab[:-1, 1:]) & (lab[:-1, :-1] == lab[1:, :-1])
        room = np.isin(lab[:-1, :-1], [0, 1, 21])  # wall, floor, ceiling
        valid = (d[:-1, :-1] != IGNORE) & (d[:-1, 1:] != IGNORE) & (d[1:, :-1] != IGNORE)
        mask = same & room & valid
        cosine = np.einsum("ij,ij->i", estimate[mask], s["normals"][:-1, :-1][mask])
        errors.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    errors = np.concatenate(errors)
    assert len(errors) > 1000
    # Wall-wall corners share a label but not a plane: a few pixels may disagree.
    assert np.median(errors) < 0.5 and np.percentile(errors, 95) < 2


def test_edges_are_exactly_the_semseg_label_changes(png_twin: NYUDv2) -> None:
    got = png_twin.read("000001", ["semseg", "edge"])
    lab, edge = got["semseg"], got["edge"]
    h, w = lab.shape
    for i in range(h):
        for j in range(w):
            neighbours = [(i + a, j + b) for a, b in ((-1, 0), (1, 0), (0, -1), (0, 1))]
            change = any(
                0 <= y < h and 0 <= x < w and lab[y, x] != lab[i, j] for y, x in neighbours
            )
            assert edge[i, j] == float(change), (i, j)
    assert edge.sum() > 0


def test_reader_needs_no_write_access(png_twin: NYUDv2, tmp_path: Path) -> None:
    root = tmp_path / "NYUDv2"
    shutil.copytree(png_twin.root, root)
    before = snapshot(root)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        data = NYUDv2(png_twin.params, root, synthetic=True)
        for sample_id in data.ids("train") + data.ids("test"):
            data.read(sample_id, TASKS)
        assert snapshot(root) == before
        assert sorted(os.listdir(root)) == sorted(os.listdir(png_twin.root))
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_broken_and_missing_files_raise_data_errors_naming_the_file(
    png_twin: NYUDv2, tmp_path: Path
) -> None:
    root = tmp_path / "NYUDv2"
    shutil.copytree(png_twin.root, root)
    data = NYUDv2(png_twin.params, root, synthetic=True)
    for folder in ("images", "segmentation", "normals"):
        path = root / folder / "000000.png"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(DataError, match=f"{folder}/000000.png"):
            data.read("000000", TASKS)
        shutil.copy(png_twin.root / folder / "000000.png", path)
    data.read("000000", TASKS)  # repaired
    (root / "depth" / "000001.npy").unlink()
    with pytest.raises(DataError, match="depth/000001.npy"):
        data.read("000001", ["depth"])
    data.read("000001", ["semseg", "normals", "edge"])  # only the requested tasks are read
    (root / "depth" / "000002.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="depth/000002.npy"):
        data.read("000002", ["depth"])
    (root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(DataError, match="gt_sets/val.txt"):
        data.ids("test")
    with pytest.raises(ConfigError, match="'parts'"):
        data.read("000000", ["parts"])


def test_params_are_validated_and_an_existing_twin_is_not_overwritten(png_twin: NYUDv2) -> None:
    for bad in ({"twin_train": 0}, {"twin_height": -1}, {"twin_image_format": "bmp"}, {"x": 1}):
        with pytest.raises(ValidationError):
            NYUDv2.Params(**bad)
    with pytest.raises(DataError, match="already exists"):
        NYUDv2.synthesize(png_twin.root, png_twin.params)


# --------------------------------------------------------------------------- real frames
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real NYUD-v2 frames not found at {REAL} (shared data absent)"
)


@needs_real
def test_real_frame_without_normals_loads_for_the_other_tasks() -> None:
    data = NYUDv2(None, REAL, synthetic=False)
    assert data.ids("train") == ["000433"] and data.ids("test") == ["000464"]
    got = data.read("000464", ["semseg", "depth", "edge"])
    assert set(got) == {"image", "semseg", "depth", "edge"}
    assert got["image"].shape == (425, 560, 3) and got["image"].dtype == np.uint8
    raw_seg = np.array(Image.open(REAL / "segmentation" / "000464.png"))
    np.testing.assert_array_equal(got["semseg"] == IGNORE, raw_seg == 0)
    np.testing.assert_array_equal(got["semseg"][raw_seg > 0], raw_seg[raw_seg > 0] - 1)
    assert got["semseg"][raw_seg > 0].max() <= 39
    raw_depth = np.load(REAL / "depth" / "000464.npy")
    np.testing.assert_array_equal(got["depth"] == IGNORE, raw_depth == 0)
    assert 0.3 < got["depth"][raw_depth > 0].min() and got["depth"][raw_depth > 0].max() < 10
    assert set(np.unique(got["edge"])) == {0.0, 1.0}
    with pytest.raises(DataError, match="normals/000464"):
        data.read("000464", ["normals"])


@needs_real
def test_real_frame_normals_grey_fill_is_invalid() -> None:
    got = NYUDv2(None, REAL, synthetic=False).read("000433", TASKS)
    raw = np.array(Image.open(REAL / "normals" / "000433.png"))
    grey = (raw == 127).all(-1)  # how the source marks pixels without a normal
    assert grey.sum() > 0
    invalid = (got["normals"] == IGNORE).all(-1)
    np.testing.assert_array_equal(invalid, grey)
    assert ((got["normals"] == IGNORE).any(-1) == invalid).all()
    np.testing.assert_allclose(np.linalg.norm(got["normals"][~invalid], axis=-1), 1, atol=1e-5)
    decoded = raw[~invalid].astype(np.float32) * 2 / 255 - 1
    assert np.abs(got["normals"][~invalid] - decoded).max() <= PNG_NORMAL_TOL
