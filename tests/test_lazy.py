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
