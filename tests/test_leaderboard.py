"""Leaderboard maths against hand-computed values and scipy / scikit-posthocs called directly."""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from click.testing import CliRunner
from matplotlib.text import Text
from PIL import Image
from scipy.stats import friedmanchisquare, wilcoxon

from fmtlbench.cli import main
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.leaderboard import board as boards
from fmtlbench.leaderboard import curves, plots, reference, stats
from fmtlbench.leaderboard.pipeline import Request, run
from fmtlbench.leaderboard.published import read_csv
from fmtlbench.leaderboard.records import Record, method_labels
from fmtlbench.leaderboard.targets import time_to_target
from fmtlbench.metric_keys import TaskMetric
from fmtlbench.tasks import primary_metric

SEMSEG, DEPTH, NORMALS = "G/nyudv2/semseg/miou", "G/nyudv2/depth/rmse", "G/nyudv2/normals/mean"


def record(method="m", seed="0", final=None, history=None, tags=None, start=0, clients=None):
    final = {TaskMetric.parse(k): v for k, v in (final or {}).items()}
    return Record(
        method=method,
        seed=seed,
        source=f"{method}-{seed}-{start}",
        tags=dict(tags or {}),
        final=final,
        clients={(c, TaskMetric.parse(k)): v for (c, k), v in (clients or {}).items()},
        lower={k: primary_metric(k.task)[1] for k in final},
        history=dict(history or {}),
        start_time=start,
    )


REF = record("local", final={SEMSEG: 50.0, DEPTH: 0.4, NORMALS: 20.0})


# --------------------------------------------------------------------------- delta-percent
def test_final_delta_by_hand_with_lower_is_better_and_weights():
    run_ = record(final={SEMSEG: 40.0, DEPTH: 0.5, NORMALS: 18.0})
    # semseg (40-50)/50 = -20 %; depth lower-better -(0.5-0.4)/0.4 = -25 %;
    # normals lower-better -(18-20)/20 = +10 %
    assert curves.final_delta(run_, REF, "G", {}) == pytest.approx((-20 - 25 + 10) / 3)
    # semseg x2, depth x0 (dataset/task beats task), normals x1: (2*-20 + 0 + 10) / 3
    weights = {"semseg": 2.0, "depth": 5.0, "nyudv2/depth": 0.0}
    assert curves.final_delta(run_, REF, "G", weights) == pytest.approx(-10.0)
    assert curves.final_delta(run_, REF, "P", {}) is None  # no P metrics at all


def test_keys_the_reference_lacks_are_left_out_and_reported():
    run_ = record(final={SEMSEG: 40.0, "G/pascal/parts/miou": 30.0})
    keys, excluded = curves.comparable_keys(run_, REF, "G")
    assert keys == [TaskMetric.parse(SEMSEG)]
    assert "not evaluated by the reference" in excluded[TaskMetric.parse("G/pascal/parts/miou")]
    assert curves.final_delta(run_, REF, "G", {}) == pytest.approx(-20.0)


HISTORY = {
    SEMSEG: {0: 10.0, 1: 35.0, 2: 45.0, 3: 48.0},
    DEPTH: {0: 0.8, 1: 0.5, 2: 0.44, 3: 0.42},
    NORMALS: {0: 40.0, 1: 25.0, 2: 21.0, 3: 21.0},
    "comm/up_bytes": {1: 100.0, 2: 100.0, 3: 100.0},
    "comm/down_bytes": {1: 300.0, 2: 200.0, 3: 200.0},
    "time/train": {1: 1.5, 2: 2.5, 3: 2.0},
    "time/aggregate": {1: 0.25, 2: 0.25, 3: 0.25},
    "time/eval": {1: 0.5, 2: 0.5, 3: 0.5},
    "energy/kwh": {1: 0.01, 2: 0.02, 3: math.nan},
}


def test_delta_curve_and_time_to_target_by_hand():
    run_ = record(final={SEMSEG: 48.0, DEPTH: 0.42, NORMALS: 21.0}, history=HISTORY)
    curve = curves.delta_curve(run_, REF, "G", {})
    # round 0: (-80 - 100 - 100)/3; 1: (-30 - 25 - 25)/3; 2: (-10 - 10 - 5)/3; 3: (-4 - 5 - 5)/3
    expected = {0: -280 / 3, 1: -80 / 3, 2: -25 / 3, 3: -14 / 3}
    assert curve == pytest.approx(expected)
    hit = time_to_target(curve, HISTORY, -30.0)
    assert hit.round == 1 and hit.bytes == 400 and hit.seconds == pytest.approx(2.25)
    assert hit.kwh == pytest.approx(0.01) and hit.co2_kg is None  # co2 never logged
    hit = time_to_target(curve, HISTORY, -10.0)
    assert (hit.round, hit.bytes, hit.seconds) == (2, 700, pytest.approx(5.5))
    assert hit.kwh == pytest.approx(0.03)
    hit = time_to_target(curve, HISTORY, -5.0)
    assert hit.round == 3 and hit.bytes == 1000 and hit.kwh is None  # round 3 not measured
    assert time_to_target(curve, HISTORY, 0.0) is None
    result = boards.run_result(run_, REF, boards.Options(targets=(-30.0, -10.0)))
    assert result.hits[("G", -10.0)].round == 2 and result.hits[("P", -10.0)] is None


# --------------------------------------------------------------------------- statistics
@pytest.fixture
def matrix() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(15, 4)) + np.array([0.0, 0.05, 0.6, 1.2])
    return pd.DataFrame(values, columns=["A", "B", "C", "D"])


def test_friedman_and_nemenyi_equal_scipy_and_scikit_posthocs(matrix):
    result = stats.friedman_nemenyi(matrix)
    statistic, pvalue = friedmanchisquare(*(matrix[c] for c in matrix.columns))
    assert (result.statistic, result.pvalue) == (statistic, pvalue)
    direct = sp.posthoc_nemenyi_friedman(matrix.to_numpy())
    np.testing.assert_array_equal(result.nemenyi.to_numpy(), direct.to_numpy())
    assert list(result.nemenyi.columns) == ["A", "B", "C", "D"]
    # mean ranks, 1 = best: in each block a method's rank is 1 + the number of methods above
    # it (no ties in continuous random data)
    for c in matrix.columns:
        better = sum(int((matrix.loc[i] > matrix.loc[i, c]).sum()) for i in matrix.index)
        assert result.mean_ranks[c] == pytest.approx(1 + better / len(matrix))
    assert result.mean_ranks.idxmin() == "D"


def test_wilcoxon_equals_scipy_with_bonferroni_capped_at_one(matrix):
    raw, adjusted = stats.wilcoxon_bonferroni(matrix)
    pairs = list(combinations(matrix.columns, 2))
    capped = 0
    for a, b in pairs:
        p = wilcoxon(matrix[a], matrix[b]).pvalue
        assert raw.loc[a, b] == raw.loc[b, a] == p
        assert adjusted.loc[a, b] == min(1.0, p * len(pairs))
        capped += p * len(pairs) > 1
    assert capped >= 1  # the cap was exercised
    assert (np.diag(adjusted) == 1.0).all() and adjusted.to_numpy().max() <= 1.0
    same = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]})
    assert stats.wilcoxon_bonferroni(same)[1].loc["x", "y"] == 1.0


def test_orientation_negates_lower_is_better_and_scales_per_block():
    values = pd.DataFrame({"a": [40.0, 0.5], "b": [60.0, 0.3]}, index=["miou", "rmse"])
    out = stats.orient(values, pd.Series({"miou": False, "rmse": True}))
    np.testing.assert_allclose(out.to_numpy(), [[0.8, 1.2], [-1.25, -0.75]])


def test_too_few_methods_is_reported_not_crashed():
    with pytest.raises(stats.NotEnoughData, match="at least 3 methods"):
        stats.friedman_nemenyi(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0]}))


def test_board_blocks_are_seed_client_task_and_tests_match_scipy():
    rng = np.random.default_rng(0)
    records, cells = [], {}
    for m, shift in (("local", 0.0), ("fedavg", 1.0), ("fedprox", 2.0)):
        for seed in ("0", "1"):
            clients = {}
            for c in ("client0", "client1"):
                clients[(c, SEMSEG)] = 40 + shift + rng.normal()
                clients[(c, DEPTH)] = 0.5 - 0.01 * shift + 0.01 * rng.normal()
            means = {
                k: np.mean([v for (_, kk), v in clients.items() if kk == k])
                for k in (SEMSEG, DEPTH)
            }
            records.append(record(m, seed, final=means, clients=clients))
            for (c, k), v in clients.items():
                cells.setdefault((seed, c, k), {})[m] = v
    built = boards.build(records, lambda r: records[0], boards.Options(), "t", "rule")
    g = built.stats["G"]
    assert g.values.shape == (8, 3)
    assert "seed x client x task metric (G-FL), 8 blocks" in g.unit
    # independent orientation: negate depth, divide each block by its mean |value|
    expected = []
    for (_, _, k), row in sorted(cells.items()):
        v = np.array([row["local"], row["fedavg"], row["fedprox"]]) * (-1 if "rmse" in k else 1)
        expected.append(v / np.abs(v).mean())
    expected = np.array(expected)
    statistic, p = friedmanchisquare(*expected.T)
    assert g.friedman.statistic == pytest.approx(statistic) and g.friedman.pvalue == pytest.approx(
        p
    )
    assert g.friedman.mean_ranks.idxmin() == "fedprox"
    assert built.methods == ["fedprox", "fedavg", "local"]


def test_blocks_missing_for_some_method_are_dropped_and_noted():
    full = {("client0", SEMSEG): 1.0, ("client1", SEMSEG): 2.0}
    records = [
        record("a", final={SEMSEG: 1.5}, clients=full),
        record("b", final={SEMSEG: 1.0}, clients={("client0", SEMSEG): 1.0}),
    ]
    built = boards.build(records, lambda r: None, boards.Options(), "t", "rule")
    assert len(built.stats["G"].values) == 1
    assert any("1 of 2 blocks dropped" in n for n in built.notes)


def test_one_leaderboard_refuses_to_mix_scenarios():
    records = [record("a", tags={"scenario": "iid1"}), record("b", tags={"scenario": "niid2"})]
    with pytest.raises(ConfigError, match="mix scenario values.*--scenario"):
        boards.build(records, lambda r: None, boards.Options(), "t", "rule")


def test_unknown_task_weight_is_an_error():
    with pytest.raises(ConfigError, match="--task-weight.*sky"):
        boards.build(
            [record(final={SEMSEG: 1.0})],
            lambda r: None,
            boards.Options(weights={"sky": 1}),
            "t",
            "r",
        )


def test_method_labels_separate_every_distinct_method():
    p = "algorithm.params."
    runs = [
        {"algorithm": "fedavg", "share": "all", "arch": "md", p + "share": "all"},
        {"algorithm": "fedavg", "share": "encoder", "arch": "md", p + "share": "encoder"},
        {"algorithm": "fedprox", "share": "all", "arch": "md", p + "mu": "0.001"},
        {"algorithm": "fedprox", "share": "all", "arch": "md", p + "mu": "0.01"},
        {"algorithm": "local", "share": "", "arch": "md"},
        {"algorithm": "local", "share": "", "arch": "tc"},
    ]
    assert method_labels(runs) == [
        "fedavg md",
        "fedavg-E md",
        "fedprox md mu=0.001",
        "fedprox md mu=0.01",
        "local md",
        "local tc",
    ]
    assert method_labels(runs[:2]) == ["fedavg", "fedavg-E"]  # nothing else varies
    # a client-side task weighting other than the study's is another method
    weighted = [{"algorithm": "fedavg"}, {"algorithm": "fedavg", "weighting": "equal"},
                {"algorithm": "fedavg", "weighting": "dwa"}]  # fmt: skip
    assert method_labels(weighted) == ["fedavg", "fedavg", "fedavg +dwa"]


# --------------------------------------------------------------------------- reference rule
def test_reference_rule():
    base = {"algorithm": "local", "arch": "md", "scenario": "iid1", "backbone": "resnet18",
            "data": "synthetic", "clients": "4"}  # fmt: skip
    pool = {
        "a": record("a", "1", tags=base, start=1),
        "b": record("b", "0", tags=base, start=0),
        "c": record("c", "0", tags={**base, "backbone": "swin-t"}),
        "d": record("d", "0", tags={**base, "data": "real"}, start=9),
        "e": record("e", "0", tags={**base, "algorithm": "fedavg"}, start=9),
        "f": record("f", "0", tags={**base, "arch": "tc"}, start=9),
        "g": record("g", "0", tags={**base, "clients": "8"}, start=5),
    }
    pool_list = list(pool.values())
    run_tags = {"algorithm": "fedavg", "arch": "md", "backbone": "resnet18", "data": "synthetic"}

    def chosen(seed: str, rule=reference.DEFAULT, **tags: str) -> str | None:
        found = reference.choose(record("x", seed, tags={**run_tags, **tags}), pool_list, rule)
        return found.method if found else None

    assert chosen("0", scenario="niid2", clients="4") == "b"  # same seed, 4 clients
    assert chosen("0", scenario="iid1", clients="8") == "g"  # iid1 K=8 case study
    assert chosen("7", scenario="niid2", clients="4") == "a"  # no same seed: newest 4-client
    # the study's convention: every backbone is measured against Local-MD-ResNet-18
    assert chosen("0", scenario="iid1", backbone="swin-t") == "b"
    assert chosen("0", scenario="iid1", backbone="convnext") == "b"
    swin = reference.ReferenceRule(backbone="swin-t")
    assert chosen("0", swin, scenario="iid1", backbone="resnet18") == "c"
    assert chosen("0", reference.ReferenceRule(backbone="convnext"), scenario="iid1") is None
    assert chosen("0", scenario="niid2", data="real") == "d"


# --------------------------------------------------------------------------- CSV and output
def _published(tmp_path: Path) -> Path:
    rows = ["method,setting,dataset,task,metric,client,value"]
    table = {
        "Local": ((40, 50), (0.5, 0.3)),
        "FedAvg": ((36, 45), (0.52, 0.32)),
        "FedProx": ((45, 54), (0.4, 0.32)),
    }
    for method, (semseg, depth) in table.items():
        for c in (0, 1):
            rows.append(f"{method},G,nyudv2,semseg,miou,{c},{semseg[c]}")
            rows.append(f"{method},G,nyudv2,depth,rmse,{c},{depth[c]}")
    path = tmp_path / "published.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_csv_leaderboard_values_files_and_figures(tmp_path):
    outcome = run(Request(csv=_published(tmp_path), out=tmp_path / "out", log=False))
    deltas = {r.record.method: r.final["G"] for r in outcome.board.results}
    # Local means 45 / 0.4. FedAvg 40.5 (-10 %), 0.42 (-5 %); FedProx 49.5 (+10 %), 0.36 (+10 %)
    assert deltas == pytest.approx({"Local": 0.0, "FedAvg": -7.5, "FedProx": 10.0})
    table = pd.read_csv(tmp_path / "out" / "metrics.csv", index_col="method")
    assert table.loc["FedAvg", "delta_G mean"] == pytest.approx(-7.5)
    assert table.loc["FedAvg", "G/nyudv2/semseg/miou std"] == pytest.approx(4.5)  # pstdev(36, 45)
    names = {p.name for p in outcome.files}
    assert {"cd_G.png", "wilcoxon_G.png", "summary.md", "delta.md", "runs.csv"} <= names
    assert "delta_curves_G.png" not in names  # published tables have no per-round history
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "paired unit: client x task metric (G-FL), 4 blocks" in summary
    weighted = run(
        Request(
            csv=_published(tmp_path),
            out=tmp_path / "w",
            log=False,
            options=boards.Options(weights={"semseg": 3.0}),
        )
    )
    fedavg = next(r for r in weighted.board.results if r.record.method == "FedAvg")
    assert fedavg.final["G"] == pytest.approx((3 * -10 - 5) / 4)


def test_figures_render_with_the_method_names(tmp_path, matrix):
    friedman = stats.friedman_nemenyi(matrix)
    adjusted = stats.wilcoxon_bonferroni(matrix)[1]
    figures = {
        "cd": plots.cd_diagram(friedman, len(matrix), 0.05, "title", "paired unit: blocks"),
        "heat": plots.pvalue_heatmap(adjusted, "title", "paired unit: blocks", 0.05),
    }
    for name, fig in figures.items():
        texts = " ".join(t.get_text() for t in fig.findobj(Text))
        assert all(m in texts for m in ("A", "B", "C", "D")) and "paired unit" in texts
        path = plots.save(fig, tmp_path / f"{name}.png")
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 5


def test_csv_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("method,setting,task,metric,value\nA,G,semseg,miou,1\n")
    with pytest.raises(DataError, match="missing column\\(s\\) dataset"):
        read_csv(bad)
    bad.write_text("method,setting,dataset,task,metric,value\nA,X,nyudv2,semseg,miou,1\n")
    with pytest.raises(DataError, match="line 2: setting must be G or P"):
        read_csv(bad)
    bad.write_text("method,setting,dataset,task,metric,value\nA,G,nyudv2,semseg,bleu,1\n")
    with pytest.raises(DataError, match="lower_is_better column"):
        read_csv(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("method,setting,dataset,task,metric,value,lower_is_better\nA,G,d,t,bleu,1,no\n")
    assert read_csv(ok)[0].lower == {TaskMetric("G", "d", "t", "bleu"): False}


def test_cli_prints_the_delta_table_and_rejects_bad_options(tmp_path):
    csv = _published(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        main, ["leaderboard", "--from-csv", str(csv), "--no-log", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "Δ% vs reference" in result.output and "FedProx" in result.output
    assert "+10.00" in result.output and "-7.50" in result.output
    for args, message in (
        (["--targets", "-30,x"], "--targets"),
        (["--task-weight", "sky=1"], "sky"),
        (["--reference", "nobody"], "--reference nobody"),
    ):
        result = runner.invoke(main, ["leaderboard", "--from-csv", str(csv), "--no-log", *args])
        assert result.exit_code == 2 and message in result.output, result.output


# --------------------------------------------------------------------------- MLflow store
def test_collect_reads_finished_runs_and_maps_clients_to_datasets():
    import json
    import uuid

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from fmtlbench.leaderboard import collect

    client = MlflowClient()  # the session's SQLite store (tests/conftest.py)
    exp = client.create_experiment(f"collect-{uuid.uuid4().hex}")
    tags = {"scenario": "niid6", "algorithm": "fedavg", "arch": "md", "seed": "0"}

    def make(tags: dict, status: str = "FINISHED") -> str:
        run_id = client.create_run(exp, tags=tags).info.run_id
        series = {
            "G/nyudv2/semseg/miou": {1: 30.0, 2: 40.0},
            "G/nyudv2/normals/mean": {2: 25.0},
            "G/pascal-context/normals/mean": {2: 20.0},
            "G/nyudv2/normals/median": {2: 1.0},  # not a primary metric: ignored
            "client0/G/semseg/miou": {2: 40.0},
            "client0/G/normals/mean": {2: 25.0},
            "client1/G/normals/mean": {2: 20.0},
            "comm/up_bytes": {1: 10.0, 2: 10.0},
            "comm/client0/up/encoder": {1: 7.0, 2: 10.0},
        }
        batch = [
            Metric(n, v, 0, step) for n, points in series.items() for step, v in points.items()
        ]
        client.log_batch(run_id, metrics=batch)
        manifest = {
            "clients": [
                {"index": 0, "dataset": "nyudv2"},
                {"index": 1, "dataset": "pascal-context"},
            ]
        }
        client.log_text(run_id, json.dumps(manifest), "manifest.json")
        client.set_terminated(run_id, status)
        return run_id

    wanted = make(tags)
    make({**tags, "algorithm": "local"}, status="FAILED")
    make({**tags, "scenario": "iid1"})
    make({**tags, collect.KIND_TAG: collect.LEADERBOARD_KIND})
    records = collect.collect(client, exp, {"scenario": "niid6"})
    assert [r.source for r in records] == [wanted]
    r = records[0]
    key = TaskMetric.parse
    assert r.final == {
        key("G/nyudv2/semseg/miou"): 40.0,
        key("G/nyudv2/normals/mean"): 25.0,
        key("G/pascal-context/normals/mean"): 20.0,
    }
    assert r.clients == {
        ("client0", key("G/nyudv2/semseg/miou")): 40.0,
        ("client0", key("G/nyudv2/normals/mean")): 25.0,
        ("client1", key("G/pascal-context/normals/mean")): 20.0,
    }
    assert r.history["G/nyudv2/semseg/miou"] == {1: 30.0, 2: 40.0}
    assert r.history["comm/up_bytes"] == {1: 10.0, 2: 10.0}
    assert r.last_round == {"comm/client0/up/encoder": 10.0}
    with pytest.raises(ConfigError, match="experiment 'nope' does not exist"):
        collect.experiment_id(client, "nope", "the store")
