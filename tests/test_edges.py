"""Edge odsF/oisF through pyEdgeEval: constructed maps with hand-computed scores, the real NYUD
frames against their own ground truth, a tracked tiny run, and odsF as the Δ% primary."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmtlbench import edges
from fmtlbench.config import build_config, parse_assignment
from fmtlbench.errors import ConfigError
from fmtlbench.metrics import make_meter
from fmtlbench.tasks import TaskSpec, primary_metric

REAL = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "realdata" / "NYUDv2-sample"
if not REAL.is_dir():  # the worktree sits two levels below /work, the main repo one
    REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata" / "NYUDv2-sample"

pytestmark = pytest.mark.skipif(not edges.available(), reason=edges.missing_message())


def spec(distance: float = 0.011, thresholds: int = 9) -> TaskSpec:
    return TaskSpec(
        "edge", channels=1, pos_weight=0.8, match_distance=distance, odsf_thresholds=thresholds
    )


def logits(edge_map: torch.Tensor) -> torch.Tensor:
    """A confident prediction of ``edge_map`` (σ = 0.99995 on edges, 0.00005 elsewhere)."""
    return (edge_map * 2 - 1) * 10


def segments(shifts: tuple[int, ...] = (0, 0, 0, 0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Four 24x30 images, each with one horizontal 5-pixel edge segment well inside the image
    (more than the NMS's 5-pixel border band away from the border); the prediction of image i
    is its segment moved down by ``shifts[i]`` rows."""
    truth = torch.zeros(4, 1, 24, 30)
    pred = torch.zeros(4, 1, 24, 30)
    for i, (r, c) in enumerate([(8, 8), (12, 14), (15, 9), (10, 20)]):
        truth[i, 0, r, c : c + 5] = 1
        pred[i, 0, r + shifts[i], c : c + 5] = 1
    return pred, truth


def scores(task: TaskSpec, *batches: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    meter = make_meter(task)
    for pred, truth in batches:
        meter.update(pred, truth)
    return meter.compute()


def test_f_measure_and_thresholds_by_hand():
    # P = 3/4, R = 3/6: F = 2 * 0.75 * 0.5 / 1.25 = 0.6; nothing predicted: F = 0
    assert edges.f_measure(3, 4, 3, 6) == pytest.approx(0.6)
    assert edges.f_measure(0, 0, 0, 6) == 0.0
    assert edges.thresholds(3).tolist() == [0.25, 0.5, 0.75]


def test_perfect_prediction_scores_100():
    """Each map has 5 edge pixels: with at most 6 pixels the matcher connects every outlier
    node to every other (its random outlier graph has degree 6), so the exact assignment is
    found and a perfect prediction must score exactly 100 whatever the seed."""
    pred, truth = segments()
    out = scores(spec(), (logits(pred), truth))
    assert out["odsf"] == 100.0 and out["oisf"] == 100.0
    assert out["loss"] < 1e-3  # the study's loss is still there, beside the new metrics


def test_shift_beyond_the_tolerance_is_unmatched_and_within_it_matched():
    """Tolerance = distance x diagonal: 0.011 x sqrt(24² + 30²) = 0.42 px, so a 2-row shift in
    two of the four images leaves 10 of 20 predicted and 10 of 20 true pixels matched:
    P = R = 1/2 and odsF = 50 (oisF too: each shifted image scores 0 at every threshold and
    adds its counts at the first, 0 of 5 predicted and 0 of 5 true pixels matched).
    With 0.06 of the diagonal (2.3 px) the same shift is matched and scores 100."""
    pred, truth = segments((2, 0, 2, 0))
    # three thresholds 0.25, 0.5, 0.75: after the NMS's smoothing (see the next test) a line
    # of σ ≈ 1 is 5 pixels at 0.25 and gone above 0.5, so no threshold adds stray pixels
    out = scores(spec(0.011, thresholds=3), (logits(pred), truth))
    assert out["odsf"] == pytest.approx(50.0) and out["oisf"] == pytest.approx(50.0)
    loose = scores(spec(0.06, thresholds=3), (logits(pred), truth))
    assert loose["odsf"] == 100.0 and loose["oisf"] == 100.0


def test_blank_prediction_scores_0_and_no_ground_truth_is_undefined():
    _, truth = segments()
    blank = scores(spec(), (torch.full_like(truth, -10.0), truth))
    assert blank["odsf"] == 0.0 and blank["oisf"] == 0.0
    nothing = torch.zeros_like(truth)
    undefined = scores(spec(), (logits(truth), nothing))
    assert np.isnan(undefined["odsf"]) and np.isnan(undefined["oisf"])


def test_ods_and_ois_from_counts_by_hand():
    """Pooling of per-image counts (matched predicted, predicted, matched true, true) at two
    thresholds. Image A: (5, 10, 5, 5) then (3, 3, 3, 5); image B: (5, 5, 5, 5) then
    (0, 0, 0, 5). Summed: (10, 15, 10, 10) → P = 2/3, R = 1, F = 0.8, and (3, 3, 3, 10) →
    F = 2·0.3/1.3 = 0.46; ODS = 80. A is best at its second threshold (F 0.75 > 2/3), B at
    its first (F 1): (3 + 5, 3 + 5, 3 + 5, 5 + 5) → P = 1, R = 0.8, OIS = 1.6/1.8 = 88.9."""
    counts = edges.EdgeCounts(np.array([0.3, 0.6]), 0.011)
    counts.add_counts(np.array([[5, 3], [10, 3], [5, 3], [5, 5]]))
    counts.add_counts(np.array([[5, 0], [5, 0], [5, 0], [5, 5]]))
    assert counts.ods() == pytest.approx(80.0)
    assert counts.ois() == pytest.approx(100 * 1.6 / 1.8)
    # an image that is 0 everywhere adds its counts at the first threshold
    blank = edges.EdgeCounts(np.array([0.3, 0.6]), 0.011)
    blank.add_counts(np.array([[0, 0], [4, 1], [0, 0], [5, 5]]))
    assert blank.best.tolist() == [0, 4, 0, 5] and blank.ois() == 0.0


def test_streaming_pools_counts_and_does_not_depend_on_batching():
    pred, truth = segments((2, 0, 0, 0))
    whole = scores(spec(), (logits(pred), truth))
    split = scores(spec(), (logits(pred[:1]), truth[:1]), (logits(pred[1:]), truth[1:]))
    assert whole == split
    assert whole["odsf"] == pytest.approx(75.0)  # 15 of 20 matched both ways


def test_unlabelled_pixels_count_as_neither_edge_nor_prediction():
    pred, truth = segments()
    target = truth.clone()
    target[1, 0] = 255  # image 1 entirely unlabelled: its predicted edge must not count
    out = scores(spec(), (logits(pred), target))
    assert out["odsf"] == 100.0


def test_matcher_seed_makes_large_maps_repeat():
    """On seven 64-pixel lines (448 pixels) the matcher's random outlier graph (degree 6)
    misses about e^-6 of the pairs, ~1 per call, differently each call (measured unseeded:
    448, 447, 448, 446, 445, 447 matched). The library seeds it from the clock; fmtlbench
    reseeds it before every image, so the same input scores the same every time (six equal
    results by chance without the seed: about 0.4 %)."""
    truth = torch.zeros(1, 1, 64, 80)
    for row in range(8, 57, 8):
        truth[0, 0, row, 8:72] = 1
    runs = [scores(spec(), (logits(truth), truth))["odsf"] for _ in range(6)]
    assert len(set(runs)) == 1, runs
    assert 97.0 <= runs[0] < 100.0  # the line ends lost in the NMS and ~1 unlucky pair
    assert edges.seed_matcher()


def test_no_odsf_without_thresholds_or_matching_distance():
    pred, truth = segments()
    assert set(scores(spec(thresholds=0), (logits(pred), truth))) == {"loss"}
    plain = TaskSpec("edge", channels=1, pos_weight=0.8, odsf_thresholds=9)
    assert set(scores(plain, (logits(pred), truth))) == {"loss"}


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/NYUDv2-sample is absent")
@pytest.mark.parametrize("frame", ["000433", "000464"])
def test_real_frames_against_their_own_ground_truth(frame):
    """A perfect prediction of a real NYUD edge map scores >= 97, not 100, for three reasons
    of the protocol, none of them a matching error: (1) the NMS smooths the map and keeps one
    ridge where two ground-truth edges run closer than about 2 px (frequent in 000464's
    cluttered shelves), so one of the two is unmatched; (2) the NMS attenuates the 5-pixel
    band along the border; (3) the matcher's random outlier graph loses about e^-6 = 0.25 % of
    pairs. Without NMS the same frames score 99.8-99.9 (measured: only reason 3 remains); with it
    99.2 (000433) and 97.75 (000464)."""
    edge = np.array(Image.open(REAL / "edge" / f"{frame}.png")) > 0
    truth = torch.from_numpy(edge.astype(np.float32))[None, None]
    out = scores(spec(0.011), (logits(truth), truth))
    assert 97.0 <= out["odsf"] < 100.0 and out["oisf"] >= out["odsf"]


# --------------------------------------------------------------------------- primary choice
def test_primary_choice_through_one_function():
    assert primary_metric("edge") == ("loss", True)
    assert primary_metric("edge", {"edge": "odsf"}) == ("odsf", False)
    assert primary_metric("semseg", {"edge": "odsf"}) == ("miou", False)
    with pytest.raises(ConfigError, match="use loss, odsf"):
        primary_metric("edge", {"edge": "ap"})
    assert TaskSpec("edge", channels=1, chosen_primary="odsf").primary == ("odsf", False)


def test_config_validates_the_metric_settings():
    config = build_config(None, [parse_assignment("training.metrics.primary.edge=odsf")])
    assert config.training.metrics.apply(spec()).primary == ("odsf", False)
    assert build_config().training.metrics.primary == {}  # published numbers: loss stays
    for bad, message in [
        ("training.metrics.primary.depth=odsf", "cannot use 'odsf'"),
        ("training.metrics.primary.albedo=x", "unknown task"),
        ("training.metrics.edge_thresholds=-1", "edge_thresholds"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build_config(None, [parse_assignment(bad)])
    with pytest.raises(ConfigError, match="needs edge_thresholds > 0"):
        build_config(
            None,
            [
                parse_assignment("training.metrics.primary.edge=odsf"),
                parse_assignment("training.metrics.edge_thresholds=0"),
            ],
        )


def test_leaderboard_record_ranks_by_the_primary_the_run_chose():
    """Two real MLflow runs with the same metrics: the one logged with
    ``training.metrics.primary.edge=odsf`` is read with odsF (higher is better) as its edge
    primary, the other with the loss."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from fmtlbench.leaderboard import collect
    from fmtlbench.metric_keys import TaskMetric

    client = MlflowClient()
    exp = client.create_experiment(f"odsf-{uuid.uuid4().hex}")
    values = {"G/nyudv2/edge/loss": 0.2, "G/nyudv2/edge/odsf": 61.0, "G/nyudv2/edge/oisf": 63.0}
    records = {}
    for chosen in ("odsf", None):
        run_id = client.create_run(exp, tags={"algorithm": "fedavg"}).info.run_id
        params = [Param("training.metrics.primary.edge", chosen)] if chosen else []
        metrics = [Metric(k, v, 0, 1) for k, v in values.items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id)
        records[chosen] = collect.to_record(client, client.get_run(run_id), "m", history=False)
    odsf, loss = (
        TaskMetric("G", "nyudv2", "edge", "odsf"),
        TaskMetric("G", "nyudv2", "edge", "loss"),
    )
    assert records["odsf"].final == {odsf: 61.0} and records["odsf"].lower == {odsf: False}
    assert records[None].final == {loss: 0.2} and records[None].lower == {loss: True}


# --------------------------------------------------------------------------- end to end
class Messages:
    """A reporter that keeps the lines a run shows the person watching (nothing else)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        pass

    def client_done(self, client: int, losses: object) -> None:
        pass

    def round_finished(self, round: int, metrics: object) -> None:
        pass


def tiny_run(tmp_path, metrics: dict, reporter: Messages | None = None, **training: object):
    """A tracked run (tiny conv pyramid, 2 clients, 16x20, one round unless ``training`` says
    otherwise) with ``metrics`` as its ``training.metrics``; returns the outcome and the run's
    MLflow metrics."""
    from conftest import tiny_overrides
    from mlflow.tracking import MlflowClient
    from pyramid import TinyPyramid

    from fmtlbench.registry import build_registry
    from fmtlbench.runner import execute

    registry = build_registry()
    registry.add("backbone", TinyPyramid, "tests/test_edges.py")
    twin = {"twin_train": 8, "twin_test": 4, "twin_height": 32, "twin_width": 40}
    over = tiny_overrides(
        tmp_path,
        backbone={"name": TinyPyramid.name},
        arch={"name": "md", "params": {"widths": [8, 8, 8, 8, 8], "convs": 1}},
        clients=2,
        energy={"enabled": False},
        data={"datasets": {"nyudv2": twin}},
        training={
            "rounds": 1,
            "eval_initial": False,
            "resolution": {"default": [16, 20]},
            "eval_resolution": {"default": [16, 20]},
            "metrics": metrics,
            **training,
        },
    )
    outcome = execute(build_config(None, over), reporter=reporter, registry=registry)
    return outcome, MlflowClient().get_run(outcome.run_id).data.metrics


def test_tiny_run_logs_odsf_and_oisf_and_can_rank_by_odsf(tmp_path):
    """With odsF chosen as the edge primary, MLflow holds odsF/oisF summaries and per-client
    values, the loss beside them."""
    outcome, metrics = tiny_run(tmp_path, {"primary": {"edge": "odsf"}})
    for key in ("G/nyudv2/edge/odsf", "G/nyudv2/edge/oisf", "P/nyudv2/edge/odsf"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert "client1/G/edge/oisf" in metrics and "G/nyudv2/edge/loss" in metrics
    assert outcome.federation.datasets["nyudv2"].tasks["edge"].primary == ("odsf", False)


def test_odsf_waits_for_the_last_evaluation_unless_asked_at_every_one(tmp_path):
    """By default odsF/oisF cost one matching pass only at the last evaluation (the one the
    leaderboard reads); the loss is logged at every evaluation; ``edge_at='every'`` and odsF
    as the primary compute them every time."""
    from mlflow.tracking import MlflowClient

    def steps(metrics: dict, name: str, **training: object) -> list[int]:
        outcome, _ = tiny_run(tmp_path / name, metrics, rounds=2, eval_initial=True, **training)
        history = MlflowClient().get_metric_history(outcome.run_id, "G/nyudv2/edge/odsf")
        loss = MlflowClient().get_metric_history(outcome.run_id, "G/nyudv2/edge/loss")
        assert sorted(m.step for m in loss) == [0, 1, 2], name
        return sorted(m.step for m in history)

    assert steps({}, "final") == [2]
    assert steps({"edge_at": "every"}, "every") == [0, 1, 2]
    assert steps({"primary": {"edge": "odsf"}}, "primary") == [0, 1, 2]


def hide_library(monkeypatch) -> None:
    """Make ``import pyEdgeEval...`` fail as on a machine without it (undone by the fixture)."""
    for name in ("pyEdgeEval", "pyEdgeEval.common", "pyEdgeEval.common.binary_label"):
        monkeypatch.setitem(sys.modules, name, None)
    edges.library.cache_clear()


def test_missing_library_skips_odsf_with_one_line(monkeypatch):
    """With pyEdgeEval hidden from the import system the edge loss is still computed, odsF is
    left out with one line of explanation, and asking for odsF as the primary is refused by
    the pre-flight of a run and of a sweep."""
    from fmtlbench.preflight import check_all, check_metric_libraries
    from fmtlbench.registry import build_registry

    hide_library(monkeypatch)
    try:
        assert not edges.available()
        pred, truth = segments()
        assert set(scores(spec(), (logits(pred), truth))) == {"loss"}
        assert "\n" not in edges.missing_message() and "fmtlbench[edges]" in edges.missing_message()
        config = build_config(None, [parse_assignment("training.metrics.primary.edge=odsf")])
        with pytest.raises(ConfigError, match="needs pyEdgeEval"):
            check_metric_libraries(config)
        with pytest.raises(ConfigError, match="needs pyEdgeEval"):
            check_all([config], build_registry())
        check_metric_libraries(build_config())  # odsF only logged: not an error
    finally:
        monkeypatch.undo()
        edges.library.cache_clear()
    assert edges.available()


def test_run_without_the_library_says_so_once_and_logs_the_loss(tmp_path, monkeypatch):
    """A whole tracked run on a machine without pyEdgeEval: it finishes, shows exactly one
    line about the skipped scores, and logs the edge loss but no odsF/oisF."""
    hide_library(monkeypatch)
    try:
        shown = Messages()
        _, metrics = tiny_run(tmp_path, {}, shown)
    finally:
        monkeypatch.undo()
        edges.library.cache_clear()
    skipped = [line for line in shown.lines if "odsF" in line]
    assert skipped == [edges.missing_message()], shown.lines
    assert "G/nyudv2/edge/loss" in metrics
    assert not [key for key in metrics if key.endswith(("/odsf", "/oisf"))]
