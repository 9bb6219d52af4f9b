"""Writing, printing and logging a leaderboard.

Every table goes out as CSV (numbers) and Markdown (formatted), every figure as PNG, and a
``summary.md`` collects the tables, the test results, the paired unit and the notes in one
readable page. The same folder is logged as the artifacts of a leaderboard MLflow run, so the
whole leaderboard can be browsed in the MLflow UI next to the runs it ranks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from fmtlbench.leaderboard import cells, plots, tables
from fmtlbench.leaderboard.board import Board, keys_of
from fmtlbench.leaderboard.collect import KIND_TAG, LEADERBOARD_KIND
from fmtlbench.metric_keys import SETTINGS, method_delta


def _curves_by_method(board: Board, setting: str) -> dict[str, list[dict[int, float]]]:
    out: dict[str, list[dict[int, float]]] = {m: [] for m in board.methods}
    for r in board.results:
        if r.curve.get(setting):
            out[r.record.method].append(r.curve[setting])
    return {m: c for m, c in out.items() if c}


def _stats_text(board: Board) -> str:
    lines = []
    for setting, s in board.stats.items():
        lines.append(f"### {setting}-FL\n")
        if s.unit:
            lines.append(f"- {s.unit}")
        if s.friedman is not None:
            f = s.friedman
            ranks = ", ".join(f"{m} {v:.2f}" for m, v in f.mean_ranks.sort_values().items())
            lines.append(f"- Friedman χ² = {f.statistic:.4g}, p = {f.pvalue:.4g}")
            lines.append(f"- mean ranks (1 = best): {ranks}")
        if s.wilcoxon is not None:
            lines.append(
                "- pairwise two-sided Wilcoxon signed-rank, Bonferroni over "
                f"{len(s.wilcoxon) * (len(s.wilcoxon) - 1) // 2} pairs, p capped at 1"
            )
        lines.extend(f"- {note}" for note in s.notes)
        lines.append("")
    return "\n".join(lines)


def write(board: Board, out: Path) -> list[Path]:
    """Write every table, figure and the summary into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    keys = keys_of([r.record for r in board.results])
    metrics = tables.metrics_table(board)
    shown = {
        "delta": tables.display_delta(metrics),
        **{
            f"metrics_{s}": tables.display_metrics(metrics, keys, s)
            for s in SETTINGS
            if any(k.setting == s for k in keys)
        },
        "cost": tables.display_numbers(tables.cost_table(board)),
        "targets": tables.display_numbers(tables.targets_table(board)),
    }
    numbers = {
        "metrics": metrics,
        "cost": tables.cost_table(board),
        "targets": tables.targets_table(board),
        "runs": tables.runs_table(board),
        "curves": tables.curves_table(board),
        "traffic": tables.traffic_table(board),
    }
    files = []
    for name, frame in numbers.items():
        path = out / f"{name}.csv"
        cells.frame(frame).to_csv(path, index=frame.index.name is not None)
        files.append(path)
    for name, frame in shown.items():
        files.append(out / f"{name}.md")
        files[-1].write_text(tables.markdown(frame))
    summary: dict[str, dict] = {}
    for setting, s in board.stats.items():
        if s.values.empty:
            continue
        cells.frame(s.values).to_csv(out / f"blocks_{setting}.csv")
        files.append(out / f"blocks_{setting}.csv")
        entry: dict = {"unit": s.unit, "blocks": len(s.values), "notes": s.notes}
        if s.friedman is not None:
            f = s.friedman
            cells.frame(f.nemenyi).to_csv(out / f"nemenyi_{setting}.csv")
            entry.update(friedman_statistic=f.statistic, friedman_p=f.pvalue,
                         mean_ranks=f.mean_ranks.to_dict())  # fmt: skip
            fig = plots.cd_diagram(
                f, len(s.matrix), board.options.alpha, f"{board.title} — {setting}-FL", s.unit
            )
            files += [out / f"nemenyi_{setting}.csv", plots.save(fig, out / f"cd_{setting}.png")]
        if s.wilcoxon is not None:
            cells.frame(s.wilcoxon).to_csv(out / f"wilcoxon_{setting}.csv")
            cells.frame(s.wilcoxon_raw).to_csv(out / f"wilcoxon_raw_{setting}.csv")
            fig = plots.pvalue_heatmap(
                s.wilcoxon,
                f"{board.title} — {setting}-FL: Wilcoxon, Bonferroni-adjusted p",
                s.unit,
                board.options.alpha,
            )
            files += [out / f"wilcoxon_{setting}.csv", out / f"wilcoxon_raw_{setting}.csv"]
            files.append(plots.save(fig, out / f"wilcoxon_{setting}.png"))
        summary[setting] = entry
    for setting in SETTINGS:
        by_method = _curves_by_method(board, setting)
        if by_method:
            fig = plots.delta_curves(
                by_method, board.options.targets, f"{board.title} — Δ_{setting} per round"
            )
            files.append(plots.save(fig, out / f"delta_curves_{setting}.png"))
    (out / "stats.json").write_text(json.dumps(summary, indent=2, default=float))
    files.append(out / "stats.json")
    text = [
        f"# Leaderboard: {board.title}\n",
        f"Δ% reference: {board.reference_rule}. Task weights: "
        f"{board.options.weights or 'equal'}. Display scale: {tables.scale_note()}.\n",
        "Reference runs used:\n",
        "\n".join(f"- {cells.text(used)}" for used in board.references) or "none",
        "",
        "## Δ% (mean ± std over seeds)\n",
        tables.markdown(shown["delta"]),
        *(
            f"## {s}-FL task metrics (mean ± std over clients, pooled over seeds)\n\n"
            + tables.markdown(shown[f"metrics_{s}"])
            for s in SETTINGS
            if f"metrics_{s}" in shown
        ),
        "## Communication, time, energy (means over seeds)\n",
        tables.markdown(shown["cost"]),
        "## Time to target\n",
        tables.markdown(shown["targets"]),
        "## Statistics\n",
        _stats_text(board),
        "## Notes\n",
        "\n".join(f"- {n}" for n in board.notes) or "none",
    ]
    (out / "summary.md").write_text("\n".join(text) + "\n")
    files.append(out / "summary.md")
    return files


def _rich(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    frame = frame.reset_index() if frame.index.name else frame
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    return table


def show(board: Board, console: Console, out: Path) -> None:
    """The terminal view: the Δ% table, costs, targets, test summary, where files went."""
    keys = keys_of([r.record for r in board.results])
    metrics = tables.metrics_table(board)
    console.print(_rich(tables.display_delta(metrics), f"{board.title}: Δ% vs reference"))
    for setting in SETTINGS:
        if any(k.setting == setting for k in keys):
            shown = tables.display_metrics(metrics, keys, setting)
            console.print(_rich(shown, f"{setting}-FL task metrics (mean ± std over clients)"))
    cost = tables.display_numbers(tables.cost_table(board))
    middle = list(cost.columns).index("train s")
    console.print(_rich(cost.iloc[:, :middle], "communication (MB)"))
    console.print(_rich(cost.iloc[:, middle:], "wall time (s) and energy"))
    console.print(_rich(tables.display_numbers(tables.targets_table(board)), "time to target"))
    console.print(f"Δ% reference: {board.reference_rule}", markup=False)
    for used in board.references:
        console.print(f"reference run used: {used}", markup=False)
    console.print(_stats_text(board), markup=False)
    for note in board.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"files written to {out}")


def log_run(board: Board, client, exp_id: str, out: Path, params: dict[str, str]) -> str:
    """Create a leaderboard run in experiment ``exp_id`` holding ``out`` as artifacts."""
    run = client.create_run(
        exp_id,
        run_name=f"leaderboard {board.title}",
        tags={KIND_TAG: LEADERBOARD_KIND, "leaderboard.title": board.title},
    )
    run_id = run.info.run_id
    try:
        for key, value in params.items():
            client.log_param(run_id, key, str(value)[:6000])
        names = _metric_names(board.methods)
        for method, row in tables.metrics_table(board).iterrows():
            for setting in SETTINGS:
                value = row[f"delta_{setting} mean"]
                if not math.isnan(value):
                    client.log_metric(run_id, method_delta(setting, names[method]), value)
        client.log_artifacts(run_id, str(out))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _metric_names(methods: list[str]) -> dict[str, str]:
    """A distinct MLflow metric-key segment per method: characters MLflow refuses replaced,
    never a path such as ``..`` (MLflow refuses keys that normalise to another name), and
    a ``-2``-style suffix when two methods would otherwise share a key."""
    out: dict[str, str] = {}
    for method in methods:
        name = base = cells.segment(method)
        n = 1
        while name in out.values():
            n += 1
            name = f"{base}-{n}"
        out[method] = name
    return out
