"""A tracking store that is missing or lost mid-run: bounded waits, one clear message, the
records kept in an outbox beside the checkpoint and re-uploaded later, each metric step once.

The server tests use a real ``mlflow server`` on 127.0.0.1 (``mlflow_server`` in conftest),
killed with SIGKILL as a crash would, or frozen with SIGSTOP (it accepts connections and never
answers) and started again on the same port and database.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_overrides
from mlflow.tracking import MlflowClient

from fmtlbench import checkpoint
from fmtlbench.cli import main
from fmtlbench.config import build_config
from fmtlbench.engine import NullReporter
from fmtlbench.errors import DataError, TrackingError, TrackingLost
from fmtlbench.runner import execute
from fmtlbench.tracking import OUTBOX, Outbox, Tracker


def _dead_url() -> str:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _history(client: MlflowClient, run_id: str, keys) -> dict[str, list[tuple[int, float]]]:
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in keys
    }


def _comparable(keys) -> list[str]:
    """Metrics an exact resume reproduces: not wall-clock times or energy estimates."""
    return sorted(k for k in keys if not k.startswith(("time/", "energy/")))


def _tiny(tmp: Path, uri: str, rounds: int, tracking: dict | None = None, **extra):
    return build_config(
        None,
        tiny_overrides(
            tmp,
            clients=2,
            energy={"enabled": False},
            training={"rounds": rounds, "eval_initial": False},
            tracking={"uri": uri, "experiment": "outbox", **(tracking or {})},
            **extra,
        ),
    )


class KillServerAt(NullReporter):
    """Kills (or freezes) the server when ``round`` has trained, before its metrics are sent."""

    def __init__(self, server, round: int, freeze: bool = False) -> None:
        self.server, self.round, self.freeze, self.at = server, round, freeze, None

    def round_finished(self, round: int, metrics) -> None:
        if round == self.round:
            self.server.freeze() if self.freeze else self.server.kill()
            self.at = time.monotonic()


# ------------------------------------------------------------------------ no server at all
def test_nothing_listening_is_one_clear_line_within_seconds(tmp_path: Path):
    url = _dead_url()
    started = time.monotonic()
    with pytest.raises(TrackingError) as caught:
        Tracker(url, "outbox")
    assert time.monotonic() - started < 15  # MLflow's own defaults take minutes
    text = str(caught.value)
    assert "\n" not in text and url in text and "connection refused" in text
    assert "3 attempts" in text and "sqlite:///" in text  # the budget and the fix
    # the CLI, on an outbox whose server is gone: one line, exit 2, the records stay
    box = tmp_path / "run1" / OUTBOX
    Outbox(box).append({"op": "tags", "run": "run1", "uri": url, "values": {"a": "b"}})
    result = CliRunner().invoke(main, ["tracking", "flush", str(box.parent)])
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(f"error: tracking.uri {url}: ") and box.is_file()


@pytest.mark.slow
def test_a_run_on_a_server_that_is_not_there_ends_before_training(tmp_path: Path):
    started = time.monotonic()
    url = _dead_url()
    sets = [
        "clients=2",
        "energy.enabled=false",
        "training.rounds=1",
        f"checkpoint_dir={tmp_path / 'ckpt'}",
        *(f"data.datasets.nyudv2.{k}={v}" for k, v in (("twin_train", 8), ("twin_test", 4))),
    ]
    result = CliRunner().invoke(
        main, ["run", "--tracking-uri", url, *(a for s in sets for a in ("--set", s))]
    )
    assert result.exit_code == 2, result.output
    assert time.monotonic() - started < 60
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and url in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())


def test_the_budget_is_set_by_the_tracking_config(tmp_path: Path):
    config = _tiny(tmp_path, _dead_url(), 1, tracking={"timeout_s": 2, "retries": 0})
    assert (config.tracking.timeout_s, config.tracking.retries) == (2, 0)
    with pytest.raises(TrackingError, match="1 attempts of at most 2 s"):
        Tracker.of(config.tracking)
    for bad in ({"retries": 11}, {"timeout_s": 0}, {"backoff_s": -1}):
        with pytest.raises(Exception, match="tracking"):
            _tiny(tmp_path, "sqlite:///x.db", 1, tracking=bad)


# --------------------------------------------------------------- one step once, the outbox
def test_a_step_already_in_the_store_is_not_logged_again(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = Tracker(uri, "steps")
    run_id = first.start("r", {})
    for step in (1, 2, 3):
        first.log_metrics({"loss": 10.0 + step, "acc": step / 10}, step=step)
    first.finish("KILLED", "interrupted")
    again = Tracker(uri, "steps")  # a resumed session redoes round 3, then goes on
    again.resume(run_id)
    again.log_metrics({"loss": 99.0, "acc": 0.3, "new": 1.0}, step=3)
    again.log_metrics({"loss": 14.0, "acc": 0.4}, step=4)
    again.finish("FINISHED")
    client = MlflowClient(uri)
    assert _history(client, run_id, ["loss", "acc", "new"]) == {
        "loss": [(1, 11.0), (2, 12.0), (3, 13.0), (4, 14.0)],  # step 3 keeps its first value
        "acc": [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)],
        "new": [(3, 1.0)],  # a metric new at step 3 is logged
    }
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "fmtlbench.status_note" not in run.data.tags


def test_outbox_keeps_records_durably_and_a_flush_is_idempotent(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "outbox")
    run_id = tracker.start("r", {})
    folder = tmp_path / "ckpt" / run_id
    tracker.keep_in(folder)
    tracker.log_metrics({"loss": 1.5}, step=1)
    tracker.lost = "connection refused"  # from here on, as after a failed send
    tracker.log_metrics({"loss": 2.5, "acc": 0.25}, step=2)
    tracker.log_params({"lr": 0.001})
    tracker.set_tags({"note": "kept"})
    tracker.log_text("hello", "notes/hello.txt")
    tracker.finish("KILLED", "server lost")
    box = folder / OUTBOX
    assert [r["op"] for r in Outbox(box).records()] == [
        *("metrics", "params", "tags", "text", "finish")
    ]
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # nothing of it was sent
    with box.open("a") as f:  # a writer killed mid-append leaves a torn last line
        f.write('{"op": "metr')
    assert len(Outbox(box).records()) == 5
    text = box.read_text()

    result = CliRunner().invoke(main, ["tracking", "flush", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"run {run_id}: 5 kept records uploaded" in result.output
    assert not box.exists() and folder.is_dir()
    box.write_text(text)  # the same records again (a flush repeated after a crash)
    assert CliRunner().invoke(main, ["tracking", "flush", str(tmp_path / "ckpt")]).exit_code == 0
    run = client.get_run(run_id)
    assert _history(client, run_id, ["loss", "acc"]) == {
        "loss": [(1, 1.5), (2, 2.5)],
        "acc": [(2, 0.25)],
    }
    assert run.data.params == {"lr": "0.001"} and run.data.tags["note"] == "kept"
    assert run.info.status == "KILLED"
    assert run.data.tags["fmtlbench.status_note"] == "server lost"
    (tmp_path / "dl").mkdir()
    local = client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "hello"


def test_a_damaged_or_missing_outbox_is_one_clear_error(tmp_path: Path):
    box = tmp_path / "run" / OUTBOX
    Outbox(box).append({"op": "metrics", "run": "r", "step": 1, "time": 0, "values": {}})
    with box.open("a") as f:
        f.write("not json\n")
    Outbox(box).append({"op": "tags", "run": "r", "values": {}})
    with pytest.raises(DataError, match=r"outbox.jsonl line 2: not a tracking record"):
        Outbox(box).records()
    result = CliRunner().invoke(main, ["tracking", "flush", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert "no outbox.jsonl" in result.output and len(result.output.splitlines()) == 1


# --------------------------------------------------------------------- a real server lost
def test_tracker_on_a_killed_server_keeps_its_records_and_flushes_them_after_restart(
    tmp_path: Path, mlflow_server
):
    """The cheap server check CI runs: SIGKILL between two logged steps; the next write costs
    seconds, not minutes, and every later one goes straight to the outbox."""
    tracker = Tracker(mlflow_server.url, "outbox-tracker")
    run_id = tracker.start("r", {})
    tracker.keep_in(tmp_path / run_id)
    tracker.log_metrics({"loss": 1.0}, step=1)
    try:
        mlflow_server.kill()
        started = time.monotonic()
        tracker.log_metrics({"loss": 2.0, "acc": 0.5}, step=2)
        assert time.monotonic() - started < 15
        assert tracker.lost == "connection refused"
        started = time.monotonic()
        tracker.log_metrics({"loss": 3.0}, step=3)
        tracker.finish("KILLED", "lost")
        assert time.monotonic() - started < 1  # no more waiting once lost
    finally:
        mlflow_server.start()
    assert [r["op"] for r in Outbox(tmp_path / run_id / OUTBOX).records()] == [
        *("metrics", "metrics", "finish")
    ]
    result = CliRunner().invoke(main, ["tracking", "flush", str(tmp_path)])
    assert result.exit_code == 0, result.output
    client = MlflowClient(mlflow_server.url)
    assert _history(client, run_id, ["loss", "acc"]) == {
        "loss": [(1, 1.0), (2, 2.0), (3, 3.0)],
        "acc": [(2, 0.5)],
    }
    assert client.get_run(run_id).info.status == "KILLED"


@pytest.mark.slow
def test_server_killed_mid_run_stops_with_its_checkpoint_and_the_outbox_reuploads(
    tmp_path: Path, mlflow_server
):
    """The server dies after round 1 has trained: the run ends at once with one message and
    round 1 checkpointed; ``tracking flush`` after a restart uploads round 1 exactly as it
    was computed, and the resume finishes the run."""
    config = _tiny(tmp_path, mlflow_server.url, 1)
    killer = KillServerAt(mlflow_server, 1)
    try:
        with pytest.raises(TrackingLost) as caught:
            execute(config, reporter=killer)
        ended = time.monotonic() - killer.at
    finally:
        mlflow_server.start()
    assert ended < 60
    text = str(caught.value)
    assert "\n" not in text and "connection refused" in text
    run_id = text.split("run ", 2)[1].split()[0]
    folder = checkpoint.checkpoint_path(config.checkpoint_dir, run_id).parent
    assert f"resume with: fmtlbench run --resume {run_id}" in text
    assert f"fmtlbench tracking flush {folder}" in text
    state = checkpoint.load(folder / checkpoint.NAME)
    assert state["round"] == 1  # the round that could not be sent is not lost

    client = MlflowClient(mlflow_server.url)
    assert client.get_run(run_id).info.status == "RUNNING"  # the server died first
    result = CliRunner().invoke(main, ["tracking", "flush", str(folder)])
    assert result.exit_code == 0, result.output
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "resume with" in run.data.tags["fmtlbench.status_note"]
    keys = _comparable(state["history"][1])
    assert _history(client, run_id, keys) == {k: [(1, state["history"][1][k])] for k in keys}

    resumed = execute(config, resume=run_id)  # nothing left to train: evaluate and close
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "fmtlbench.status_note" not in run.data.tags
    assert _history(client, run_id, keys) == {k: [(1, resumed.history[1][k])] for k in keys}
    assert not folder.exists()  # checkpoint and outbox gone with the finished run


@pytest.mark.slow
def test_killed_server_after_restart_gives_the_uninterrupted_run(tmp_path: Path, mlflow_server):
    """Checked by: the re-uploaded and resumed run equals an uninterrupted one, metric by
    metric, each step once (here the resume uploads the outbox itself)."""
    straight = execute(_tiny(tmp_path / "a", mlflow_server.url, 3))
    config = _tiny(tmp_path / "b", mlflow_server.url, 3)
    killer = KillServerAt(mlflow_server, 2)
    try:
        with pytest.raises(TrackingLost):
            execute(config, reporter=killer)
        assert time.monotonic() - killer.at < 60
    finally:
        mlflow_server.start()
    client = MlflowClient(mlflow_server.url)
    run_id = client.search_runs(
        [client.get_experiment_by_name("outbox").experiment_id],
        "attributes.status = 'RUNNING'",
    )[0].info.run_id
    execute(config, resume=run_id)
    keys = _comparable(client.get_run(straight.run_id).data.metrics)
    assert keys == _comparable(client.get_run(run_id).data.metrics)
    want = _history(client, straight.run_id, keys)
    assert _history(client, run_id, keys) == want
    assert all([s for s, _ in h] == [1, 2, 3] for k, h in want.items() if k.startswith("P/"))


@pytest.mark.slow
def test_frozen_server_ends_the_run_within_a_minute_with_default_budget(
    tmp_path: Path, mlflow_server
):
    """A server that accepts connections and never answers: each request waits its timeout
    (10 s, 3 attempts by default), then the run stops at the round boundary."""
    config = _tiny(tmp_path, mlflow_server.url, 2)
    killer = KillServerAt(mlflow_server, 1, freeze=True)
    try:
        with pytest.raises(TrackingLost, match="no answer in time"):
            execute(config, reporter=killer)
        ended = time.monotonic() - killer.at
    finally:
        mlflow_server.freeze(False)
    assert ended < 60
    run_id = MlflowClient(mlflow_server.url).search_runs(
        [MlflowClient(mlflow_server.url).get_experiment_by_name("outbox").experiment_id],
        "attributes.status = 'RUNNING'",
    )
    assert run_id  # the flush is what closes it
    folder = checkpoint.checkpoint_path(config.checkpoint_dir, run_id[0].info.run_id).parent
    assert checkpoint.load(folder / checkpoint.NAME)["round"] == 1
    assert CliRunner().invoke(main, ["tracking", "flush", str(folder)]).exit_code == 0


@pytest.mark.slow
def test_a_round_redone_after_a_kill_between_logging_and_checkpoint_is_logged_once(
    tmp_path: Path,
):
    """Round 3 is logged, then the run is killed before its next checkpoint (every 2 rounds):
    the resume redoes round 3, and the store still holds one step 3 per metric."""
    from test_run import StopAt

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    straight = execute(_tiny(tmp_path / "a", uri, 4, checkpoint_every=2))
    config = _tiny(tmp_path / "b", uri, 4, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(4))
    client = MlflowClient(uri)
    run_id = client.search_runs(
        [client.get_experiment_by_name("outbox").experiment_id], "attributes.status = 'KILLED'"
    )[0].info.run_id
    assert checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, run_id))["round"] == 2
    execute(config, resume=run_id)
    keys = _comparable(client.get_run(straight.run_id).data.metrics)
    got = _history(client, run_id, keys)
    assert got == _history(client, straight.run_id, keys)
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4]
