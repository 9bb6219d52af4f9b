"""``fmtlbench sweep``: a grid of runs from flags or a sweep file, cached, resumable.

Only click is imported here; the sweep package (config, registry, MLflow) loads when the
command runs.
"""

from __future__ import annotations

import click

#: Flags that configure the cell executor, and the ``Params`` field each one sets.
EXECUTOR_FLAGS = {
    "ray_address": ("--ray-address", "address"),
    "cpus_per_run": ("--cpus-per-run", "cpus_per_run"),
    "gpus_per_run": ("--gpus-per-run", "gpus_per_run"),
}


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _spec(source, name, profile, axes, grids):
    """The sweep file / built-in, or a spec made from the axis flags (flags extend a file)."""
    from fmtlbench.config import parse_assignment
    from fmtlbench.errors import ConfigError
    from fmtlbench.sweep.plan import grid_from_assignment
    from fmtlbench.sweep.spec import AXIS_FLAGS, SweepSpec, load_spec

    spec = load_spec(source) if source else SweepSpec(name=name or "adhoc")
    flag_grid: dict = {}
    for flag, text in axes.items():
        values = _csv(text)
        if values is None:
            continue
        if not values:
            raise ConfigError(f"--{flag} is empty; give comma-separated values or 'all'")
        flag_grid[AXIS_FLAGS[flag][0]] = [parse_assignment(f"v={v}")["v"] for v in values]
    for item in grids:
        flag_grid.update(grid_from_assignment(item))
    updates: dict = {}
    if flag_grid:
        updates["grid"] = [{**g, **flag_grid} for g in spec.grid]
    if name:
        updates["name"] = name
    if profile:
        updates["profile"] = profile
    return spec.model_copy(update=updates) if updates else spec


def _executor(name: str, options: dict):
    """The cell executor with the flags mapped onto its Params; errors name the flag."""
    from fmtlbench.data import component_params
    from fmtlbench.errors import ConfigError
    from fmtlbench.registry import load_registry

    cls = load_registry().get("executor", name)
    given = {EXECUTOR_FLAGS[k]: v for k, v in options.items() if v is not None}
    fields = getattr(cls.Params, "model_fields", {})
    for (flag, field), _ in given.items():
        if field not in fields:
            raise ConfigError(
                f"{flag} does not apply to the '{name}' executor (it runs cells one after "
                "another here); use --executor ray"
            )
    params = {field: value for (_, field), value in given.items()}
    return cls(component_params(cls, params, f"executor '{name}'"))


def _refuse_unreachable_store(executor_name: str, address: str | None, uris: set[str]) -> None:
    """A remote Ray cluster cannot write into a SQLite file or folder on this machine."""
    from fmtlbench.errors import ConfigError

    if executor_name != "ray" or not address or address in {"local", "127.0.0.1"}:
        return
    if address.startswith(("127.0.0.1:", "localhost")):
        return
    for uri in uris:
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            raise ConfigError(
                f"tracking URI '{uri}' is local to this machine but --ray-address {address} "
                "runs cells elsewhere: use an MLflow server URI (e.g. --tracking-uri "
                "http://host:5000)"
            )


def _table(cells, with_cost: bool = False) -> None:
    """The plan: one row per cell; long reasons and warnings as numbered notes below it, each
    written once however many cells share it."""
    from rich.console import Console
    from rich.table import Table

    from fmtlbench.sweep.pilot import duration

    axes = list(dict.fromkeys(k for c in cells for k in c.axes))
    table = Table(show_lines=False)
    table.add_column("#", justify="right")
    for axis in axes:
        table.add_column(axis)
    table.add_column("state")
    if with_cost:
        table.add_column("est. cost", justify="right")
    table.add_column("run / note", overflow="fold")
    notes: dict[str, int] = {}

    def note(text: str) -> str:
        return f"[{notes.setdefault(text, len(notes) + 1)}]"

    for c in cells:
        row = [str(c.index), *(str(c.axes.get(a, "")) for a in axes), c.state]
        if with_cost:
            row.append(duration(c.extra.get("cost")))
        marks = [f"invalid {note(c.invalid)}"] if c.invalid else []
        marks += [f"warning {note(c.warning)}"] if c.warning else []
        row.append(" ".join([*([c.run_id] if c.run_id else []), *marks]))
        table.add_row(*row)
    console = Console()
    console.print(table)
    for text, number in notes.items():
        console.print(f"[{number}] {text}", markup=False, highlight=False)


@click.command()
@click.argument("source", required=False)
@click.option("--list", "list_", is_flag=True, help="List the built-in sweeps and exit.")
@click.option("--name", help="Sweep name (tag fmtlbench.sweep) for a sweep made from flags.")
@click.option("--profile", help="Settings profile of every cell (cpu, paper, or a file).")
@click.option("--scenarios", help="Comma-separated scenario names, or all.")
@click.option("--algos", help="Comma-separated algorithm names, or all.")
@click.option("--archs", help="Comma-separated architectures (md,tc), or all.")
@click.option("--backbones", help="Comma-separated backbones, or all.")
@click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
@click.option("--clients", help="Comma-separated client counts (single-group scenarios).")
@click.option(
    "--grid", "grids", multiple=True, metavar="KEY=V1,V2", help="Axis over any config path."
)
@click.option(
    "--set", "set_", multiple=True, metavar="KEY=VALUE", help="Fixed override of every cell."
)
@click.option("--tracking-uri", help="MLflow tracking URI of every cell.")
@click.option("--experiment", help="MLflow experiment of every cell.")
@click.option("--dry-run", is_flag=True, help="Show the cells, their state and cost; run none.")
@click.option("--no-pilot", is_flag=True, help="With --dry-run: no cost estimate, an instant plan.")
@click.option("--status", is_flag=True, help="Show done / running / failed / pending cells.")
@click.option("--retry-failed", is_flag=True, help="Run FAILED cells again.")
@click.option("--executor", "executor_name", default="serial", show_default=True)
@click.option("--ray-address", help="Ray cluster address (ray executor) [env RAY_ADDRESS].")
@click.option("--cpus-per-run", type=float, help="CPUs per cell (ray executor).")
@click.option("--gpus-per-run", type=float, help="GPUs per cell, fractions allowed (ray).")
def sweep(
    source,
    list_,
    name,
    profile,
    grids,
    set_,
    tracking_uri,
    experiment,
    dry_run,
    no_pilot,
    status,
    retry_failed,
    executor_name,
    ray_address,
    cpus_per_run,
    gpus_per_run,
    **axes,
) -> None:
    """Run a grid of experiments: a built-in sweep (paper-table2 ...), a sweep file, or axes
    from flags. Finished cells (same cache key in MLflow) are skipped, interrupted ones resumed.
    """
    from fmtlbench.config import parse_assignment
    from fmtlbench.errors import ConfigError
    from fmtlbench.registry import load_registry
    from fmtlbench.sweep import cache, plan
    from fmtlbench.sweep.spec import builtin_names, load_spec

    if list_:
        for builtin in builtin_names():
            spec = load_spec(builtin)
            count = len(plan.combinations(spec, load_registry()))
            click.echo(f"{builtin:14} {count:4d} cells  {spec.description}")
        return
    if not source and not any(v is not None for v in axes.values()) and not grids:
        raise ConfigError("give a sweep (name or file, see --list) or axis flags such as --algos")
    spec = _spec(source, name, profile, axes, grids)
    extra = [parse_assignment(item) for item in set_]
    if tracking_uri:
        extra.append({"tracking": {"uri": tracking_uri}})
    if experiment:
        extra.append({"tracking": {"experiment": experiment}})
    registry = load_registry()
    executor = _executor(
        executor_name,
        dict(zip(EXECUTOR_FLAGS, (ray_address, cpus_per_run, gpus_per_run), strict=True)),
    )
    cells = plan.build_cells(spec, registry, extra)
    _refuse_unreachable_store(executor_name, ray_address, {c.config.tracking.uri for c in cells})
    from fmtlbench import preflight

    preflight.check_all([c.config for c in cells], registry)  # before any cell reads data

    from fmtlbench.sweep.pilot import METHOD, Pilot, duration

    pilot = Pilot() if dry_run and not no_pilot else None
    doing = "checking each and timing a pilot of each model structure" if pilot else "checking each"
    click.echo(f"sweep '{spec.name}': {len(cells)} cells; {doing} (no training) ...")
    for cell in cells:
        plan.probe(cell, registry, pilot)
    cache.lookup(cells)
    counts = {s: sum(c.state == s for c in cells) for s in dict.fromkeys(c.state for c in cells)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    warned = sum(c.warning is not None for c in cells)
    if warned:
        summary += f"; {warned} with a warning (a precondition this machine lacks, see notes)"
    if status or dry_run:
        _table(cells, with_cost=pilot is not None)
        click.echo(f"{len(cells)} cells: {summary}")
        if pilot is not None:
            costs = [c.extra["cost"] for c in cells if "cost" in c.extra and c.state != "done"]
            click.echo(
                f"estimated cost of the {len(costs)} cells still to run: {duration(sum(costs))} "
                f"on this machine, one cell at a time ({METHOD}; "
                f"{len(pilot.measured)} structures measured)"
            )
        return
    from fmtlbench import tracking
    from fmtlbench.sweep.run import run_sweep, todo

    blocked = [c for c in todo(cells, retry_failed) if c.warning]
    if blocked:
        raise ConfigError(
            f"sweep '{spec.name}': {len(blocked)} cells cannot start here, e.g. cell "
            f"{blocked[0].index} ({blocked[0].label}): {blocked[0].warning}"
        )
    # the one call site that readies the store before cells open it concurrently
    prepare = getattr(tracking, "prepare_store", None)
    if prepare is not None:
        for uri in {c.config.tracking.uri for c in cells}:
            prepare(uri)
    click.echo(f"{len(cells)} cells: {summary}")
    report = _run_with_progress(spec.name, cells, executor, retry_failed, run_sweep)
    click.echo(f"sweep '{spec.name}': {report.line()}")
    if report.failed:
        raise SystemExit(1)


def _run_with_progress(name, cells, executor, retry_failed, run_sweep):
    """Run the sweep under the live progress view; each event also printed as one line."""
    from rich.console import Console
    from rich.live import Live

    from fmtlbench.sweep.progress import Progress
    from fmtlbench.sweep.run import todo

    progress = Progress(name, [c.state for c in cells])
    progress.todo = len(todo(cells, retry_failed))
    progress.skipped = len(cells) - progress.todo
    console = Console()
    with Live(progress, console=console, refresh_per_second=1, transient=True) as live:

        def show(cell, event) -> None:
            progress.update(event.state)
            detail = f": {event.error}" if event.error else ""
            live.console.print(
                f"[{progress.elapsed:7.1f}s] cell {cell.index} {event.state} ({cell.label})"
                f"{detail}",
                markup=False,
                highlight=False,
            )

        report = run_sweep(name, cells, executor, retry_failed, on_event=show)
    console.print(progress.line(), markup=False, highlight=False)
    return report
