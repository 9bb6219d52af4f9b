"""Deferred imports: a lazily imported package is not executed until first used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fmtlbench import lazy


def test_import_happens_at_first_attribute_access() -> None:
    code = (
        "import sys\n"
        "from fmtlbench import lazy\n"
        "m = lazy.module('json')\n"
        "assert 'json.decoder' not in sys.modules, 'imported too early'\n"
        "assert m.loads('[1, 2]') == [1, 2]\n"
        "assert 'json.decoder' in sys.modules\n"
        "import json\n"
        "assert json is m\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_submodules_and_missing_packages_are_refused() -> None:
    with pytest.raises(ValueError, match="top-level"):
        lazy.module("torch.nn")
    with pytest.raises(ModuleNotFoundError):
        lazy.module("no_such_package_fmtlbench")


SHOW_LOADED = (
    "\nimport sys\nprint(*[n for n, m in sys.modules.items() if type(m).__name__ != '_LazyModule'])"
)


def _imported(code: str) -> tuple[set[str], set[str]]:
    """Modules that ``code`` leaves imported in a fresh interpreter (``sys.modules``, without
    the ``fmtlbench.lazy`` placeholders not yet executed) and the ones ``-X importtime``
    reports (import statements; entry points loaded through importlib appear only in the
    first)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code + SHOW_LOADED],
        capture_output=True,
        text=True,
        check=True,
    )
    timed = [line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line]
    return set(run.stdout.split()), set(timed[1:])


HEAVY = ("torch", "timm", "torchvision")


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_the_backbone_plugin_imports_no_model_library() -> None:
    loaded, timed = _imported("import fmtlbench_builtins.backbones.timm_backbone")
    assert "fmtlbench_builtins.backbones.timm_backbone" in timed  # the probe itself works
    assert "pydantic" in timed and "fmtlbench_builtins.backbones.timm_backbone" in loaded
    assert not _heavy(timed) and not _heavy(loaded)


def test_listing_and_validating_components_imports_no_model_library() -> None:
    code = (
        "from fmtlbench.registry import load_registry\n"
        "from fmtlbench.config import build_config\n"
        "from fmtlbench.choices import resolve_components\n"
        "registry = load_registry()\n"
        "assert not [p.error for p in registry.plugins if p.error]\n"
        "config = build_config(None, [{'algorithm': {'name': 'fedprox'}, 'arch': {'name': 'tc'},"
        " 'backbone': {'name': 'swin-t'}}])\n"
        "resolve_components(config, registry)\n"
    )
    loaded, timed = _imported(code)
    assert {"fmtlbench_builtins.algorithms.fedprox", "fmtlbench_builtins.decoders.tc"} <= loaded
    assert not _heavy(loaded) and not _heavy(timed)


def test_the_kit_pytest_plugin_and_the_task_kinds_import_no_model_library() -> None:
    """``fmtlbench.testing.plugin`` is loaded by every pytest session (``pytest11``); the task
    kinds are loaded by every listing and by a config that chooses a primary."""
    code = (
        "import fmtlbench.testing.plugin\n"
        "from fmtlbench.config import build_config, parse_assignment\n"
        "build_config(None, [parse_assignment('training.metrics.primary.edge=odsf')])\n"
        "from fmtlbench.tasks import kind_of\n"
        "assert kind_of('normals').loss_weight == 10.0\n"
    )
    loaded, timed = _imported(code)
    assert {"fmtlbench.testing.plugin", "fmtlbench_builtins.tasks"} <= loaded
    assert not _heavy(loaded) and not _heavy(timed)
