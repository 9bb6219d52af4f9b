"""From records to a leaderboard: Δ% per run, time-to-target, and the rank statistics.

The statistics compare methods on paired units ("blocks"): by default one per seed x client x
task metric (SPEC section 6), the primary metric of each task, separately for G-FL and P-FL.
A block enters the tests only if every method has it; dropped blocks are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from fmtlbench.errors import ConfigError
from fmtlbench.leaderboard import curves, stats
from fmtlbench.leaderboard.records import Record, latest_per_method_seed
from fmtlbench.leaderboard.targets import Hit, time_to_target
from fmtlbench.metric_keys import SETTINGS, TaskMetric

#: Tags that must agree across the runs of one leaderboard, and the filter that fixes each.
SINGLE_VALUED = {"scenario": "--scenario", "data": "--tag data=...", "clients": "--tag clients=..."}
#: Tags shown with each reference run used.
REFERENCE_TAGS = ("algorithm", "arch", "backbone", "scenario", "data", "clients", "seed")


@dataclass
class Options:
    """What the user chose: Δ% targets, task weights, significance level."""

    targets: tuple[float, ...] = (-30.0, -10.0)
    weights: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05


@dataclass
class RunResult:
    """Δ% and time-to-target of one record against its reference."""

    record: Record
    reference: Record | None
    final: dict[str, float | None] = field(default_factory=dict)
    curve: dict[str, dict[int, float]] = field(default_factory=dict)
    hits: dict[tuple[str, float], Hit | None] = field(default_factory=dict)


@dataclass
class SettingStats:
    """The tests of one setting (G or P), or why they could not be computed."""

    setting: str
    values: pd.DataFrame
    matrix: pd.DataFrame
    unit: str
    friedman: stats.Friedman | None = None
    wilcoxon_raw: pd.DataFrame | None = None
    wilcoxon: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Board:
    title: str
    options: Options
    reference_rule: str
    results: list[RunResult]
    stats: dict[str, SettingStats]
    notes: list[str]

    @property
    def references(self) -> list[str]:
        """Each reference run used, once, with the tags that say what it is, so the reader
        can see which Local-MD run the Δ% of every row was measured against."""
        out: dict[str, str] = {}
        for r in self.results:
            ref = r.reference
            if ref is None or ref.source in out:
                continue
            tags = ", ".join(
                f"{t}={ref.tags[t]}" for t in REFERENCE_TAGS if ref.tags.get(t) is not None
            )
            out[ref.source] = f"{ref.source} ({ref.method}{'; ' + tags if tags else ''})"
        return list(out.values())

    @property
    def methods(self) -> list[str]:
        """Methods ordered by mean final Δ_G (best first), methods without Δ last."""
        table: dict[str, list[float]] = {}
        for r in self.results:
            table.setdefault(r.record.method, [])
            if r.final.get("G") is not None:
                table[r.record.method].append(r.final["G"])
        return sorted(table, key=lambda m: -sum(table[m]) / len(table[m]) if table[m] else 1e99)


def check_consistent(records: Sequence[Record]) -> None:
    """Refuse to mix scenarios, data kinds or client counts in one leaderboard."""
    for tag, fix in SINGLE_VALUED.items():
        values = sorted({r.tags[tag] for r in records if tag in r.tags})
        if len(values) > 1:
            raise ConfigError(
                f"the runs mix {tag} values ({', '.join(values)}); one leaderboard compares "
                f"runs of one {tag}: filter with {fix}"
            )


def check_weights(records: Sequence[Record], weights: dict[str, float]) -> None:
    """Every task weight must name a task (or dataset/task) of the runs."""
    known = {n for r in records for k in r.final for n in (k.task, k.task_label)}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ConfigError(
            f"--task-weight names unknown task(s) {', '.join(unknown)}; "
            f"the runs have: {', '.join(sorted(known))}"
        )


def run_result(record: Record, reference: Record | None, options: Options) -> RunResult:
    result = RunResult(record, reference)
    if reference is None:
        return result
    for setting in SETTINGS:
        result.final[setting] = curves.final_delta(record, reference, setting, options.weights)
        curve = curves.delta_curve(record, reference, setting, options.weights)
        result.curve[setting] = curve
        for target in options.targets:
            result.hits[(setting, target)] = (
                time_to_target(curve, record.history, target) if curve else None
            )
    return result


def block_matrix(records: Sequence[Record], setting: str) -> tuple[pd.DataFrame, pd.Series, str]:
    """(values blocks x methods, lower-is-better per block, description of the unit)."""
    per_client = all(any(k.setting == setting for _, k in r.clients) for r in records)
    seeds = len({r.seed for r in records}) > 1
    cells: dict[str, dict[str, float]] = {}
    lower: dict[str, bool] = {}
    for r in records:
        items = (
            [(f"{c} {k.label}", k, v) for (c, k), v in r.clients.items() if k.setting == setting]
            if per_client
            else [(k.label, k, v) for k, v in r.final.items() if k.setting == setting]
        )
        for label, key, value in items:
            block = f"seed {r.seed} {label}" if seeds else label
            cells.setdefault(block, {})[r.method] = value
            lower[block] = r.lower[key]
    values = pd.DataFrame.from_dict(cells, orient="index").sort_index()
    parts = (["seed"] if seeds else []) + (["client"] if per_client else []) + ["task metric"]
    unit = f"{' x '.join(parts)} ({'G-FL' if setting == 'G' else 'P-FL'})"
    return values, pd.Series(lower).reindex(values.index), unit


def setting_stats(records: Sequence[Record], setting: str, alpha: float) -> SettingStats:
    values, lower, unit = block_matrix(records, setting)
    if values.empty:
        return SettingStats(setting, values, values, "", notes=[f"{setting}: no metrics"])
    notes = []
    complete = values.dropna(axis=0, how="any")
    if len(complete) < len(values):
        notes.append(
            f"{setting}: {len(values) - len(complete)} of {len(values)} blocks dropped because "
            "not every method has them"
        )
    matrix = stats.orient(complete, lower.reindex(complete.index))
    unit = f"paired unit: {unit}, {len(complete)} blocks; {stats.ORIENTATION}"
    result = SettingStats(setting, complete, matrix, unit, notes=notes)
    try:
        result.friedman = stats.friedman_nemenyi(matrix)
    except stats.NotEnoughData as exc:
        notes.append(f"{setting}: no Friedman/Nemenyi test: {exc}")
    try:
        result.wilcoxon_raw, result.wilcoxon = stats.wilcoxon_bonferroni(matrix)
    except stats.NotEnoughData as exc:
        notes.append(f"{setting}: no Wilcoxon test: {exc}")
    return result


def build(
    records: Sequence[Record],
    reference_of: Callable[[Record], Record | None],
    options: Options,
    title: str,
    reference_rule: str,
    notes: Sequence[str] = (),
) -> Board:
    """Compute everything the report shows."""
    if not records:
        raise ConfigError("no runs to put on a leaderboard")
    check_consistent(records)
    check_weights(records, options.weights)
    records, superseded = latest_per_method_seed(list(records))
    notes = [
        *notes,
        *(
            f"{r.source} ignored: a newer run of {r.method} seed {r.seed} exists"
            for r in superseded
        ),
    ]
    results = [run_result(r, reference_of(r), options) for r in records]
    for r in results:
        if r.reference is None:
            notes.append(f"{r.record.method} (seed {r.record.seed}): no reference run found")
            continue
        for setting in SETTINGS:
            _, excluded = curves.comparable_keys(r.record, r.reference, setting)
            for key, why in excluded.items():
                notes.append(f"{r.record.method} (seed {r.record.seed}): Δ% skips {key}: {why}")
    for method in sorted({r.tags["energy.method"] for r in records if "energy.method" in r.tags}):
        notes.append(f"energy measured by: {method}")
    settings = {s: setting_stats(records, s, options.alpha) for s in SETTINGS}
    for s in settings.values():
        notes.extend(s.notes)
    return Board(title, options, reference_rule, results, settings, notes)


def keys_of(records: Sequence[Record]) -> list[TaskMetric]:
    """All metric keys of the records, G before P, in a stable order."""
    keys = {k for r in records for k in r.final}
    return sorted(keys, key=lambda k: (SETTINGS.index(k.setting), str(k)))
