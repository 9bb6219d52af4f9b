"""The leaderboard's tables as pandas DataFrames: numbers for CSV, strings for display.

Per-task metrics are mean ± std (population std, as in the run summaries) over clients, pooled
over seeds when there are several; Δ% is mean ± std over seeds. Costs are means over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import pandas as pd

from fmtlbench.leaderboard import cells
from fmtlbench.leaderboard.board import Board, keys_of
from fmtlbench.leaderboard.targets import per_round, totals
from fmtlbench.metric_keys import SETTINGS, TaskMetric, Traffic, client_label, traffic_total
from fmtlbench.metric_keys import time as time_key
from fmtlbench.tasks import display_scale, kind_of, known_tasks


def scale_note() -> str:
    """The sentence that tells a reader of the tables which metrics are scaled for display
    (from the installed task kinds' ``display_scale``)."""
    scaled = [
        (task, metric, factor)
        for task in known_tasks()
        for metric, factor in kind_of(task).display_scale.items()
    ]
    return "; ".join(
        f"{' and '.join(f'{t} {m}' for t, m, v in scaled if v == factor)} shown ×{factor:g}"
        for factor in sorted({v for _, _, v in scaled})
    )


#: Hit attribute -> column name in the targets table.
HIT_COLUMNS = {"round": "round", "bytes": "bytes", "seconds": "seconds", "kwh": "kWh",
               "co2_kg": "kg CO2e"}  # fmt: skip


def _stats(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, population std, count) of the finite values; nan when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return statistics.fmean(finite), statistics.pstdev(finite), len(finite)


def _by_method(board: Board) -> dict[str, list]:
    groups: dict[str, list] = {m: [] for m in board.methods}
    for result in board.results:
        groups[result.record.method].append(result)
    return groups


def metrics_table(board: Board) -> pd.DataFrame:
    """Δ_G, Δ_P and every task metric per method (numbers)."""
    keys = keys_of([r.record for r in board.results])
    rows = {}
    for method, results in _by_method(board).items():
        row: dict[str, float] = {"runs": len(results)}
        for setting in SETTINGS:
            mean, std, _ = _stats(r.final.get(setting) for r in results)
            row[f"delta_{setting} mean"], row[f"delta_{setting} std"] = mean, std
        for key in keys:
            pooled = [v for r in results for (_, k), v in r.record.clients.items() if k == key]
            if not pooled:  # only client means known (published tables)
                pooled = [r.record.final[key] for r in results if key in r.record.final]
            row[f"{key} mean"], row[f"{key} std"], _ = _stats(pooled)
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def cost_table(board: Board) -> pd.DataFrame:
    """Communication, time and energy per method (means over seeds)."""
    rows = {}
    for method, results in _by_method(board).items():
        runs = [totals(r.record.history) for r in results]
        hist = [r.record.history for r in results]
        rounds = [
            max((s for s in h.get(traffic_total("up"), {}) if s >= 1), default=None) for h in hist
        ]
        rows[method] = {
            "runs": len(results),
            "rounds": _stats(rounds)[0],
            "up bytes/round": _stats(per_round(h, traffic_total("up")) for h in hist)[0],
            "down bytes/round": _stats(per_round(h, traffic_total("down")) for h in hist)[0],
            "total bytes": _stats(t["bytes"] for t in runs)[0],
            "train s": _stats(_total(h, time_key("train")) for h in hist)[0],
            "aggregate s": _stats(_total(h, time_key("aggregate")) for h in hist)[0],
            "eval s": _stats(_total(h, time_key("eval")) for h in hist)[0],
            "kWh": _stats(t["kwh"] for t in runs)[0],
            "kg CO2e": _stats(t["co2_kg"] for t in runs)[0],
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def _total(history, name: str) -> float | None:
    values = history.get(name)
    return sum(values.values()) if values else None


def targets_table(board: Board) -> pd.DataFrame:
    """Per method, setting and target: how many runs reached it, and the mean costs of those
    that did (exact per-run numbers are in ``runs_table``)."""
    rows = []
    for method, results in _by_method(board).items():
        for setting in SETTINGS:
            for target in board.options.targets:
                hits = [r.hits.get((setting, target)) for r in results]
                reached = [h for h in hits if h is not None]
                row = {"method": method, "setting": setting, "target %": target}
                row["reached"] = f"{len(reached)}/{len(results)}"
                for cost, name in HIT_COLUMNS.items():
                    row[name] = _stats(getattr(h, cost) for h in reached)[0]
                rows.append(row)
    return pd.DataFrame(rows)


def runs_table(board: Board) -> pd.DataFrame:
    """One row per run: its reference, final Δ% and exact time-to-target figures."""
    rows = []
    for r in board.results:
        row = {
            "method": r.record.method,
            "seed": r.record.seed,
            "run": r.record.source,
            "reference": r.reference.source if r.reference else "",
        }
        for setting in SETTINGS:
            row[f"delta_{setting}"] = r.final.get(setting)
            for target in board.options.targets:
                hit = r.hits.get((setting, target))
                for cost in ("round", "bytes", "seconds", "kwh", "co2_kg"):
                    row[f"{setting} {target:g}% {cost}"] = getattr(hit, cost) if hit else None
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(board: Board) -> pd.DataFrame:
    """Δ% per evaluated round of every run (long format)."""
    rows = [
        {"method": r.record.method, "seed": r.record.seed, "run": r.record.source,
         "setting": setting, "round": rnd, "delta": value}
        for r in board.results
        for setting, curve in r.curve.items()
        for rnd, value in curve.items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "seed", "run", "setting", "round", "delta"])


def traffic_table(board: Board) -> pd.DataFrame:
    """Bytes per client, direction and parameter group in the last round (mean over seeds)."""
    pooled: dict[tuple[str, str, str, str], list[float]] = {}
    for r in board.results:
        for name, value in r.record.last_round.items():
            key = Traffic.read(name)
            if key is None:
                continue
            cell = (r.record.method, client_label(key.client), key.direction, key.group)
            pooled.setdefault(cell, []).append(value)
    rows = [
        {"method": m, "client": c, "direction": d, "group": g, "bytes": statistics.fmean(v)}
        for (m, c, d, g), v in sorted(pooled.items())
    ]
    return pd.DataFrame(rows, columns=["method", "client", "direction", "group", "bytes"])


# --------------------------------------------------------------------------- display
def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1e7:
        return f"{value:.3e}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def _column(key: TaskMetric, datasets: int) -> str:
    scale = display_scale(key.task, key.metric)
    name = key.label if datasets > 1 else f"{key.task} {key.metric}"
    return name + (f"×{scale:g}" if scale != 1.0 else "")


def display_delta(table: pd.DataFrame) -> pd.DataFrame:
    """The Δ% table: Δ_G and Δ_P per method, mean ± std over seeds."""
    out = pd.DataFrame(index=table.index)
    out["runs"] = table["runs"].astype(int).astype(str)
    for setting in SETTINGS:
        mean, std = table[f"delta_{setting} mean"], table[f"delta_{setting} std"]
        out[f"Δ_{setting} %"] = [
            "–" if math.isnan(m) else f"{m:+.2f}" + (f" ± {s:.2f}" if n > 1 else "")
            for m, s, n in zip(mean, std, table["runs"], strict=True)
        ]
    return out


def display_metrics(table: pd.DataFrame, keys: list[TaskMetric], setting: str) -> pd.DataFrame:
    """The task metrics of one setting as ``mean ± std`` strings, scaled by the task kinds'
    ``display_scale`` (depth RMSE and edge loss x 100, as the study prints them)."""
    keys = [k for k in keys if k.setting == setting]
    datasets = len({k.dataset for k in keys})
    out = pd.DataFrame(index=table.index)
    for key in keys:
        scale = display_scale(key.task, key.metric)
        mean, std = table[f"{key} mean"] * scale, table[f"{key} std"] * scale
        out[_column(key, datasets)] = [
            f"{_fmt(m)} ± {_fmt(s, 2)}" if not math.isnan(m) else "–"
            for m, s in zip(mean, std, strict=True)
        ]
    return out


def display_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Every number of ``table`` as a short string (bytes in MB)."""
    out = table.copy().astype(object)
    for column in table.columns:
        scale = 1e-6 if "bytes" in column else 1.0
        out[column] = [
            v if isinstance(v, str) else _fmt(v * scale if v is not None else None)
            for v in table[column]
        ]
    return out.rename(columns=lambda c: c.replace("bytes", "MB"))


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index included as the first column)."""
    frame = table.reset_index() if table.index.name else table
    header = [_cell(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    """One Markdown table cell: formula-safe, pipes escaped, line breaks folded into spaces."""
    text = str(cells.text(str(value)))
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
