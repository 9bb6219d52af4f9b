"""``fmtlbench data synth|verify|show`` on tiny twins, and a federated run on the PASCAL twin.

The run checks that the twin is learnable (every task beats the untrained model), which is
what makes the twins useful as embedded default data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fmtlbench.cli import main

TINY = ["--train", "3", "--test", "2", "--height", "32", "--width", "40"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny twins of both datasets, written by the synth command."""
    root = tmp_path_factory.mktemp("twins")
    runner = CliRunner()
    for name in ("nyudv2", "pascal-context"):
        result = runner.invoke(main, ["data", "synth", name, "--out", str(root), *TINY])
        assert result.exit_code == 0, result.output
        assert "wrote 3 train + 2 test images (synthetic data" in result.output
    return root


def test_synth_writes_both_layouts_and_records_them(twins: Path) -> None:
    assert (twins / "NYUDv2" / "gt_sets" / "val.txt").read_text().split() == ["000003", "000004"]
    assert len(list((twins / "PASCALContext" / "human_parts").glob("*.mat"))) == 5
    with Image.open(twins / "PASCALContext" / "JPEGImages" / "2008_000000.jpg") as img:
        assert img.size == (40, 32)
    records = json.loads((twins / "fmtlbench-twins.json").read_text())
    assert records["NYUDv2"]["sizes"] == {"train": 3, "test": 2}
    assert records["PASCALContext"]["params"]["twin_height"] == 32


def test_synth_rejects_bad_parameters_and_existing_folders(twins: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["data", "synth", "nyudv2", "--out", str(tmp_path), "--train", "0"])
    assert bad.exit_code == 2 and "twin_train" in bad.output
    again = runner.invoke(main, ["data", "synth", "nyudv2", "--out", str(twins), *TINY])
    assert again.exit_code == 2 and "already exists" in again.output
    unknown = runner.invoke(main, ["data", "synth", "pascal", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "pascal-context" in unknown.output  # a suggestion


def test_verify_accepts_good_twins(twins: Path) -> None:
    result = CliRunner().invoke(main, ["data", "verify", str(twins)])
    assert result.exit_code == 0, result.output
    assert "nyudv2 (synthetic twin)" in result.output and "train 3, test 2: OK" in result.output
    assert "pascal-context (synthetic twin)" in result.output


def test_verify_names_missing_and_truncated_files(twins: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(twins, root)
    (root / "NYUDv2" / "depth" / "000001.npy").unlink()
    jpg = root / "PASCALContext" / "JPEGImages" / "2008_000002.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    mat = root / "PASCALContext" / "human_parts" / "2008_000004.mat"
    mat.write_bytes(mat.read_bytes()[:100])
    with open(root / "PASCALContext" / "ImageSets" / "Context" / "val.txt", "a") as split:
        split.write("2008_000000\n")  # also in train
    result = CliRunner().invoke(main, ["data", "verify", str(root)])
    assert result.exit_code == 1
    out = result.output
    assert "depth/000001.npy" in out and "JPEGImages/2008_000002.jpg" in out
    assert "human_parts/2008_000004.mat" in out and "in both train and test" in out
    assert "nyudv2 (synthetic twin)" in out and "1 problem(s)" in out


def test_verify_checks_real_split_sizes_unless_told_not_to(twins: Path, tmp_path: Path) -> None:
    shutil.copytree(twins / "NYUDv2", tmp_path / "NYUDv2")  # no twin record: taken as real
    runner = CliRunner()
    result = runner.invoke(main, ["data", "verify", str(tmp_path)])
    assert result.exit_code == 1
    assert "train split has 3 ids, the real dataset has 795" in result.output
    assert "test split has 2 ids, the real dataset has 654" in result.output
    relaxed = runner.invoke(main, ["data", "verify", str(tmp_path / "NYUDv2"), "--no-counts"])
    assert relaxed.exit_code == 0, relaxed.output
    empty = runner.invoke(main, ["data", "verify", str(tmp_path / "NYUDv2" / "depth")])
    assert empty.exit_code == 1 and "no dataset folder" in empty.output


def test_show_writes_a_picture_of_the_default_twin(tmp_path: Path) -> None:
    out = tmp_path / "nyud.png"
    result = CliRunner().invoke(main, ["data", "show", "nyudv2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC twin of nyudv2" in result.output
    with Image.open(out) as img:
        picture = np.array(img.convert("RGB"))
    # 4 rows x (image + 4 tasks) cells of 2.4 inches at 100 dpi, 96x128 images, a title.
    assert picture.shape == (round(100 * (2.4 * 0.75 * 4 + 0.8)), 100 * 2.4 * 5, 3)
    colours = np.unique(picture.reshape(-1, 3), axis=0)
    assert len(colours) > 1000 and picture.std() > 40  # scenes and labels, not a blank page


def test_show_keeps_going_past_an_unreadable_label(twins: Path, tmp_path: Path) -> None:
    shutil.copytree(twins / "PASCALContext", tmp_path / "PASCALContext")
    (tmp_path / "PASCALContext" / "sal_distill" / "2008_000003.png").unlink()
    out = tmp_path / "pascal.png"
    args = ["data", "show", "pascal-context", "--data-root", str(tmp_path), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--count", "2"])
    assert result.exit_code == 0, result.output
    assert "warning: missing file" in result.output
    assert "sal_distill/2008_000003.png" in result.output
    assert "SYNTHETIC" not in result.output  # a data root was given: treated as real data
    with Image.open(out) as img:
        assert img.size[0] == 100 * 2.4 * 6  # image + 5 PASCAL tasks


def _seed_with_people_in_every_local_test(make_config) -> int:
    """The first run seed whose partition gives every client a local test image with a
    person: on images without people parts are all ignore, so a local test set without
    any has no parts mIoU (NaN), which the core's mean +- std over clients cannot take."""
    from fmtlbench.data import component_params, open_dataset
    from fmtlbench.partition import materialise
    from fmtlbench.registry import load_registry
    from fmtlbench.scenario import resolve_scenario

    registry = load_registry()
    for seed in range(20):
        config = make_config(seed)
        spec = resolve_scenario(config.scenario, registry)
        data = open_dataset(registry.get("dataset", "pascal-context"), config.data)
        cls = registry.get("partitioner", spec.partitioner)
        partitioner = cls(component_params(cls, spec.partitioner_params, "partitioner"))
        manifest = materialise(spec, {"pascal-context": data}, partitioner, seed)
        if all(any(data.has_person(i) for i in c.test) for c in manifest.clients):
            return seed
    raise AssertionError("no seed in 0..19 gives every client a person in its local test set")


def test_the_pascal_twin_is_learnable(tmp_path: Path) -> None:
    """A few FedAvg rounds on two PASCAL clients beat the untrained model on every task."""
    from conftest import tiny_overrides

    from fmtlbench.config import build_config
    from fmtlbench.runner import execute

    scenario = tmp_path / "pascal2.yaml"
    scenario.write_text("groups:\n  - {dataset: pascal-context, tasks: all, count: 2}\n")
    twin = {"twin_train": 48, "twin_test": 12, "twin_height": 48, "twin_width": 64}

    def make_config(seed: int):
        return build_config(
            None,
            tiny_overrides(
                tmp_path,
                scenario=str(scenario),
                seed=seed,
                data={"datasets": {"pascal-context": twin}},
                training={"rounds": 3, "eval_every": 3},
                energy={"enabled": False},
            ),
        )

    outcome = execute(make_config(_seed_with_people_in_every_local_test(make_config)))
    data = outcome.federation.datasets["pascal-context"]
    assert data.synthetic
    before = outcome.initial.summary["G"]["pascal-context"]
    after = outcome.final.summary["G"]["pascal-context"]
    assert set(after) == {"semseg", "parts", "normals", "edge", "saliency"}
    for task, metrics in after.items():
        metric, lower = data.tasks[task].primary
        old, new = before[task][metric][0], metrics[metric][0]
        assert (new < old) if lower else (new > old), (task, metric, old, new)
