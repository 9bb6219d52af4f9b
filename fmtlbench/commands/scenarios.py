"""``fmtlbench scenarios``: list the data scenarios and show who holds which tasks and data.

``show`` materialises the scenario exactly as a run would (same datasets, partitioner, seed and
client count), so the table, the figure and the manifest hash it prints are those a run with
the same settings logs. Only click is imported here at module level; the rest is imported
inside the commands so that ``fmtlbench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group()
def scenarios() -> None:
    """Data scenarios: list them, show their clients, tasks and sizes."""


def _groups_text(spec: Any) -> str:
    parts = []
    for group in spec.groups:
        tasks = group.tasks if isinstance(group.tasks, str) else ", ".join(group.tasks)
        shares = "" if group.shares == "equal" else f" shares {group.shares}"
        parts.append(f"{group.count}x {group.dataset} ({tasks}){shares}")
    rule = "; sizes skewed 1:2:..:K per dataset" if spec.sizes == "skew" else ""
    return "; ".join(parts) + rule


@scenarios.command("list")
def list_() -> None:
    """All registered scenarios with their client groups."""
    from rich.console import Console
    from rich.table import Table

    from fmtlbench.registry import load_registry

    registry = load_registry()
    table = Table(title="scenarios (a scenario file path works wherever a name does)")
    for column in ("name", "title", "clients", "client groups", "description", "provided by"):
        table.add_column(column, overflow="fold")
    for entry in registry.entries("scenario"):
        spec = entry.obj
        table.add_row(
            spec.name,
            spec.title,
            str(spec.num_clients),
            _groups_text(spec),
            spec.description,
            entry.provider,
        )
    console = Console()
    console.print(table)
    for plugin in registry.plugins:
        if plugin.error:
            console.print(f"[red]plugin {plugin.label} failed to load: {plugin.error}[/]")


def _fragments(
    name: str, seed: int | None, clients: int | None, data_root: Path | None, sets: tuple
) -> list[dict]:
    """The options of ``show`` as run-config fragments, so they resolve exactly like ``run``."""
    from fmtlbench.config import parse_assignment

    out: list[dict] = [{"scenario": name}]
    if seed is not None:
        out.append({"seed": seed})
    if clients is not None:
        out.append({"clients": clients})
    if data_root is not None:
        out.append({"data": {"root": str(data_root)}})
    out.extend(parse_assignment(item) for item in sets)
    return out


def _client_table(spec: Any, manifest: Any, datasets: dict) -> Any:
    """Per client: dataset, tasks, share, local train/test sizes; then one total per dataset
    against its training split, so that "no image dropped" can be read off."""
    from rich.table import Table

    shares = spec.client_shares()
    table = Table(title=f"clients of {spec.name} ({spec.title})" if spec.title else spec.name)
    for column in ("client", "dataset", "tasks", "share", "train", "test", "images"):
        numeric = column in {"share", "train", "test", "images"}
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "tasks")
    for client in manifest.clients:
        table.add_row(
            f"C{client.index + 1}",
            client.dataset,
            ", ".join(client.tasks),
            f"{shares[client.index]:g}",
            str(len(client.train)),
            str(len(client.test)),
            str(len(client.train) + len(client.test)),
        )
    for name, dataset in datasets.items():
        mine = [c for c in manifest.clients if c.dataset == name]
        train, test = sum(len(c.train) for c in mine), sum(len(c.test) for c in mine)
        split = len(dataset.ids("train"))
        kind = "synthetic" if dataset.synthetic else "real"
        table.add_row(
            "total", name, f"of {split} in the {kind} split", "", str(train), str(test),
            str(train + test), style="bold",
        )  # fmt: skip
    return table


@scenarios.command()
@click.argument("name")
@click.option("--seed", type=int, help="Partition seed (default: the run default, 0).")
@click.option("--clients", type=int, help="Client count of a single-group scenario (iid1).")
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="Folder holding NYUDv2/ etc. [env FMTLBENCH_DATA_ROOT]; unset = synthetic twins.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="Run config whose data settings (twin sizes, cache) to use.",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="PNG to write the figure to [default: scenario-NAME.png].",
)
@click.option("--no-figure", is_flag=True, help="Print the table only.")
@click.option("--manifest", type=click.Path(path_type=Path), help="Also write the manifest JSON.")
@click.option("--spec", "spec_only", is_flag=True, help="Print the declarative spec; no data.")
def show(
    name: str,
    seed: int | None,
    clients: int | None,
    data_root: Path | None,
    config_file: Path | None,
    sets: tuple[str, ...],
    out: Path | None,
    no_figure: bool,
    manifest: Path | None,
    spec_only: bool,
) -> None:
    """Who holds which tasks and how many images in scenario NAME (a name or a file)."""
    import yaml
    from rich.console import Console

    from fmtlbench.config import build_config
    from fmtlbench.partition import build_manifest
    from fmtlbench.registry import load_registry
    from fmtlbench.scenario import resolve_scenario

    config = build_config(config_file, _fragments(name, seed, clients, data_root, sets))
    registry = load_registry()
    spec = resolve_scenario(config.scenario, registry, config.clients)
    console = Console()
    if spec_only:
        click.echo(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), nl=False)
        return
    result, datasets = build_manifest(spec, config.data, registry, config.seed)
    if any(d.synthetic for d in datasets.values()):
        console.print(
            "[yellow]synthetic twins[/] (no data root set): sizes are the twin's, not the real "
            "dataset's; pass --data-root for the real split sizes"
        )
    console.print(f"{spec.name}: {spec.description}")
    params = ", ".join(f"{k}={v}" for k, v in result.partitioner_params.items())
    console.print(
        f"partitioner {result.partitioner}({params})   seed {result.seed}   "
        f"local test fraction {spec.local_test_fraction:g}"
    )
    console.print(_client_table(spec, result, datasets))
    console.print(f"manifest sha256 [bold]{result.digest()}[/]")
    if manifest is not None:
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(result.model_dump_json(indent=2))
        console.print(f"manifest written to {manifest}")
    if not no_figure:
        from fmtlbench.scenario_figure import draw

        target = out or Path(f"scenario-{spec.name}.png")
        title = f"{spec.name} ({spec.title})" if spec.title else spec.name
        console.print(f"figure written to {draw(result, target, title)}")
