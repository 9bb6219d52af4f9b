"""``fmtlbench tracking``: look after the tracking store.

``flush`` uploads what a run kept in its outbox while the tracking server was lost (a resume
does the same first thing), so the metrics reach the store without training again. Only click
is imported here at module level; ``fmtlbench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def tracking() -> None:
    """Tracking store: upload the records a run kept while its server was lost."""


@tracking.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--tracking-uri",
    help="Send to this store instead of the one the records name (e.g. a moved server).",
)
def flush(target: Path, tracking_uri: str | None) -> None:
    """Upload and delete the outbox of TARGET: a run's checkpoint folder, its outbox.jsonl,
    or the checkpoint root (every outbox under it). Safe to repeat: metric steps the store
    already has are not logged again."""
    from fmtlbench import tracking as store

    sent = store.flush(target, tracking_uri)
    for run_id, count in sent:
        click.echo(f"run {run_id}: {count} kept records uploaded")
    if not sent:
        click.echo(f"{target}: the outbox was empty; nothing to upload")
