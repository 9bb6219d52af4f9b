"""What a person sees in the terminal: banners, progress, results and listings (rich)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fmtlbench import metric_keys as keys
from fmtlbench.tasks import display_scale

#: Redraws per second of the progress bars. Rich's default (10) redraws a display whose finest
#: unit is the elapsed second ten times a second, about 2.5% of a core here; at 1 per second
#: (plus a redraw on every round and client event) the display costs about 0.25% (measured by
#: ``benchmarks/startup.py``).
REFRESH_PER_SECOND = 1


class RichReporter:
    """Progress bars for rounds and for the clients of the current round."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._rounds = None
        self._clients = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def banner(self, config: Any) -> None:
        synthetic = config.data.root is None
        lines = [
            f"profile [bold]{config.profile}[/]   scenario [bold]{config.scenario}[/]   "
            f"algorithm [bold]{config.algorithm.name}[/]   arch [bold]{config.arch.name}[/]   "
            f"backbone [bold]{config.backbone.name}[/]   seed {config.seed}   "
            f"rounds {config.training.rounds}",
            f"tracking {config.tracking.uri} (experiment '{config.tracking.experiment}')",
        ]
        if synthetic:
            lines.append(
                "[yellow bold]SYNTHETIC DATA[/]: no data root is set (--data-root or "
                "FMTLBENCH_DATA_ROOT), so the procedurally generated twins are used. Results "
                "are not comparable with real-data numbers."
            )
        self.console.print(Panel("\n".join(lines), title="fmtlbench run", expand=False))

    def message(self, text: str) -> None:
        # plain and unwrapped: messages carry commands and paths to copy (resume with: ...)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def round_started(self, round: int, rounds: int, clients: int) -> None:
        if self._rounds is None:
            self._rounds = self.progress.add_task("rounds", total=rounds, completed=round - 1)
        if self._clients is not None:
            self.progress.remove_task(self._clients)
        self._clients = self.progress.add_task(f"  round {round} clients", total=clients)
        self.progress.refresh()

    def client_done(self, client: int, losses: Mapping[str, float]) -> None:
        self.progress.advance(self._clients)
        self.progress.refresh()

    def round_finished(self, round: int, metrics: Mapping[str, float]) -> None:
        self.progress.advance(self._rounds)
        loss = metrics.get(keys.TRAIN_LOSS)
        shown = f"round {round}: train loss {loss:.4f}" if loss is not None else f"round {round}"
        deltas = [
            f"Δ_{s} {metrics[keys.delta(s)]:+.2f}%"
            for s in keys.SETTINGS
            if keys.delta(s) in metrics
        ]
        self.progress.console.print("  ".join([shown, *deltas]))


def _fmt(pair: tuple[float, float], scale: float = 1.0) -> str:
    mean, std = pair
    return f"{mean * scale:.4f} ± {std * scale:.4f}"


def results_table(console: Console, outcome: Any) -> None:
    """Per-task primary metrics: untrained, final G-FL and final P-FL (mean ± std over clients)."""
    fed, final, initial = outcome.federation, outcome.final, outcome.initial
    table = Table(title=f"results after round {final.round} (mean ± std over clients)")
    for column in ("dataset", "task", "metric", "untrained G-FL", "final G-FL", "final P-FL"):
        table.add_column(column, overflow="fold")
    for ds, tasks in final.summary["G"].items():
        for task in tasks:
            metric, lower = fed.datasets[ds].tasks[task].primary
            scale = display_scale(task, metric)
            shown = f"{metric} ×{scale:g}" if scale != 1.0 else metric
            before = _fmt(initial.summary["G"][ds][task][metric], scale) if initial else "-"
            table.add_row(
                ds,
                task,
                f"{shown} ({'lower' if lower else 'higher'} is better)",
                before,
                _fmt(final.summary["G"][ds][task][metric], scale),
                _fmt(final.summary["P"][ds][task][metric], scale),
            )
    console.print(table)
    for kind, value in final.delta.items():
        console.print(f"Δ_{kind} = {value:+.2f}% against reference run {fed.config.reference}")
    console.print(f"MLflow run [bold]{outcome.run_id}[/] ({fed.config.tracking.uri})")


def _params_text(cls: Any) -> str:
    fields = getattr(cls, "Params", None)
    if fields is None or not fields.model_fields:
        return ""
    parts = []
    for name, info in fields.model_fields.items():
        default = info.get_default(call_default_factory=True)
        parts.append(f"{name}={default!r}")
    return ", ".join(parts)


def component_listing(registry: Any, kinds: Sequence[str]) -> None:
    console = Console()
    for kind in kinds:
        table = Table(title=f"{kind}s", show_lines=False)
        for column in ("name", "summary", "parameters (defaults)", "provided by"):
            table.add_column(column, overflow="fold")
        for entry in registry.entries(kind):
            obj = entry.obj
            summary = getattr(obj, "description", None) if kind == "scenario" else obj.summary()
            params = "" if kind == "scenario" else _params_text(obj)
            table.add_row(entry.name, summary or "", params, entry.provider)
        console.print(table)
    _load_errors(console, registry)


def plugin_listing(registry: Any) -> None:
    """Plugins grouped by distribution: entry point, module, status and what each provides."""
    console = Console()
    by_dist: dict[str, list[Any]] = {}
    for p in registry.plugins:
        by_dist.setdefault(f"{p.distribution} {p.version}", []).append(p)
    console.print("[bold]fmtlbench plugins[/] (entry-point group 'fmtlbench')")
    for dist, plugins in sorted(by_dist.items()):
        console.print(f"\n[bold]{dist}[/]")
        for p in plugins:
            status = f"[red]FAILED: {p.error}[/]" if p.error else "[green]ok[/]"
            provides = ", ".join(p.components) or "-"
            line = f"  {p.name} = {p.module}  {status}  provides: {provides}"
            console.print(line, soft_wrap=True)


def _load_errors(console: Console, registry: Any) -> None:
    for p in registry.plugins:
        if p.error:
            console.print(f"[red]plugin {p.label} failed to load: {p.error}[/]")
