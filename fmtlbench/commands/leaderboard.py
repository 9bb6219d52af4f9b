"""``fmtlbench leaderboard``: the study's tables, statistics and figures from a set of runs.

Only click is imported here; the leaderboard package (pandas, scipy, matplotlib, mlflow) is
imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import click


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    """``("k=v", ...)`` -> ``{k: v}``; a clear error naming the option otherwise."""
    from fmtlbench.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _numbers(text: str, option: str) -> tuple[float, ...]:
    from fmtlbench.errors import ConfigError

    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated numbers") from None


def _weights(items: tuple[str, ...]) -> dict[str, float]:
    from fmtlbench.errors import ConfigError

    weights = {}
    for task, value in _pairs(items, "--task-weight").items():
        (weight,) = _numbers(value, f"--task-weight {task}=")
        if weight < 0:
            raise ConfigError(f"--task-weight {task}={value}: a weight must be >= 0")
        weights[task] = weight
    return weights


def _sweep_tag(sweep: str | None) -> dict[str, str]:
    """``--sweep NAME`` as the tag filter the sweep set on each of its runs."""
    if not sweep:
        return {}
    from fmtlbench.sweep.cache import SWEEP_TAG

    return {SWEEP_TAG: sweep}


@click.command()
@click.option(
    "--scenario", help="Only runs (or --from-csv rows) of this scenario (tag/column scenario)."
)
@click.option("--experiment", default="fmtlbench", show_default=True, help="MLflow experiment.")
@click.option("--tracking-uri", help="MLflow tracking URI [env MLFLOW_TRACKING_URI].")
@click.option(
    "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only runs with this tag (repeat)."
)
@click.option(
    "--reference",
    metavar="RUN_ID|METHOD",
    help="Δ% reference: an MLflow run id (or a method name with --from-csv); it must have "
    "FINISHED and evaluated the runs' tasks on the same data kind. Default: the study's rule, "
    "Local + MD + ResNet-18 (whatever the run's backbone), same data kind, iid1 when it "
    "evaluates every task of the run, else the same scenario (same seed if available).",
)
@click.option(
    "--reference-rule",
    "rule",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the default reference rule (repeat): algorithm, arch, backbone, "
    "scenario=auto|same|iid1. E.g. --reference-rule backbone=swin-t.",
)
@click.option(
    "--from-csv",
    "csv",
    type=click.Path(path_type=Path),
    help="Re-analyse a CSV of metrics instead of MLflow runs (columns method, setting, "
    "dataset, task, metric, value; optional client, seed, lower_is_better, and the tags "
    "algorithm, share, arch, backbone, scenario, data, clients that the reference rule uses).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [leaderboard/<title>].")
@click.option(
    "--targets", default="-30,-10", show_default=True, help="Δ% targets (time-to-target)."
)
@click.option(
    "--task-weight",
    "task_weights",
    multiple=True,
    metavar="TASK=W",
    help="Weight of a task (or dataset/task) in Δ% (repeat; default equal).",
)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@click.option("--no-log", is_flag=True, help="Do not log the leaderboard as an MLflow run.")
@click.option("--sweep", help="Only the runs of this sweep (see `fmtlbench sweep`).")
def leaderboard(
    scenario: str | None,
    experiment: str,
    tracking_uri: str | None,
    tags: tuple[str, ...],
    reference: str | None,
    rule: tuple[str, ...],
    csv: Path | None,
    out: Path | None,
    targets: str,
    task_weights: tuple[str, ...],
    alpha: float,
    no_log: bool,
    sweep: str | None,
) -> None:
    """Δ% table, rank statistics and figures from MLflow runs (or a CSV of metrics).

    Prints the Δ% and per-task table, communication/time/energy and time-to-target tables;
    writes CSV, Markdown and PNG files (critical-difference diagram, Wilcoxon p-value
    heatmap, Δ%-per-round curves) and logs them as artifacts of a leaderboard MLflow run.
    """
    from fmtlbench.errors import ConfigError
    from fmtlbench.leaderboard.board import Options
    from fmtlbench.leaderboard.pipeline import Request, run
    from fmtlbench.leaderboard.reference import ReferenceRule

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: must be between 0 and 1")
    if rule and reference:
        raise ConfigError("--reference-rule and --reference exclude each other; give one")
    request = Request(
        scenario=scenario,
        experiment=experiment,
        tracking_uri=tracking_uri,
        tags=_pairs(tags, "--tag") | _sweep_tag(sweep),
        reference=reference,
        rule=ReferenceRule.parse(_pairs(rule, "--reference-rule")),
        csv=csv,
        out=out,
        options=Options(_numbers(targets, "--targets"), _weights(task_weights), alpha),
        log=not no_log,
    )
    run(request)
