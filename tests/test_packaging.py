"""The fmtlbench wheel on its own: built from the repository by pip and pip-installed into a
fresh virtual environment that sees no other fmtlbench, it lists every built-in component with
the distribution ``fmtlbench`` as provider.

The test environment holds an editable fmtlbench whose entry points would answer for a wheel
that lacks them. So the wheel is pip-installed into a fresh virtual environment that sees the
dependencies (torch and the rest, too large to install afresh in a test) through ``.pth`` lines
to copies of the test environment's site-packages folders made of links to every entry except
fmtlbench's own. The last test removes the entry points from an installed
copy of the wheel and finds no algorithm at all: what is listed comes from the wheel alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import pip_build_flags

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel is built from (copied, so that the build leaves nothing in the repository).
SOURCES = ("pyproject.toml", "README.md", "fmtlbench", "plugins/fmtlbench_builtins")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ALGORITHMS = (
    "local",
    "fedavg",
    "fedprox",
    "fedamp",
    "fedrep",
    "pcgrad",
    "cagrad",
    "matfl",
    "fedmtl",
)
DATASETS = ("nyudv2", "pascal-context")
#: Entries of a site-packages folder that belong to an installed fmtlbench (editable or not,
#: any of its plugin distributions): hidden from the interpreter under test.
OWN = re.compile(r"^(__editable__\W*)?fmtlbench", re.IGNORECASE)


def build_wheel(out: Path, sources: Path) -> Path:
    """``pip wheel`` of a copy of the repository's package sources; the wheel's path."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, sources / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, sources / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *pip_build_flags()]
        + ["-w", str(out), str(sources)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("fmtlbench-*.whl")
    return wheel


def dependency_folders(farm: Path) -> list[Path]:
    """The running environment's site-packages folders (``sys.path`` order, those reached
    through ``.pth`` lines included), each mirrored by links to every entry but fmtlbench's."""
    folders = []
    for index, entry in enumerate(sys.path):
        folder = Path(entry)
        if folder.name not in ("site-packages", "dist-packages") or not folder.is_dir():
            continue
        mirror = farm / str(index)
        mirror.mkdir(parents=True)
        for item in folder.iterdir():
            if not OWN.match(item.name):
                (mirror / item.name).symlink_to(item, target_is_directory=item.is_dir())
        folders.append(mirror)
    assert folders, f"no site-packages folder on sys.path: {sys.path}"
    return folders


class Site:
    """A fresh virtual environment holding the installed wheel; its dependencies are reached
    through one ``.pth`` line per mirrored site-packages folder (links, fmtlbench's own left
    out), so that nothing but the wheel can answer for fmtlbench."""

    def __init__(self, venv: Path) -> None:
        self.venv = venv
        self.bin = venv / "bin"

    @classmethod
    def create(cls, venv: Path, dependencies: list[Path]) -> Site:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        (site_packages,) = (venv / "lib").glob("python*/site-packages")
        (site_packages / "_dependencies.pth").write_text("".join(f"{d}\n" for d in dependencies))
        return cls(venv)

    @property
    def site_packages(self) -> Path:
        (folder,) = (self.venv / "lib").glob("python*/site-packages")
        return folder

    def install(self, wheel: Path) -> None:
        """``pip install`` of ``wheel`` into this environment (pip run from the test's)."""
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.bin / "python"), "install"]
            + ["-q", "--no-deps", str(wheel)],
            check=True,
            timeout=300,
        )

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.venv,
            env={**os.environ, "COLUMNS": "200", "PYTHONPATH": ""},
        )

    def python(self, code: str) -> subprocess.CompletedProcess:
        return self.run(str(self.bin / "python"), "-c", code)

    def fmtlbench(self, *args: str) -> subprocess.CompletedProcess:
        """The environment's ``fmtlbench`` (``python -m``: the console script's shebang names
        the environment it was installed into, which a copy is not)."""
        return self.run(str(self.bin / "python"), "-m", "fmtlbench", *args)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="session")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Site:
    dependencies = dependency_folders(tmp_path_factory.mktemp("dependencies"))
    venv = Site.create(tmp_path_factory.mktemp("venv") / "env", dependencies)
    venv.install(wheel)
    script = venv.run(str(venv.bin / "fmtlbench"), "--version")  # the installed console script
    assert script.returncode == 0, script.stderr
    return venv


def rows(listing: str) -> dict[str, str]:
    """``fmtlbench list`` table rows: component name -> provider column."""
    cells = [line.split("│") for line in listing.splitlines() if line.startswith("│")]
    return {c[1].strip(): c[-2].strip() for c in cells if c[1].strip()}


def test_the_wheel_holds_both_packages_and_an_entry_point_per_builtin_module(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
    assert wheel.name == f"fmtlbench-{VERSION}-py3-none-any.whl"
    assert {n.split("/")[0] for n in names} == {
        "fmtlbench",
        "fmtlbench_builtins",
        f"fmtlbench-{VERSION}.dist-info",
    }
    assert "fmtlbench/profiles/cpu.yaml" in names  # package data
    assert "[fmtlbench]\n" in entry_points, entry_points
    section = entry_points.split("[fmtlbench]\n")[1].split("\n[")[0]
    declared = {line.split(" = ")[1] for line in section.splitlines() if " = " in line}
    # Every built-in module implementing a hook is declared, so none can be forgotten.
    builtins = ROOT / "plugins"
    hooked = {
        ".".join(p.relative_to(builtins).with_suffix("").parts)
        for p in (builtins / "fmtlbench_builtins").rglob("*.py")
        if "@hookimpl" in p.read_text()
    }
    assert len(hooked) >= 20 and declared == hooked, declared ^ hooked


def test_the_interpreter_under_test_sees_the_wheel_alone(site: Site) -> None:
    probe = site.python(
        "import json, importlib.metadata as md, fmtlbench, fmtlbench_builtins\n"
        "own = [(d.name, d.version) for d in md.distributions()"
        " if d.name.lower().startswith('fmtlbench')]\n"
        "print(json.dumps([own, fmtlbench.__file__, fmtlbench_builtins.__file__]))\n"
    )
    assert probe.returncode == 0, probe.stderr
    own, core, builtins = json.loads(probe.stdout)
    assert own == [["fmtlbench", VERSION]]
    for path in (core, builtins):
        assert Path(path).is_relative_to(site.site_packages), path


def test_the_installed_wheel_lists_every_builtin_as_its_own(site: Site) -> None:
    listing = site.fmtlbench("list", "algorithms")
    assert listing.returncode == 0, listing.stderr
    algorithms = rows(listing.stdout)
    for name in ALGORITHMS:
        assert algorithms.get(name) == f"{name} (fmtlbench {VERSION})", listing.stdout
    listing = site.fmtlbench("list", "datasets")
    assert listing.returncode == 0, listing.stderr
    assert rows(listing.stdout) == {n: f"{n} (fmtlbench {VERSION})" for n in DATASETS}
    plugins = site.fmtlbench("plugins")
    assert plugins.returncode == 0, plugins.stderr
    lines = plugins.stdout.splitlines()
    assert f"fmtlbench {VERSION}" in lines, plugins.stdout
    modules = [line for line in lines if " = fmtlbench_builtins." in line]
    assert len(modules) >= 20 and all("  ok  provides: " in line for line in modules), lines


def test_without_its_entry_points_the_same_wheel_lists_nothing(site: Site, tmp_path: Path) -> None:
    """The check above can fail: the entry points it sees are the wheel's and nobody else's."""
    stripped = tmp_path / "env"
    shutil.copytree(site.venv, stripped, symlinks=True)
    copy = Site(stripped)
    (info,) = copy.site_packages.glob("fmtlbench-*.dist-info")
    text = (info / "entry_points.txt").read_text()
    kept = re.sub(r"\[fmtlbench\]\n(?:[^\[\n].*\n)*", "", text)
    assert "fmtlbench_builtins" in text and "fmtlbench_builtins" not in kept
    (info / "entry_points.txt").write_text(kept)
    listing = copy.fmtlbench("list", "algorithms")
    assert listing.returncode == 0, listing.stderr
    assert not set(ALGORITHMS) & set(rows(listing.stdout)), listing.stdout
