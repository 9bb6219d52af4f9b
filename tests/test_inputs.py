"""Hostile inputs end in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fmtlbench.cli import main


def _fails_cleanly(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(main, args)
    output = result.output.strip()
    assert result.exit_code not in (0, None), output
    assert "Traceback" not in output and not isinstance(result.exception, AssertionError)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(output.splitlines()) == 1, output
    for needle in needles:
        assert needle in output, output
    return output


@pytest.mark.parametrize(
    "value",
    ["!!float x", "!!int x", "!!timestamp x", "!!python/object:os.system ls", "!!binary ?"],
)
def test_yaml_tags_in_set_values(value):
    _fails_cleanly(["run", "--dry-run", "--set", f"training.lr={value}"], "training.lr")


@pytest.mark.parametrize(
    "text",
    [
        "lr: !!float x\n",
        "seed: !!int x\n",
        "when: !!timestamp x\n",
        "x: !!python/object:os.system\n",
    ],
)
def test_yaml_tags_in_config_files(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    _fails_cleanly(["run", "--dry-run", "--config", str(path)], str(path))


def test_yaml_errors_keep_line_and_column(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  lr: 0.1\n  rounds: [1, 2\n")
    out = _fails_cleanly(["run", "--dry-run", "--config", str(path)], str(path))
    assert "line 4, column 1" in out, out


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_a_binary_config_file(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    path.write_bytes(os.urandom(64) + b"\xff\xfe\x00\x81")
    _fails_cleanly(["run", "--dry-run", "--config", str(path)], str(path))


def test_a_seed_beyond_64_bits():
    _fails_cleanly(["run", "--dry-run", "--set", f"seed={2**70}"], "seed")


def _csv(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data",
    [
        "method,setting,dataset,task,metric,value\nLokál,G,d,semseg,miou,1\n".encode("latin-1"),
        b"method,setting,dataset,task,metric,value\nA,G,d,semseg,miou," + b"9" * 200_000 + b"\n",
        bytes(range(256)) * 8,
        b"method,setting\x00,dataset\n",
    ],
    ids=["latin-1", "huge field", "random bytes", "nul byte"],
)
def test_leaderboard_csvs_that_are_not_text_tables(tmp_path, data):
    path = _csv(tmp_path, data)
    _fails_cleanly(["leaderboard", "--from-csv", str(path), "--no-log"], str(path))


def test_a_download_target_that_is_an_existing_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    args = ["data", "download", "nyudv2", "--to", str(tmp_path / "afile")]
    _fails_cleanly([*args, "--url", "http://127.0.0.1:9/x.tar"], "--to", "not a folder")


def test_sha256_is_checked_before_any_download(tmp_path):
    args = ["data", "download", "nyudv2", "--to", str(tmp_path / "d"), "--url"]
    _fails_cleanly([*args, "http://127.0.0.1:9/x.tar", "--sha256", "xyz"], "--sha256", "64")
    assert not (tmp_path / "d").exists()


def test_unknown_url_schemes_are_refused_at_once(tmp_path):
    args = ["data", "download", "nyudv2", "--to", str(tmp_path / "d")]
    _fails_cleanly([*args, "--url", "gopher://x/y.tar"], "gopher", "https")


def test_an_unchecked_leftover_archive_is_fetched_again(tmp_path):
    from fmtlbench.download import fetch

    source, dest = tmp_path / "good.bin", tmp_path / "got.bin"
    source.write_bytes(b"good archive")
    dest.write_bytes(b"broken leftover")
    fetch(source.as_uri(), dest)  # no checksum known
    assert dest.read_bytes() == b"good archive"


def test_tracking_uri_empty_is_an_error():
    _fails_cleanly(["run", "--dry-run", "--tracking-uri", ""], "tracking.uri")


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    from fmtlbench_builtins.datasets.decoding import read_ids

    split = tmp_path / "train.txt"
    split.write_bytes("\ufeff2008_000002\r\n2008_000003\n".encode())
    assert read_ids(split, "train") == ["2008_000002", "2008_000003"]


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED"])
def test_a_reference_run_that_has_not_finished_is_refused(tmp_path, status):
    import mlflow

    from fmtlbench.errors import ConfigError
    from fmtlbench.leaderboard.reference import check_reference

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("refs") or client.create_experiment("refs")
    exp_id = exp if isinstance(exp, str) else exp.experiment_id
    run = client.create_run(exp_id)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    with pytest.raises(ConfigError, match=f"'{run.info.run_id}' is {status}, not FINISHED"):
        check_reference(client.get_run(run.info.run_id))
    client.set_terminated(run.info.run_id, status="FINISHED")
    check_reference(client.get_run(run.info.run_id))  # a finished run passes


def test_a_cache_path_that_is_not_a_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    args = ["run", "--dry-run", "--set", f"data.cache_dir={tmp_path / 'afile'}"]
    _fails_cleanly(args, "data.cache_dir", "not a folder")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--set", "training.lr=.inf"], "training.lr"),
        (["--set", "training.resolution.default=[100000,100000]"], "training.resolution"),
        (["--seed", str(2**64 + 1)], "seed"),
        (["--rounds", "10000000"], "training.rounds"),
        (["--experiment", ""], "tracking.experiment"),
        (["--run-name", ""], "tracking.run_name"),
        (["--reference", ""], "reference"),
        (["--scenario", ""], "scenario"),
        (["--algo", ""], "algorithm.name"),
        (["--data-root", ""], "data.root"),
        (["--set", "checkpoint_dir="], "checkpoint_dir"),
        (["--set", "data.cache_dir="], "data.cache_dir"),
    ],
)
def test_unbounded_and_empty_values_name_their_field(args, field):
    _fails_cleanly(["run", "--dry-run", *args], field)


def test_a_directory_given_as_config(tmp_path):
    _fails_cleanly(["run", "--dry-run", "--config", str(tmp_path)], str(tmp_path), "directory")
