"""Hostile method names from a leaderboard CSV: formula-safe CSV/Markdown, a FINISHED run."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import mlflow

from fmtlbench.leaderboard import cells
from fmtlbench.leaderboard.pipeline import Request, run

HOSTILE = (
    '=HYPERLINK("http://evil.example","x")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "../../escape",
    "..",
)
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?[\d.,]+(e[+-]?\d+)?( ± [\d.,]+(e[+-]?\d+)?)?", re.IGNORECASE)


def _csv(tmp_path: Path, methods: tuple[str, ...] = HOSTILE) -> Path:
    lines = ["method,setting,dataset,task,metric,client,value"]
    for i, method in enumerate(("local", *methods)):
        quoted = '"' + method.replace('"', '""') + '"'
        for c in (0, 1):
            lines.append(f"{quoted},G,nyudv2,semseg,miou,{c},{40 + i + 5 * c}")
            lines.append(f"{quoted},G,nyudv2,depth,rmse,{c},{0.5 - 0.01 * i}")
    path = tmp_path / "hostile.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _unsafe(cell: str) -> bool:
    """A cell a spreadsheet would evaluate: trigger first, and not a plain number."""
    return len(cell) > 1 and cell.startswith(TRIGGERS) and not NUMBER.fullmatch(cell)


def test_cell_rule_by_hand():
    assert cells.text("=1+1") == "'=1+1" and cells.text("@x") == "'@x"
    assert cells.text("\rx") == "'\rx" and cells.text("\tx") == "'\tx"
    assert cells.text("-7.50") == "-7.50" and cells.text("+1.20 ± 0.30") == "+1.20 ± 0.30"
    assert cells.text("-") == "-" and cells.text("Local") == "Local" and cells.text(3.5) == 3.5
    assert cells.segment("../../x") == ".._.._x" and cells.segment("..") == "__"
    assert cells.segment("a/b") == "a_b" and len(cells.segment("x" * 999)) == cells.MAX_NAME


def test_hostile_method_names_are_escaped_and_the_run_finishes(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]  # the session's store: already created
    outcome = run(Request(csv=_csv(tmp_path), out=tmp_path / "out", experiment="hostile"))
    run_info = mlflow.MlflowClient(uri).get_run(outcome.run_id)
    assert run_info.info.status == "FINISHED"
    logged = set(run_info.data.metrics)
    assert "delta_G/.._.._escape" in logged and "delta_G/__" in logged and len(logged) == 7
    csvs = sorted((tmp_path / "out").glob("*.csv"))
    assert {"metrics.csv", "runs.csv", "blocks_G.csv", "wilcoxon_G.csv"} <= {p.name for p in csvs}
    seen = set()
    for path in csvs:
        with path.open(newline="") as handle:
            for row in csv.reader(handle):
                bad = [c for c in row if _unsafe(c)]
                assert not bad, f"{path.name}: {bad}"
                seen.update(row)
    assert "'" + HOSTILE[0] in seen and "'-2+3" in seen
    assert "../../escape" in seen  # not a formula: kept verbatim in the cells
    for path in (tmp_path / "out").glob("*.md"):
        for line in path.read_text().splitlines():
            if line.startswith("| "):
                row = [c.strip(" ") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
                assert not [c for c in row if _unsafe(c)], f"{path.name}: {line}"
    delta = (tmp_path / "out" / "delta.md").read_text()
    assert "| '@SUM(1+1) |" in delta and "| '-2+3 |" in delta
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(outcome.run_id)}
    assert {"metrics.csv", "summary.md", "delta.md"} <= artifacts


def test_an_all_dots_title_stays_inside_the_leaderboard_folder(tmp_path, monkeypatch):
    source = _csv(tmp_path, ("a", "b"))
    odd = tmp_path / "...csv"  # title ".."
    odd.write_bytes(source.read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outcome = run(Request(csv=odd, log=False))
    assert outcome.out.resolve().parent == (work / "leaderboard").resolve()
