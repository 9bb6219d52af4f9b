"""The study's scenarios: their client/task tables match SPEC section 3, every one of them runs
end to end on the synthetic twins, and ``fmtlbench scenarios`` shows them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from fmtlbench.components import Dataset
from fmtlbench.errors import ConfigError
from fmtlbench.partition import Manifest, materialise
from fmtlbench.registry import load_registry
from fmtlbench.scenario import ScenarioSpec, resolve_scenario
from fmtlbench.scenario_figure import LARGEST_AREA, markers, task_rows
from fmtlbench.tasks import TaskSpec

BUILT_IN = ["iid1", "niid2", "niid3", "niid4", "niid5", "niid6", "niid7"]
NYUD, PASCAL = "nyudv2", "pascal-context"
MT = ("semseg", "depth", "normals", "edge")  # every NYUD-v2 task, in the dataset's order
ST = [("semseg",), ("normals",), ("edge",), ("depth",)]  # niid2's clients, in the study's order
#: Twin sizes of the end-to-end runs: just enough images for niid3's eight NYUD-v2 clients
#: (3 each: 2 local train, 1 local test), so seven runs stay fast.
TWINS = {
    NYUD: {"twin_train": 24, "twin_test": 4, "twin_height": 48, "twin_width": 64},
    PASCAL: {"twin_train": 16, "twin_test": 4, "twin_height": 48, "twin_width": 64},
}


def _rows(dataset: str, tasks: list[tuple[str, ...]], sizes: list[tuple[int, int]]) -> list:
    return [(dataset, t, train, test) for t, (train, test) in zip(tasks, sizes, strict=True)]


# (train, local test) per client on the real split sizes (NYUD-v2 795, PASCAL-Context 4998),
# worked out by hand: 795 / 4 = 198.75 -> 199, 199, 199, 198; 795 / 8 = 99.375 -> three 100s
# and five 99s; 795 * (1, 2, 3, 4) / 10 = 79.5, 159, 238.5, 318 -> the spare image goes to the
# first tie: 80, 159, 238, 318. Local test = round(10%), e.g. 199 -> 20 + 179.
QUARTERS = [(179, 20), (179, 20), (179, 20), (178, 20)]
SKEWED = [(72, 8), (143, 16), (214, 24), (286, 32)]
EIGHTHS = [(90, 10)] * 3 + [(89, 10)] * 5
EXPECTED = {
    "iid1": _rows(NYUD, [MT] * 4, QUARTERS),
    "niid2": _rows(NYUD, ST, QUARTERS),
    "niid3": _rows(NYUD, ST + [MT] * 4, EIGHTHS),
    "niid4": _rows(NYUD, [MT] * 4, SKEWED),
    "niid5": _rows(NYUD, ST, SKEWED),
    "niid6": _rows(NYUD, [MT] * 4, QUARTERS) + [(PASCAL, ("parts", "normals"), 4498, 500)],
    "niid7": _rows(NYUD, ST, QUARTERS)
    + [(PASCAL, ("parts",), 2249, 250), (PASCAL, ("normals",), 2249, 250)],
}


class RealSizes(Dataset):
    """A dataset with the real training split size and tasks, without files: partitioning by
    the iid rule reads ids only."""

    folder = "none"

    def __init__(self, name: str, tasks: list[str], n_train: int) -> None:
        super().__init__(None, Path("/nonexistent"), synthetic=False)
        self.name = name  # type: ignore[misc]
        self.tasks = {t: TaskSpec(t, channels=1) for t in tasks}  # type: ignore[misc]
        self._ids = [f"{i:05d}" for i in range(n_train)]

    def ids(self, split: str) -> list[str]:
        return list(self._ids)


def _real_sizes() -> dict[str, Dataset]:
    pascal_tasks = ["semseg", "parts", "normals", "edge", "saliency"]
    return {NYUD: RealSizes(NYUD, list(MT), 795), PASCAL: RealSizes(PASCAL, pascal_tasks, 4998)}


def _table(manifest: Manifest) -> list:
    return [(c.dataset, tuple(c.tasks), len(c.train), len(c.test)) for c in manifest.clients]


def _partitioner():
    return load_registry().get("partitioner", "iid")()


def test_every_study_scenario_is_registered_with_its_title():
    registry = load_registry()
    titles = {n: registry.get("scenario", n).title for n in BUILT_IN}
    assert titles == {
        "iid1": "SDMT",
        "niid2": "SDST",
        "niid3": "SDHT",
        "niid4": "UBSDMT",
        "niid5": "UBSDST",
        "niid6": "UBCDMT",
        "niid7": "UBCDST",
    }


@pytest.mark.parametrize("name", BUILT_IN)
def test_builtin_scenario_table_matches_the_spec(name):
    spec = load_registry().get("scenario", name)
    manifest = materialise(spec, _real_sizes(), _partitioner(), seed=0)
    assert _table(manifest) == EXPECTED[name]


@pytest.mark.parametrize(
    ("clients", "sizes"),
    [(2, [398, 397]), (6, [133, 133, 133, 132, 132, 132]), (8, [100] * 3 + [99] * 5)],
)
def test_iid1_with_k_clients(clients, sizes):
    spec = resolve_scenario("iid1", load_registry(), clients)
    manifest = materialise(spec, _real_sizes(), _partitioner(), seed=0)
    assert [len(c.train) + len(c.test) for c in manifest.clients] == sizes
    assert all(tuple(c.tasks) == MT for c in manifest.clients)


def test_clients_override_refuses_multi_group_scenarios():
    with pytest.raises(ConfigError, match="single-group.*'niid3' has 5 groups"):
        resolve_scenario("niid3", load_registry(), 4)


def test_a_user_scenario_file_resolves_like_a_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "title": "two domains",
                "groups": [
                    {"dataset": NYUD, "tasks": ["depth"], "count": 2, "shares": [1, 3]},
                    {"dataset": PASCAL, "tasks": ["saliency"]},
                ],
            }
        )
    )
    spec = resolve_scenario(str(path), load_registry())
    manifest = materialise(spec, _real_sizes(), _partitioner(), seed=1)
    # 795 * (1, 3) / 4 = 198.75, 596.25 -> 199, 596
    assert [(c.dataset, len(c.train) + len(c.test)) for c in manifest.clients] == [
        (NYUD, 199),
        (NYUD, 596),
        (PASCAL, 4998),
    ]
    assert manifest.scenario == "mine"


# --------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", BUILT_IN)
def test_every_builtin_scenario_runs_one_round_of_fedavg_e(name, tmp_path):
    """Build the federation and run the engine's round (train, aggregate, evaluate); MLflow
    tracking around it is tested once in test_run, so it is left out here to stay fast."""
    from conftest import tiny_overrides

    from fmtlbench.config import build_config
    from fmtlbench.engine import Engine
    from fmtlbench.federation import build_federation

    registry = load_registry()
    config = build_config(
        None,
        tiny_overrides(
            tmp_path,
            scenario=name,
            algorithm={"name": "fedavg", "params": {"share": "encoder"}},
            training={"rounds": 1, "eval_initial": False},
            data={"datasets": TWINS},
        ),
    )
    fed = build_federation(config, registry)
    engine = Engine(fed)
    metrics = engine.run_round(1)
    expected = [(ds, tasks) for ds, tasks, _, _ in EXPECTED[name]]
    assert [(c.dataset, tuple(c.tasks)) for c in fed.manifest.clients] == expected
    assert metrics["train/loss"] > 0
    for kind in ("G", "P"):  # every client is evaluated on exactly its own tasks
        assert [tuple(m) for m in engine.last.per_client[kind]] == [t for _, t in expected]
    # FedAvg-E: after the round every client, whatever its dataset and tasks, holds the same
    # encoder; the decoders of different structures stay their own
    encoder = [
        {k: v for k, v in fed.states[i].items() if fed.model_of(i).groups()[k] == "encoder"}
        for i in range(len(fed.clients))
    ]
    assert encoder[0]
    for other in encoder[1:]:
        assert other.keys() == encoder[0].keys()
        assert all(other[k].equal(encoder[0][k]) for k in other)


# --------------------------------------------------------------------------- the command
SMALL_NYUD = [
    "--set",
    "data.datasets.nyudv2.twin_train=48",
    "--set",
    "data.datasets.nyudv2.twin_test=12",
    "--set",
    "data.datasets.nyudv2.twin_height=48",
    "--set",
    "data.datasets.nyudv2.twin_width=64",
]


def _cli(*args: str):
    from fmtlbench.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_scenarios_list_shows_every_study_scenario():
    result = _cli("scenarios", "list")
    assert result.exit_code == 0, result.output
    for name in BUILT_IN:
        assert name in result.output
    assert "UBCDST" in result.output and "pascal-context" in result.output


def test_scenarios_show_prints_table_hash_manifest_and_figure(tmp_path):
    png, manifest_path = tmp_path / "fig" / "niid5.png", tmp_path / "niid5.json"
    result = _cli(
        "scenarios", "show", "niid5", *SMALL_NYUD, "--out", str(png), "--manifest",
        str(manifest_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = manifest_path.read_text()
    data = json.loads(text)
    # 48 twin images skewed 1:2:3:4 -> 4.8, 9.6, 14.4, 19.2 -> the two largest remainders
    # (clients 1 and 2) get the spare images: 5, 10, 14, 19
    sizes = [len(c["train"]) + len(c["test"]) for c in data["clients"]]
    assert sizes == [5, 10, 14, 19]
    assert [tuple(c["tasks"]) for c in data["clients"]] == ST
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() in result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "C4" in line)
    assert "depth" in row and "19" in row and "17" in row  # 19 images: 17 train, 2 test
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 150
        assert len(set(image.convert("RGB").getdata())) > 10  # drawn, not blank
    # the figure's geometry: one row per task, marker area proportional to training images
    manifest = Manifest.model_validate_json(text)
    assert task_rows(manifest) == ["semseg", "depth", "normals", "edge"]
    points = markers(manifest)
    assert [(p.client, p.task) for p in points] == [(0, "semseg"), (1, "normals"), (2, "edge"),
                                                    (3, "depth")]  # fmt: skip
    assert [p.area for p in points] == pytest.approx(
        [LARGEST_AREA * n / 17 for n in (4, 9, 13, 17)]
    )


def test_scenarios_show_resizes_with_clients(tmp_path):
    path = tmp_path / "m.json"
    result = _cli(
        "scenarios", "show", "iid1", *SMALL_NYUD, "--clients", "8", "--seed", "3",
        "--no-figure", "--manifest", str(path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["seed"] == 3 and len(data["clients"]) == 8
    assert [len(c["train"]) + len(c["test"]) for c in data["clients"]] == [6] * 8


def test_scenarios_show_spec_round_trips_as_a_scenario_file(tmp_path):
    result = _cli("scenarios", "show", "niid7", "--spec")
    assert result.exit_code == 0, result.output
    spec = ScenarioSpec.model_validate(yaml.safe_load(result.output))
    assert spec == load_registry().get("scenario", "niid7")
    path = tmp_path / "copy.yaml"
    path.write_text(result.output)
    assert resolve_scenario(str(path), load_registry()).groups == spec.groups


def test_scenarios_show_unknown_name_is_one_line():
    result = _cli("scenarios", "show", "niid9")
    assert result.exit_code == 2
    assert "unknown scenario 'niid9'" in result.output and "Traceback" not in result.output
