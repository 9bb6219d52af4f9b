"""The ``fmtlbench`` command line.

Only click is imported at module level: ``fmtlbench --help`` must stay fast, so torch, timm,
mlflow and the plugins are imported inside the commands that need them. User errors
(``FmtlbenchError``) are printed as one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from fmtlbench import __version__
from fmtlbench.errors import FmtlbenchError
from fmtlbench.hookspecs import PLURALS

#: ``fmtlbench list`` argument -> component kind (the vocabulary is owned by ``hookspecs``).
KIND_NAMES = {plural: kind for kind, plural in PLURALS.items()}


#: Sub-commands defined in their own modules, imported only when listed or invoked.
LAZY_COMMANDS = {
    "data": "fmtlbench.commands.data:data",
    "scenarios": "fmtlbench.commands.scenarios:scenarios",
    "models": "fmtlbench.commands.models:models",
    "leaderboard": "fmtlbench.commands.leaderboard:leaderboard",
    "sweep": "fmtlbench.commands.sweep:sweep",
    "tracking": "fmtlbench.commands.tracking:tracking",
}


class FriendlyGroup(click.Group):
    """Turns user errors into one clear line and a non-zero exit, never a traceback, and loads
    the sub-commands of ``LAZY_COMMANDS`` on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [name for name in LAZY_COMMANDS if self._lazy(name) is not None]
        return sorted({*super().list_commands(ctx), *available})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._lazy(name)

    @staticmethod
    def _lazy(name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # not part of this installation
                return None
            raise

    def invoke(self, ctx: click.Context):
        from fmtlbench import signals

        signals.install()
        try:
            return super().invoke(ctx)
        except FmtlbenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, signals.Terminated)
            click.echo("terminated" if terminated else "interrupted", err=True)
            sys.exit(143 if terminated else 130)


@click.group(cls=FriendlyGroup)
@click.version_option(__version__, prog_name="fmtlbench")
def main() -> None:
    """fmtlbench: benchmark federated multi-task learning on dense prediction.

    Run one federated experiment with `fmtlbench run`, see what is installed with
    `fmtlbench list` and `fmtlbench plugins`. Runs are tracked in MLflow
    (browse them with `mlflow ui --backend-store-uri sqlite:///mlflow.db`).
    """


def _overrides(**options) -> list[dict]:
    """CLI flags as config fragments, in the order they apply."""
    from fmtlbench.config import parse_assignment

    table = {
        "profile": ("profile",),
        "scenario": ("scenario",),
        "algo": ("algorithm", "name"),
        "weighting": ("training", "weighting", "name"),
        "arch": ("arch", "name"),
        "backbone": ("backbone", "name"),
        "seed": ("seed",),
        "clients": ("clients",),
        "rounds": ("training", "rounds"),
        "data_root": ("data", "root"),
        "tracking_uri": ("tracking", "uri"),
        "experiment": ("tracking", "experiment"),
        "run_name": ("tracking", "run_name"),
        "reference": ("reference",),
    }
    out: list[dict] = []
    for option, path in table.items():
        value = options.get(option)
        if value is None:
            continue
        node: dict = {path[-1]: str(value) if isinstance(value, Path) else value}
        for part in reversed(path[:-1]):
            node = {part: node}
        out.append(node)
    out.extend(parse_assignment(item) for item in options.get("set_", ()))
    return out


@main.command()
@click.option(
    "--config", "config_file", type=click.Path(path_type=Path), help="YAML/TOML run config."
)
@click.option(
    "--profile",
    help="Settings profile: cpu (default), paper, gpu-smoke (a set-up check), or a file.",
)
@click.option("--scenario", help="Scenario name (see `fmtlbench list scenarios`) or file.")
@click.option("--algo", help="Federated algorithm (see `fmtlbench list algorithms`).")
@click.option(
    "--weighting",
    help="Client-side task weighting (see `fmtlbench list weightings`); default equal, the "
    "study's fixed task weights.",
)
@click.option("--arch", help="Decoder architecture: md (one decoder per task) or tc.")
@click.option("--backbone", help="Encoder backbone: resnet18 or swin-t.")
@click.option("--seed", type=int, help="Seed of partition, initialisation and training.")
@click.option("--clients", type=int, help="Client count of a single-group scenario (iid1).")
@click.option("--rounds", type=int, help="Number of federated rounds.")
@click.option(
    "--data-root",
    type=click.Path(),  # a str: click would turn "" into Path("."), the working directory
    help="Folder holding NYUDv2/ etc. [env FMTLBENCH_DATA_ROOT]",
)
@click.option("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db).")
@click.option("--experiment", help="MLflow experiment name.")
@click.option("--run-name", help="MLflow run name.")
@click.option("--reference", help="MLflow run id of the delta-percent reference run.")
@click.option(
    "--set",
    "set_",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any setting, e.g. --set training.lr=1e-4 (repeatable).",
)
@click.option("--resume", metavar="RUN_ID", help="Resume an interrupted run from its checkpoint.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def run(config_file, resume, dry_run, **options) -> None:
    """Run one federated experiment, tracked in MLflow."""
    import yaml

    from fmtlbench.config import build_config

    if resume:
        from fmtlbench.resume import refuse_unsafe_flags

        refuse_unsafe_flags(
            {k: v for k, v in options.items() if k != "set_"}, options["set_"], config_file
        )
    config = build_config(config_file, _overrides(**options))
    if dry_run:
        click.echo(yaml.safe_dump(config.dump(), sort_keys=False))
        return
    from fmtlbench.choices import resolve_components
    from fmtlbench.display import RichReporter, results_table
    from fmtlbench.registry import load_registry

    if config.smoke is not None and not resume:
        from fmtlbench.smoke import smoke

        click.echo(f"set-up check: one round of {config.scenario} per precision, untracked")
        smoke(config, load_registry(), click.echo)
        return

    saved = None  # the checkpoint, read once: for the banner here and the run in execute
    if not resume:
        # name and parameter errors come first, before torch is imported (seconds)
        resolve_components(config, load_registry())
    else:  # the banner shows what runs: the checkpoint's settings, not the flags'
        from fmtlbench import checkpoint
        from fmtlbench.resume import resumed_config

        saved = checkpoint.load(checkpoint.checkpoint_path(config.checkpoint_dir, resume))
        config = resumed_config(saved, options["rounds"])
    from fmtlbench import preflight

    preflight.check(config, load_registry())  # before the banner: a refusal is one line
    from fmtlbench.runner import execute

    reporter = RichReporter()
    reporter.banner(config)
    with reporter:
        outcome = execute(
            config,
            reporter=reporter,
            resume=resume,
            rounds=options["rounds"],
            saved=saved,
        )
    results_table(reporter.console, outcome)


@main.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(KIND_NAMES)))
def list_(kind: str | None) -> None:
    """List installed components (all kinds, or one)."""
    from fmtlbench.display import component_listing
    from fmtlbench.registry import load_registry

    registry = load_registry()
    kinds = [kind] if kind else sorted(KIND_NAMES)
    component_listing(registry, [KIND_NAMES[k] for k in kinds])


@main.command()
def plugins() -> None:
    """Installed plugins: distribution, version, what they provide, load errors."""
    from fmtlbench.display import plugin_listing
    from fmtlbench.registry import load_registry

    plugin_listing(load_registry())
