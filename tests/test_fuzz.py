"""Property-based fuzzing of the config entry points: a clean FmtlbenchError or success."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fmtlbench.config import build_config, parse_assignment, read_mapping
from fmtlbench.errors import FmtlbenchError
from fmtlbench.leaderboard.published import read_csv

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
KEYS = st.sampled_from(["seed", "training.lr", "training.rounds", "data.cache_dir", "x.y", ""])
TAGS = st.sampled_from(["", "!!float ", "!!int ", "!!timestamp ", "!!binary ", "!!python/object "])
FOLDER = Path(tempfile.mkdtemp(prefix="fmtlbench-fuzz-"))


@FUZZ
@given(key=KEYS, tag=TAGS, value=st.text(max_size=30))
def test_set_strings(key, tag, value):
    try:
        build_config(None, [parse_assignment(f"{key}={tag}{value}")])
    except FmtlbenchError:
        pass


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".yaml", ".toml", ".json"]))  # fmt: skip
def test_config_files(data, suffix):
    path = FOLDER / f"run{suffix}"
    path.write_bytes(data)
    try:
        build_config(None, [read_mapping(path)])
    except FmtlbenchError:
        pass


HEADER = b"method,setting,dataset,task,metric,client,value\n"


@FUZZ
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       header=st.booleans())  # fmt: skip
def test_leaderboard_csvs(body, header):
    path = FOLDER / "table.csv"
    path.write_bytes((HEADER if header else b"") + body)
    try:
        read_csv(path)
    except FmtlbenchError:
        pass


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".yaml", ".toml"]))  # fmt: skip
def test_scenario_files(data, suffix):
    from fmtlbench.scenario import load_scenario_file

    path = FOLDER / f"scenario{suffix}"
    path.write_bytes(data)
    try:
        load_scenario_file(path)
    except FmtlbenchError:
        pass


SWEEP_PATHS = st.sampled_from(
    ["algorithm.name", "scenario", "seed", "training.lr", "training.resolution.default",
     "clients", "data.datasets.nyudv2.twin_train", "x", "", "arch.name", "training"]
)  # fmt: skip
GOOD_VALUES = st.sampled_from(["all", "fedavg", "local", "md", "iid1", "niid6", 0, 1, 1e-3])
SWEEP_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | GOOD_VALUES | GOOD_VALUES | GOOD_VALUES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=2),
    max_leaves=6,
)  # fmt: skip
SWEEP_GRIDS = st.dictionaries(SWEEP_PATHS, st.lists(SWEEP_VALUES, max_size=3) | SWEEP_VALUES,
                              max_size=2)  # fmt: skip


@FUZZ
@given(
    raw=st.one_of(
        st.none(),
        st.none(),
        st.none(),
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
    ),
    name=st.sampled_from(["fz", "fz", "fz", "", "a b", 3]),
    fixed=st.dictionaries(SWEEP_PATHS, SWEEP_VALUES, max_size=2),
    grid=SWEEP_GRIDS | st.lists(SWEEP_GRIDS, max_size=2) | SWEEP_VALUES,
    suffix=st.sampled_from([".yaml", ".toml", ".json"]),
)
@example(raw=None, name="fz", fixed={}, grid=None, suffix=".yaml")  # was a TypeError
@example(raw=None, name="fz", fixed={}, grid={"training.resolution.default": [[32, 40]]},
         suffix=".yaml")  # fmt: skip
def test_sweep_files(raw, name, fixed, grid, suffix):
    """Random bytes, or a random sweep mapping, as a sweep file: loading it and expanding its
    cells (each config validated with its components) ends cleanly either way."""
    import json

    import yaml

    from fmtlbench.registry import load_registry
    from fmtlbench.sweep.plan import build_cells
    from fmtlbench.sweep.spec import load_spec

    path = FOLDER / f"sweep{suffix}"
    if raw is None:
        tree = {"name": name, "set": fixed, "grid": grid}
        text = json.dumps(tree, default=str) if suffix != ".yaml" else yaml.safe_dump(tree)
        if suffix == ".toml":  # no TOML writer in the standard library: the tree goes as JSON
            path = FOLDER / "sweep.json"
        path.write_text(text)
    else:
        path.write_bytes(raw)
    try:
        spec = load_spec(str(path))
        cells = build_cells(spec, load_registry())
    except FmtlbenchError:
        event("refused")
        return
    event("expanded")
    assert all(cell.config is not None for cell in cells)
