"""Several processes on one tracking store: the first parallel runs in an empty folder must
all finish, each as its own MLflow run (MLflow's schema creation is not safe to race)."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fmtlbench import tracking
from fmtlbench.tracking import Tracker, prepare_store

ROUNDS = 3


def _worker(slot: int, folders: list[str], barrier, results) -> None:
    """Log a tiny run into each folder's store, starting at the same moment as the others."""
    for rep, folder in enumerate(folders):
        barrier.wait()
        try:
            tracker = Tracker(f"sqlite:///{folder}/mlflow.db", "concurrent")
            run_id = tracker.start(f"slot{slot}", {"slot": str(slot)})
            for step in range(1, ROUNDS + 1):
                tracker.log_metrics({"loss": slot + step / 10}, step=step)
            tracker.finish("FINISHED")
            results.put((rep, slot, run_id))
        except BaseException:
            results.put((rep, slot, traceback.format_exc()))


# each repetition creates a fresh database (~3 s of MLflow migrations under the lock, then every
# other process checks the schema): ten repetitions take minutes, so CI runs one of four
@pytest.mark.parametrize(
    "processes,repeats",
    [
        (4, 1),
        pytest.param(2, 10, marks=pytest.mark.slow),
        pytest.param(4, 10, marks=pytest.mark.slow),
    ],
)
def test_runs_started_together_in_an_empty_folder_all_finish(
    tmp_path: Path, processes: int, repeats: int
):
    folders = [str(tmp_path / f"rep{rep}") for rep in range(repeats)]
    for folder in folders:
        Path(folder).mkdir()
    ctx = mp.get_context("fork")  # mlflow is already imported here: no import per process
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(slot, folders, barrier, results))
        for slot in range(processes)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=240) for _ in range(repeats * processes)]
    for w in workers:
        w.join(timeout=60)
    failures = [o[2] for o in outcomes if "Traceback" in o[2]]
    assert not failures, failures[0]
    for rep, folder in enumerate(folders):
        ids = {o[2] for o in outcomes if o[0] == rep}
        assert len(ids) == processes  # each process its own run
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        runs = client.search_runs(
            [client.get_experiment_by_name("concurrent").experiment_id], max_results=50
        )
        assert {r.info.run_id for r in runs} == ids
        for r in runs:
            assert r.info.status == "FINISHED"
            slot = int(r.data.tags["slot"])
            history = client.get_metric_history(r.info.run_id, "loss")
            assert sorted((m.step, m.value) for m in history) == [
                (step, pytest.approx(slot + step / 10)) for step in range(1, ROUNDS + 1)
            ]


def test_prepare_store_is_idempotent_and_creates_the_experiment_once(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = prepare_store(uri, "sweep")
    assert prepare_store(uri, "sweep") == first
    assert prepare_store(uri) is None
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("sweep") == 1


def test_a_locked_database_is_retried_then_gives_up(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking.retry_locked(flaky) == "ok" and len(calls) == 3
    monkeypatch.setattr(tracking, "LOCKED_BUDGET", 0.3)

    def always():
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="locked"):
        tracking.retry_locked(always)
    with pytest.raises(ValueError):  # any other error is not retried
        tracking.retry_locked(lambda: (_ for _ in ()).throw(ValueError("no")))


@pytest.mark.slow  # two full CLI runs (imports of torch, timm, mlflow in each): ~1 minute
def test_two_real_runs_started_together_in_an_empty_folder(tmp_path: Path):
    import json
    import os
    import subprocess
    import sys

    from conftest import tiny_overrides

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    procs = []
    for seed in (0, 1):
        cfg = tmp_path / f"run{seed}.json"
        merged: dict = {}
        for fragment in tiny_overrides(tmp_path / f"r{seed}"):
            merged.update(fragment)
        cfg.write_text(json.dumps(merged))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fmtlbench",
                    "run",
                    "--config",
                    str(cfg),
                    "--seed",
                    str(seed),
                ]
                + ["--tracking-uri", uri, "--experiment", "together"],
                cwd=tmp_path,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["seed"] for r in runs} == {"0", "1"}
