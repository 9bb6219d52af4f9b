"""Task weightings in real tiny runs: weights logged per client and round, state carried in the
checkpoint, the identity on single-task clients, and a clear error for an unknown name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from test_run import StopAt

from fmtlbench import checkpoint
from fmtlbench import metric_keys as keys
from fmtlbench.runner import execute

ONE_ROUND = {"rounds": 1, "eval_initial": False}


#: The study's task weights q_t (SPEC section 4), written out here, not read from the code.
STUDY_WEIGHTS = {"semseg": 1.0, "parts": 2.0, "saliency": 5.0, "normals": 10.0, "edge": 50.0,
                 "depth": 1.0}  # fmt: skip


def logged(run_id: str) -> dict[str, float]:
    return dict(MlflowClient().get_run(run_id).data.metrics)


def test_dwa_run_logs_each_clients_task_weights(tiny_config):
    """Three local epochs: DWA's weights are 1 in the first two and T·softmax in the third, so
    each client's mean weights over the round sum (divided by q_t) to T = 4 without all being
    1 - a property of DWA's weights, not of the logging code."""
    config = tiny_config(
        training={**ONE_ROUND, "local_epochs": {"default": 3}, "weighting": {"name": "dwa"}},
        energy={"enabled": False},
    )
    outcome = execute(config)
    metrics = logged(outcome.run_id)
    tasks = ("semseg", "depth", "normals", "edge")
    for k in range(4):
        ratios = [metrics[keys.client_task_weight(k, t)] / STUDY_WEIGHTS[t] for t in tasks]
        assert sum(ratios) == pytest.approx(4.0, rel=1e-9)
        assert max(abs(r - 1) for r in ratios) > 1e-6
    assert MlflowClient().get_run(outcome.run_id).data.params["training.weighting.name"] == "dwa"


def test_uncertainty_log_variances_are_client_state_in_the_checkpoint(tiny_config):
    config = tiny_config(
        training={"rounds": 2, "eval_initial": False, "weighting": {"name": "uncertainty"}},
        energy={"enabled": False},
    )
    with pytest.raises(KeyboardInterrupt):
        execute(config, reporter=StopAt(2))
    client = MlflowClient()
    run = client.search_runs(
        [client.get_experiment_by_name("fmtlbench").experiment_id],
        filter_string="attributes.status = 'KILLED'",
        order_by=["attributes.start_time DESC"],
    )[0]

    class Outcome:
        run_id = run.info.run_id

    outcome = Outcome()
    saved = checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, outcome.run_id))
    states = saved["weighting"]
    assert len(states) == 4
    for k, state in enumerate(states):
        assert set(state["log_var"]) == {"semseg", "depth", "normals", "edge"}
        assert all(v != 0.0 for v in state["log_var"].values())  # trained from init 0
        # the logged weight is the coefficient ½·e^{-s}·q at the round's steps: below ½·q
        # when s grew, above when it shrank; its mean lies between the start and the end
        for task, s in state["log_var"].items():
            weight = logged(outcome.run_id)[keys.client_task_weight(k, task)]
            start, end = 0.5 * STUDY_WEIGHTS[task], 0.5 * STUDY_WEIGHTS[task] * 2.718281828**-s
            assert min(start, end) - 1e-9 <= weight <= max(start, end) + 1e-9


@pytest.mark.slow
def test_single_task_clients_train_the_study_loss_whatever_the_weighting(tiny_config):
    """niid2 (four single-task clients): a run with upgrad gives exactly the metrics of the
    default run, and logs each client's q_t."""
    runs = {}
    for name in ("equal", "upgrad"):
        config = tiny_config(
            scenario="niid2",
            training={**ONE_ROUND, "weighting": {"name": name}},
            energy={"enabled": False},
        )
        metrics = logged(execute(config).run_id)
        runs[name] = {k: v for k, v in metrics.items() if not keys.is_machine(k)}
    assert runs["upgrad"] == runs["equal"]
    weights = {k: v for k, v in runs["equal"].items() if "/weight/" in k}
    assert len(weights) == 4 and all(
        v == STUDY_WEIGHTS[k.rsplit("/", 1)[1]] for k, v in weights.items()
    )


def test_unknown_weighting_is_one_line_and_a_non_zero_exit():
    from fmtlbench.cli import main

    result = CliRunner().invoke(main, ["run", "--weighting", "uncertainity", "--rounds", "1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown weighting 'uncertainity'" in lines[0] and "'uncertainty'" in lines[0]
