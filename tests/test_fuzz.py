"""Property-based fuzzing of the config entry points: a clean FmtlbenchError or success."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
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
