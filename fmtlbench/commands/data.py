"""``fmtlbench data``: synthetic twins, checks, downloads and previews of datasets.

Only click is imported at module level; numpy, the plugins and matplotlib are imported inside
the commands that need them, so ``fmtlbench --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _dataset_class(name: str) -> type:
    from fmtlbench.registry import load_registry

    return load_registry().get("dataset", name)


@click.group()
def data() -> None:
    """Generate, check, download and look at datasets."""


@data.command()
@click.argument("name")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Data root to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the scenes.")
@click.option("--train", type=int, help="Images in the train split.")
@click.option("--test", type=int, help="Images in the test split.")
@click.option("--height", type=int, help="Image height in pixels.")
@click.option("--width", type=int, help="Image width in pixels.")
@click.option(
    "--set",
    "set_",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other twin parameter of the dataset, e.g. twin_image_format=jpg (repeatable).",
)
def synth(name: str, out: Path, seed: int, set_: tuple[str, ...], **sizes: int | None) -> None:
    """Write a synthetic twin of dataset NAME into OUT/<its folder>, in the real layout."""
    from pydantic import ValidationError

    from fmtlbench.config import describe_validation_error, merge, parse_assignment
    from fmtlbench.errors import ConfigError
    from fmtlbench.verify import record_twin

    cls = _dataset_class(name)
    values: dict = {f"twin_{key}": value for key, value in sizes.items() if value is not None}
    for item in set_:
        values = merge(values, parse_assignment(item))
    try:
        params = cls.Params(**values)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid twin parameter of {name}: {describe_validation_error(exc)} "
            f"(see `fmtlbench list datasets`)"
        ) from None
    from fmtlbench.preflight import check_folder

    check_folder(Path(out), "--out", "give a folder you can write to as --out")
    target = Path(out) / cls.folder
    click.echo(f"rendering the synthetic twin of {name} into {target} ...")
    cls.synthesize(target, params, seed)
    dataset = cls(params, target, synthetic=True)
    sizes_written = {split: len(dataset.ids(split)) for split in ("train", "test")}
    record_twin(
        Path(out),
        cls.folder,
        {"dataset": name, "seed": seed, "params": params.model_dump(mode="json"),
         "sizes": sizes_written},
    )  # fmt: skip
    click.echo(
        f"wrote {sizes_written['train']} train + {sizes_written['test']} test images "
        f"(synthetic data; recorded in {Path(out) / 'fmtlbench-twins.json'})"
    )


@data.command()
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--no-counts",
    is_flag=True,
    help="Do not compare split sizes with the real dataset's (e.g. for a partial copy).",
)
@click.option("--max-problems", type=int, default=20, show_default=True, help="Per dataset.")
def verify(root: Path, no_counts: bool, max_problems: int) -> None:
    """Check every dataset folder under ROOT: layout, split ids, sizes, every file.

    Exits with status 1 if anything is wrong. Nothing under ROOT is written.
    """
    from fmtlbench.registry import load_registry
    from fmtlbench.verify import verify_root

    classes = [entry.obj for entry in load_registry().entries("dataset")]
    folders = ", ".join(f"{cls.folder}/" for cls in classes)

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            click.echo(f"\r  {name}: {done}/{total} samples read", nl=done == total, err=True)

    checks = verify_root(root, classes, counts=not no_counts, progress=progress)
    if not checks:
        click.echo(f"error: no dataset folder under {root} (looked for {folders})", err=True)
        sys.exit(1)
    for result in checks:
        sizes = ", ".join(f"{split} {n}" for split, n in result.sizes.items()) or "no splits"
        status = "OK" if result.ok else f"{len(result.problems)} problem(s)"
        click.echo(f"{result.dataset} ({result.kind}) at {result.folder}: {sizes}: {status}")
        for problem in result.problems[:max_problems]:
            click.echo(f"  - {problem}")
        if len(result.problems) > max_problems:
            click.echo(f"  ... and {len(result.problems) - max_problems} more")
    if not all(result.ok for result in checks):
        sys.exit(1)


@data.command()
@click.argument("name")
@click.option("--to", "to", required=True, type=click.Path(path_type=Path), help="Data root.")
@click.option("--url", help="Archive URL (default: the dataset's official archive).")
@click.option("--sha256", help="Expected SHA-256 of the archive (default: the dataset's).")
@click.option("--keep-archive", is_flag=True, help="Keep the archive after extracting it.")
def download(name: str, to: Path, url: str | None, sha256: str | None, keep_archive: bool) -> None:
    """Download dataset NAME's archive, verify it and extract it to TO/<its folder>.

    An interrupted download is resumed by running the same command again.
    """
    from fmtlbench.download import archive_name, check_request, install
    from fmtlbench.errors import ConfigError

    cls = _dataset_class(name)
    url = url or cls.archive_url
    if not url:
        raise ConfigError(f"dataset '{name}' declares no archive URL; pass --url")
    sha256 = sha256 or cls.archive_sha256
    shown = {"step": -1}

    def progress(done: int, total: int | None) -> None:
        step = done * 20 // total if total else done >> 26  # every 5%, or every 64 MiB
        if step != shown["step"]:
            shown["step"] = step
            size = f"{done / 2**20:.1f} MiB" + (f" of {total / 2**20:.1f}" if total else "")
            click.echo(f"\r  {size}", nl=False, err=True)

    check_request(url, sha256, Path(to))
    from fmtlbench.preflight import check_folder

    check_folder(Path(to), "--to", "give a folder you can write to as --to")
    click.echo(f"downloading {url}")
    part = Path(to) / (archive_name(url, cls.folder) + ".part")
    if part.is_file():
        click.echo(f"resuming the partial download {part} ({part.stat().st_size} bytes)")
    folder, digest = install(url, to, cls.folder, sha256, keep_archive=keep_archive,
                             progress=progress)  # fmt: skip
    click.echo("", err=True)
    if sha256:
        click.echo(f"checksum OK (SHA-256 {digest})")
    else:
        click.echo(f"warning: no checksum to compare with; SHA-256 of the archive: {digest}")
    click.echo(f"extracted to {folder}; check it with: fmtlbench data verify {Path(to)}")


@data.command()
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), help="PNG to write [NAME-samples.png].")
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="Folder holding the dataset folder [env FMTLBENCH_DATA_ROOT]; unset: the twin.",
)
@click.option("--count", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
def show(name: str, out: Path | None, data_root: Path | None, count: int, split: str) -> None:
    """Write a PNG grid of a few samples of NAME with every task's label.

    Uses the data a run would use: the data root if one is set, else the synthetic twin.
    """
    from fmtlbench.config import DataConfig
    from fmtlbench.data import open_dataset
    from fmtlbench.gallery import write_gallery

    cls = _dataset_class(name)
    config = DataConfig(root=data_root) if data_root is not None else DataConfig()
    dataset = open_dataset(cls, config)
    if dataset.synthetic:
        click.echo(f"no data root set: showing the SYNTHETIC twin of {name} ({dataset.root})")
    ids = dataset.ids(split)[:count]
    tasks = list(dataset.tasks)
    samples = [(sample_id, _readable(dataset, sample_id, tasks)) for sample_id in ids]
    kind = "synthetic twin" if dataset.synthetic else "real data"
    title = f"{name} ({kind}), {split} split: first {len(ids)} of {len(dataset.ids(split))}"
    path = write_gallery(samples, tasks, out or Path(f"{name}-samples.png"), title)
    click.echo(f"wrote {path}")


def _readable(dataset, sample_id: str, tasks: list[str]) -> dict:
    """All of a sample that can be read; unreadable labels are reported and left out (a
    missing image is still an error: there would be nothing to show)."""
    from fmtlbench.errors import FmtlbenchError

    try:
        return dataset.read(sample_id, tasks)
    except FmtlbenchError:
        pass
    sample = dataset.read(sample_id, [])
    for task in tasks:
        try:
            sample[task] = dataset.read(sample_id, [task])[task]
        except FmtlbenchError as exc:
            click.echo(f"warning: {exc}", err=True)
    return sample
