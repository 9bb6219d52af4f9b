"""The pre-flight check: each setting that can only fail later is refused before any work.

Every refusal is checked through the CLI: one line, a non-zero exit, no traceback, no MLflow
run created (so no round logged) and no data read (the run's own cache folder never appears).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from fmtlbench.cli import main
from fmtlbench.config import build_config, parse_assignment
from fmtlbench.errors import ConfigError

TWIN = ["twin_train=48", "twin_test=12", "twin_height=48", "twin_width=64"]


def _store() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]  # set by the session fixture in conftest


def _tiny(tmp: Path, experiment: str) -> list[str]:
    sets = [f"data.datasets.nyudv2.{t}" for t in TWIN] + [
        "training.rounds=1",
        "training.resolution.default=[32,40]",
        "training.eval_resolution.default=[32,40]",
        "energy.enabled=false",
        f"data.cache_dir={tmp / 'cache'}",
        f"checkpoint_dir={tmp / 'checkpoints'}",
    ]
    args = ["--scenario", "iid1", "--experiment", experiment]
    for item in sets:
        args += ["--set", item]
    return args


def _no_run(uri: str, experiment: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        assert client.search_runs([found.experiment_id]) == []


def _refused(tmp: Path, args: list[str], *needles: str, uri: str | None = None) -> str:
    """Run ``fmtlbench run`` on a tiny config plus ``args``: it must stop before any work."""
    experiment = f"pf-{tmp.name}"
    result = CliRunner().invoke(main, ["run", *_tiny(tmp, experiment), *args])
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out
    uri = uri or _store()
    if uri.startswith("sqlite:") and Path(uri.removeprefix("sqlite:///")).is_file():
        _no_run(uri, experiment)
    assert not (tmp / "cache").exists(), "data was read before the refusal"
    return out


@pytest.fixture
def unwritable(tmp_path: Path):
    """A folder path nothing can be created under (root ignores permission bits: it gets a
    path under /sys, where even root may not create files)."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder / "sub"
        folder.chmod(0o755)
        return
    target = Path("/sys/fmtlbench-preflight-probe")
    try:
        target.mkdir()
    except OSError:
        yield target / "sub"
        return
    target.rmdir()
    pytest.skip("no unwritable folder available here")


# ---------------------------------------------------------------------------- folders
def test_checkpoint_dir_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    args = ["--set", f"checkpoint_dir={tmp_path / 'afile'}"]
    _refused(tmp_path, args, "checkpoint_dir", "is not a folder", "--set checkpoint_dir=")


def test_checkpoint_dir_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    args = ["--set", f"checkpoint_dir={tmp_path / 'afile' / 'ck'}"]
    _refused(tmp_path, args, "checkpoint_dir", f"its parent {tmp_path / 'afile'} is a file")


def test_checkpoint_dir_that_cannot_be_written(tmp_path, unwritable):
    args = ["--set", f"checkpoint_dir={unwritable}"]
    _refused(tmp_path, args, f"checkpoint_dir {unwritable} cannot be written")


def test_cache_dir_that_cannot_be_written(tmp_path, unwritable):
    result = CliRunner().invoke(
        main, ["run", *_tiny(tmp_path, "pf-cache"), "--set", f"data.cache_dir={unwritable}"]
    )
    out = result.output.strip()
    assert result.exit_code == 2 and len(out.splitlines()) == 1, out
    assert f"data.cache_dir {unwritable} cannot be written" in out, out
    _no_run(_store(), "pf-cache")


def test_the_folder_probe_leaves_nothing_behind(tmp_path):
    from fmtlbench.preflight import check_folder

    check_folder(tmp_path / "a" / "b" / "c", "checkpoint_dir")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_folder(tmp_path / "kept", "checkpoint_dir")
    assert list((tmp_path / "kept").iterdir()) == []


# ---------------------------------------------------------------------------- space
def test_too_little_space_for_a_checkpoint_is_named(tmp_path):
    from fmtlbench.preflight import check_space

    with pytest.raises(ConfigError, match=r"needs about 1000000000000\.0 MB, only .* MB are free"):
        check_space(tmp_path / "new" / "folder", 10**18)
    check_space(tmp_path, 1)


def test_checkpoint_estimate_is_twice_the_real_client_states(tiny_config):
    """The meta-device estimate equals 2 x the bytes of the real models' states, counted on
    the real federation (CPU tensors) of the same config; and a checkpoint of distinct client
    states and the server state, encoded for real, fits in it."""
    from fmtlbench import checkpoint, preflight
    from fmtlbench.federation import build_federation, resolve_components
    from fmtlbench.registry import load_registry

    registry = load_registry()
    config = tiny_config()
    estimate = preflight.checkpoint_bytes(config, resolve_components(config, registry), registry)
    fed = build_federation(config, registry)
    real = sum(t.numel() * t.element_size() for s in fed.states for t in s.values())
    assert estimate == 2 * real
    distinct = [{k: v.clone() for k, v in s.items()} for s in fed.states]  # as after training
    size = len(checkpoint.encode({"states": distinct, "algorithm": fed.algorithm.state_dict()}))
    assert real <= size <= estimate


# ---------------------------------------------------------------------------- tracking
def test_a_tracking_server_nobody_listens_on_is_refused_in_seconds(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    out = _refused(tmp_path, ["--tracking-uri", uri], f"tracking.uri {uri}", "mlflow server")
    assert time.monotonic() - started < 30, "the probe must not wait for MLflow's minutes"
    assert "Connection refused" in out, out


def test_a_sqlite_file_that_is_not_a_database(tmp_path):
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are not the tables you are looking for\n" * 20)
    uri = f"sqlite:///{db}"
    _refused(tmp_path, ["--tracking-uri", uri], "is not an SQLite database", "--tracking-uri")
    assert db.read_bytes().startswith(b"these are not")  # left as it was


def test_a_sqlite_uri_that_is_a_folder(tmp_path):
    _refused(tmp_path, ["--tracking-uri", f"sqlite:///{tmp_path}"], "is a folder")


def test_a_sqlite_store_in_a_folder_that_cannot_be_written(tmp_path, unwritable):
    uri = f"sqlite:///{unwritable / 'mlflow.db'}"
    _refused(tmp_path, ["--tracking-uri", uri], f"tracking.uri {uri}", "cannot be written")


def test_an_unknown_tracking_scheme(tmp_path):
    _refused(tmp_path, ["--tracking-uri", "gopher://host/x"], "gopher://host/x", "sqlite:///")


def test_a_deleted_experiment(tmp_path):
    client = MlflowClient(tracking_uri=_store())
    name = f"pf-{tmp_path.name}"
    client.delete_experiment(client.create_experiment(name))
    result = CliRunner().invoke(main, ["run", *_tiny(tmp_path, name)])
    out = result.output.strip()
    assert result.exit_code == 2 and len(out.splitlines()) == 1, out
    assert f"tracking.experiment '{name}' is deleted" in out, out


# ---------------------------------------------------------------------------- reference
#: What a Δ% reference of an iid1 NYUD run must hold, written out by hand.
NYUD_KEYS = [
    f"{kind}/nyudv2/{metric}"
    for kind in "GP"
    for metric in ("semseg/miou", "depth/rmse", "normals/mean", "edge/loss")
]


def _reference(status: str, tags: dict[str, str], metrics: list[str]) -> str:
    client = MlflowClient(tracking_uri=_store())
    exp = client.get_experiment_by_name("pf-references")
    exp_id = exp.experiment_id if exp else client.create_experiment("pf-references")
    run = client.create_run(exp_id, tags=tags)
    for key in metrics:
        client.log_metric(run.info.run_id, key, 0.5)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def test_a_reference_that_does_not_exist(tmp_path):
    _refused(tmp_path, ["--reference", "f" * 32], f"reference run '{'f' * 32}' not found")


@pytest.mark.parametrize("status", ["RUNNING", "FAILED", "KILLED"])
def test_a_reference_that_has_not_finished(tmp_path, status):
    ref = _reference(status, {"data": "synthetic"}, NYUD_KEYS)
    _refused(tmp_path, ["--reference", ref], f"reference run '{ref}' is {status}, not FINISHED")


def test_a_reference_on_another_data_kind(tmp_path):
    ref = _reference("FINISHED", {"data": "real"}, NYUD_KEYS)
    _refused(tmp_path, ["--reference", ref], f"'{ref}' was trained on real data", "synthetic")


def test_a_reference_that_lacks_a_task_of_the_run(tmp_path):
    ref = _reference("FINISHED", {"data": "synthetic"}, NYUD_KEYS[:3] + NYUD_KEYS[4:])
    out = _refused(tmp_path, ["--reference", ref], f"'{ref}' lacks G/nyudv2/edge/loss")
    assert "P/nyudv2/edge/loss" not in out  # only what is missing is named


def test_a_complete_finished_reference_passes_with_its_metrics(tmp_path):
    from fmtlbench import preflight
    from fmtlbench.registry import load_registry

    ref = _reference("FINISHED", {"data": "synthetic"}, NYUD_KEYS)
    sets = [f"checkpoint_dir={tmp_path / 'ck'}", f"data.cache_dir={tmp_path / 'c'}"]
    config = build_config(
        None, [parse_assignment(s) for s in sets] + [{"reference": ref, "scenario": "iid1"}]
    )
    checked = preflight.check(config, load_registry())
    assert checked.reference == dict.fromkeys(NYUD_KEYS, 0.5)
    assert not (tmp_path / "c").exists() and not (tmp_path / "ck").exists()


# ---------------------------------------------------------------------------- dataset keys
@pytest.mark.parametrize(
    "assignment",
    [
        "data.datasets.nyudv3.twin_train=4",
        "training.resolution.nyudv3=[64,64]",
        "training.eval_resolution.nyud=[64,64]",
        "training.local_epochs.nyudv3=2",
    ],
)
def test_unknown_dataset_keys_stop_the_run_before_work(tmp_path, assignment):
    _refused(tmp_path, ["--set", assignment], "unknown dataset", "Did you mean 'nyudv2'")


# ---------------------------------------------------------------------------- sweep
def _sweep_refused(tmp: Path, args: list[str], *needles: str) -> str:
    experiment = f"pf-{tmp.name}"
    sets = [f"data.cache_dir={tmp / 'cache'}", f"checkpoint_dir={tmp / 'checkpoints'}"]
    base = ["sweep", "--algos", "fedavg,local", "--scenarios", "iid1"]
    base += ["--experiment", experiment, *[a for s in sets for a in ("--set", s)]]
    result = CliRunner().invoke(main, [*base, *args])
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out
    _no_run(_store(), experiment)
    assert not (tmp / "cache").exists(), "a cell read data before the refusal"
    return out


def test_sweep_checks_before_its_first_cell(tmp_path, unwritable):
    _sweep_refused(tmp_path, ["--set", f"checkpoint_dir={unwritable}"], "cannot be written")


def test_sweep_refuses_an_unknown_dataset_key(tmp_path):
    _sweep_refused(tmp_path, ["--set", "data.datasets.nyudv3.twin_train=4"], "'nyudv2'")


def test_sweep_refuses_an_unfinished_reference(tmp_path):
    ref = _reference("RUNNING", {"data": "synthetic"}, NYUD_KEYS)
    _sweep_refused(tmp_path, ["--set", f"reference={ref}"], f"'{ref}' is RUNNING")


# ---------------------------------------------------------------------------- downloads
def _data_refused(args: list[str], *needles: str) -> None:
    result = CliRunner().invoke(main, ["data", *args])
    out = result.output.strip()
    assert result.exit_code == 2, out
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out


def test_synth_out_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    _data_refused(["synth", "nyudv2", "--out", str(tmp_path / "afile")], "--out", "not a folder")


def test_synth_out_that_cannot_be_written(unwritable):
    _data_refused(["synth", "nyudv2", "--out", str(unwritable)], "--out", "cannot be written")


def test_download_to_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    to = tmp_path / "afile" / "data"
    args = ["download", "nyudv2", "--to", str(to), "--url", "http://127.0.0.1:9/x.tar"]
    _data_refused(args, "--to", "is a file")


def test_download_to_that_cannot_be_written(unwritable):
    args = ["download", "nyudv2", "--to", str(unwritable), "--url", "http://127.0.0.1:9/x.tar"]
    _data_refused(args, "--to", "cannot be written")


def test_parallel_probes_of_one_new_folder_all_pass(tmp_path):
    """Runs started together probe the same not-yet-existing folder: one removing the folder
    it created must not make another's probe fail."""
    from concurrent.futures import ThreadPoolExecutor

    from fmtlbench.preflight import check_folder

    target = tmp_path / "shared" / "checkpoints"

    def probe(_: int) -> None:
        for _ in range(25):
            check_folder(target, "checkpoint_dir")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(probe, range(8)))  # re-raises the first refusal, if any
    # no probe file is left (an empty folder may be: each probe removes only what it made)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_data_root_that_is_not_a_folder(tmp_path, kind):
    root = tmp_path / "data"
    if kind == "file":
        root.write_text("x")
    what = "is a file" if kind == "file" else "does not exist"
    _refused(tmp_path, ["--data-root", str(root)], f"data.root {root} {what}", "--data-root")


def test_a_tracking_server_that_never_answers_is_refused_within_the_probe_timeout(monkeypatch):
    """A port that accepts connections but never replies (a hung server): MLflow's own
    defaults would wait 120 s per try, seven times; the probe gives up after its timeout
    (1 s here instead of the default 5, to keep the suite fast)."""
    from fmtlbench import preflight

    monkeypatch.setattr(preflight, "PROBE_TIMEOUT", 1)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes connections; nobody ever reads or answers
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        before = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"tracking.uri {uri}: the store cannot be used"):
            preflight.check_store(uri, "fmtlbench")
        elapsed = time.monotonic() - started
    assert elapsed < 4 * preflight.PROBE_TIMEOUT, elapsed
    assert os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") == before  # restored afterwards


@pytest.mark.slow
def test_a_live_tracking_server_passes_and_is_refused_once_stopped(mlflow_server):
    """A real ``mlflow server`` on 127.0.0.1 (the session's, from conftest): the probe creates
    the experiment on it; once the server is stopped, the same probe is refused in seconds."""
    from fmtlbench import preflight

    uri = mlflow_server.url
    preflight.check_store(uri, "pf-live")
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("pf-live") is not None
    mlflow_server.kill()
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError, match="Connection refused"):
            preflight.check_store(uri, "pf-live")
        assert time.monotonic() - started < 30
    finally:
        mlflow_server.start()  # the session's server, for the tests after this one
