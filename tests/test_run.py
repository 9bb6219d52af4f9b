"""End to end: a tiny run learns, is reproducible, is tracked and survives interruption."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from fmtlbench import cachekey, checkpoint
from fmtlbench.delta import delta_percent
from fmtlbench.engine import NullReporter
from fmtlbench.runner import execute


def _primary(outcome, evaluation):
    fed = outcome.federation
    out = {}
    for ds, tasks in evaluation.summary["G"].items():
        for task, metrics in tasks.items():
            metric, lower = fed.datasets[ds].tasks[task].primary
            out[(ds, task)] = (metrics[metric][0], lower)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short FedAvg run shared by the tests that only read it."""
    from conftest import tiny_overrides

    from fmtlbench.config import build_config

    tmp = tmp_path_factory.mktemp("trained")
    # lr 3e-3: at 32x40 the default 1e-3 moves depth too little in 4 rounds to be a clear test
    config = build_config(None, tiny_overrides(tmp, training={"rounds": 4, "lr": 3e-3}))
    return execute(config)


def test_every_task_improves_on_the_untrained_model(trained):
    before = _primary(trained, trained.initial)
    after = _primary(trained, trained.final)
    assert set(before) == {("nyudv2", t) for t in ("semseg", "depth", "normals", "edge")}
    for key, (value, lower) in after.items():
        untrained = before[key][0]
        assert (value < untrained) if lower else (value > untrained), (key, untrained, value)


def test_mlflow_run_has_rounds_tags_and_artifacts(trained):
    client = MlflowClient()
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["scenario"] == "iid1" and tags["algorithm"] == "fedavg"
    assert tags["arch"] == "md" and tags["backbone"] == "resnet18"
    assert tags["data"] == "synthetic" and tags["seed"] == "0"
    assert tags["partition_hash"] == trained.federation.manifest.digest()
    assert len(tags[cachekey.TAG]) == 64
    assert run.data.params["training.rounds"] == "4"
    history = client.get_metric_history(trained.run_id, "G/nyudv2/semseg/miou")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
    assert len(client.get_metric_history(trained.run_id, "train/loss")) == 4
    names = {a.path for a in client.list_artifacts(trained.run_id)}
    assert {"config.yaml", "manifest.json", "metrics"} <= names
    manifest = json.loads(mlflow.artifacts.load_text(f"runs:/{trained.run_id}/manifest.json"))
    assert len(manifest["clients"]) == 4
    ids = [i for c in manifest["clients"] for i in c["train"] + c["test"]]
    assert len(ids) == len(set(ids)) == 48  # disjoint and complete over the twin's train split
    # a finished run leaves no checkpoint behind
    assert not checkpoint.checkpoint_path(
        trained.federation.config.checkpoint_dir, trained.run_id
    ).exists()


def test_same_config_and_seed_give_identical_metrics(tiny_config):
    first = execute(tiny_config(training={"rounds": 1, "eval_initial": False}))
    second = execute(tiny_config(training={"rounds": 1, "eval_initial": False}))
    assert first.final.per_client == second.final.per_client
    other = execute(tiny_config(seed=1, training={"rounds": 1, "eval_initial": False}))
    assert other.final.per_client != first.final.per_client


class StopAt(NullReporter):
    """Interrupts the run like Ctrl-C when ``round`` starts."""

    def __init__(self, round: int) -> None:
        self.round = round

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        if round == self.round:
            raise KeyboardInterrupt


def _newest_killed(client: MlflowClient):
    """The most recently started KILLED run of the default experiment."""
    return client.search_runs(
        [client.get_experiment_by_name("fmtlbench").experiment_id],
        filter_string="attributes.status = 'KILLED'",
        order_by=["attributes.start_time DESC"],
    )[0]


@pytest.mark.slow  # CI runs the same check as tests/test_kill.py (SIGTERM mid-round, and all nine
# algorithms resumed in process)
def test_interrupted_run_is_killed_with_checkpoint_and_resumes_identically(tiny_config):
    config = tiny_config(training={"rounds": 2, "eval_initial": False})
    straight = execute(config)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(2))
    client = MlflowClient()
    killed = _newest_killed(client)
    assert "resume with" in killed.data.tags["fmtlbench.status_note"]
    path = checkpoint.checkpoint_path(config.checkpoint_dir, killed.info.run_id)
    assert checkpoint.load(path)["round"] == 1
    resumed = execute(config, resume=killed.info.run_id)
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    assert resumed.final.per_client == straight.final.per_client


def test_delta_against_a_reference_run(tiny_config):
    reference = execute(
        tiny_config(algorithm={"name": "local"}, training={"rounds": 1, "eval_initial": False})
    )
    run = execute(
        tiny_config(reference=reference.run_id, training={"rounds": 1, "eval_initial": False})
    )
    ref_metrics = MlflowClient().get_run(reference.run_id).data.metrics
    values, refs, lower = {}, {}, {}
    for (ds, task), (value, low) in _primary(run, run.final).items():
        metric = run.federation.datasets[ds].tasks[task].primary[0]
        key = f"G/{ds}/{task}/{metric}"
        values[key], refs[key], lower[key] = value, ref_metrics[key], low
    # the hand formula, independent of the engine's bookkeeping
    by_hand = (
        100
        / len(values)
        * sum((-1 if lower[k] else 1) * (values[k] - refs[k]) / refs[k] for k in values)
    )
    assert run.final.delta["G"] == pytest.approx(by_hand)
    assert run.final.delta["G"] == pytest.approx(delta_percent(values, refs, lower))
    logged = MlflowClient().get_run(run.run_id).data.metrics["delta/G"]
    assert logged == pytest.approx(by_hand)


def test_checkpoint_at_the_last_round_resumes_to_a_clean_finish(tiny_config):
    one = tiny_config(training={"rounds": 1, "eval_initial": False})
    straight = execute(one)
    with pytest.raises(KeyboardInterrupt):
        execute(tiny_config(training={"rounds": 2, "eval_initial": False}), reporter=StopAt(2))
    client = MlflowClient()
    killed = _newest_killed(client)
    path = checkpoint.checkpoint_path(one.checkpoint_dir, killed.info.run_id)
    state = checkpoint.load(path)
    state["config"] = one.dump()  # as if killed after saving round 1 of a 1-round run
    checkpoint.save(path, state)
    resumed = execute(one, resume=killed.info.run_id)
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    assert resumed.final.per_client == straight.final.per_client


def test_a_run_killed_between_checkpoints_resumes_from_the_last_saved_round(tiny_config):
    config = tiny_config(checkpoint_every=2, training={"rounds": 3, "eval_initial": False})
    straight = execute(config)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(3))  # round 1 was not saved, round 2 was
    killed = _newest_killed(MlflowClient())
    path = checkpoint.checkpoint_path(config.checkpoint_dir, killed.info.run_id)
    assert checkpoint.load(path)["round"] == 2
    resumed = execute(config, resume=killed.info.run_id)
    assert resumed.final.per_client == straight.final.per_client
    assert resumed.history[3]["comm/down_bytes"] == straight.history[3]["comm/down_bytes"]


@pytest.mark.slow  # in CI through tests/test_kill.py's nine-algorithm resume test (comm/* equal)
def test_resumed_fedprox_counts_its_anchor_download_like_the_uninterrupted_run(tiny_config):
    """FedProx's anchor is the global model each client was just sent: the delivery record
    survives the checkpoint, so round 2 after a resume does not count it as downloaded again."""
    config = tiny_config(algorithm={"name": "fedprox"}, training={"eval_initial": False})
    straight = execute(config)
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(2))
    resumed = execute(config, resume=_newest_killed(MlflowClient()).info.run_id)
    comm = {k: v for k, v in straight.history[2].items() if k.startswith("comm/")}
    assert comm and {k: resumed.history[2][k] for k in comm} == comm
    assert resumed.final.per_client == straight.final.per_client


@pytest.mark.slow
def test_fedamp_round_metrics_are_logged_under_algo(tiny_config):
    """FedAMP with sigma far above every squared distance: each of the 4 clients attends
    alpha / sigma = 0.5 to each of its 3 peers, a row sum of 1.5, so all 4 rows are clipped."""
    config = tiny_config(
        algorithm={"name": "fedamp", "params": {"alpha": 5e11, "sigma": 1e12}},
        training={"rounds": 1, "eval_initial": False},
    )
    run_id = execute(config).run_id
    client = MlflowClient()
    clipped = client.get_metric_history(run_id, "algo/fedamp/clipped_rows")
    assert [(m.step, m.value) for m in clipped] == [(1, 4.0)]
    assert client.get_metric_history(run_id, "algo/fedamp/min_self_weight")[0].value == (
        pytest.approx(0.0, abs=1e-9)
    )


@pytest.mark.slow
def test_fedrep_trains_the_configured_local_epochs_in_total(tiny_config):
    """E = 2 from the config reaches FedRep: head 1 + body 1, no epoch beyond E."""
    config = tiny_config(
        algorithm={"name": "fedrep"},
        training={"rounds": 1, "eval_initial": False, "local_epochs": {"default": 2}},
    )
    outcome = execute(config)
    assert [p.epochs for p in outcome.federation.algorithm.local_phases(0)] == [1, 1]
    history = MlflowClient().get_metric_history(outcome.run_id, "algo/fedrep/extra_epochs")
    assert [m.value for m in history] == [0.0]
