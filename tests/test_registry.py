"""The registry: discovery through entry points only, loud collisions, near-miss suggestions."""

from __future__ import annotations

from importlib.metadata import EntryPoint, version

import pytest

from fmtlbench.errors import RegistryError, UnknownComponentError
from fmtlbench.registry import build_registry, load_registry


def test_builtins_arrive_through_entry_points():
    registry = load_registry()
    assert {"local", "fedavg"} <= set(registry.names("algorithm"))
    assert "nyudv2" in registry.names("dataset")
    assert "iid1" in registry.names("scenario")
    provider = registry.entry("algorithm", "fedavg").provider
    assert provider == f"fedavg (fmtlbench {version('fmtlbench')})"  # shipped in the core wheel
    assert not [p for p in registry.plugins if p.error], [p.error for p in registry.plugins]


def test_unknown_name_suggests_and_lists():
    registry = load_registry()
    with pytest.raises(UnknownComponentError) as err:
        registry.get("algorithm", "fedavgg")
    text = str(err.value)
    assert "Did you mean 'fedavg'" in text
    assert "Installed algorithms:" in text and "local" in text
    assert "\n" not in text


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="fmtlbench")


def test_collision_names_both_providers(tmp_path, monkeypatch):
    (tmp_path / "dup_algo_a.py").write_text(
        "from fmtlbench import hookimpl\n"
        "from fmtlbench.components import Algorithm\n"
        "class A(Algorithm):\n    '''A.'''\n    name = 'twin'\n"
        "@hookimpl\ndef register_algorithms():\n    return [A]\n"
    )
    (tmp_path / "dup_algo_b.py").write_text(
        (tmp_path / "dup_algo_a.py").read_text().replace("class A", "class B").replace("[A]", "[B]")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError) as err:
        build_registry([_ep("first", "dup_algo_a"), _ep("second", "dup_algo_b")])
    assert "first" in str(err.value) and "second" in str(err.value)
    assert "'twin'" in str(err.value)


def test_failed_import_is_reported_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = build_registry(
        [_ep("broken", "broken_plugin"), _ep("local", "fmtlbench_builtins.algorithms.local")]
    )
    broken = next(p for p in registry.plugins if p.name == "broken")
    assert "needs libfoo" in broken.error
    assert registry.names("algorithm") == ["local"]
    with pytest.raises(UnknownComponentError, match="failed to load: broken"):
        registry.get("algorithm", "fedavg")


def test_wrong_kind_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "wrong_kind.py").write_text(
        "from fmtlbench import hookimpl\n"
        "class NotAnAlgorithm:\n    name = 'odd'\n"
        "@hookimpl\ndef register_algorithms():\n    return [NotAnAlgorithm]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="wrong type"):
        build_registry([_ep("wrong", "wrong_kind")])
