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


def _register(tmp_path, monkeypatch, module: str, body: str):
    """``body`` (a class ``C`` and imports) written as a plugin module registering ``[C]`` as
    an algorithm, loaded through an entry point."""
    (tmp_path / f"{module}.py").write_text(
        "from fmtlbench import hookimpl\n"
        "from fmtlbench.components import Algorithm, AlgorithmParams\n"
        f"{body}\n"
        "@hookimpl\ndef register_algorithms():\n    return [C]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return build_registry([_ep(module, module)])


@pytest.mark.parametrize(
    "module, body, message",
    [
        (
            "no_name",
            "class C(Algorithm):\n    '''Nameless.'''\n",
            r"plugin no_name .*: algorithm <class 'no_name.C'> has no 'name'; give it a lowercase",
        ),
        (
            "empty_name",
            "class C(Algorithm):\n    '''Blank.'''\n    name = ''\n",
            r"algorithm <class 'empty_name.C'> has no 'name'",
        ),
        (
            "upper_name",
            "class C(Algorithm):\n    '''Shouting.'''\n    name = 'FedX'\n",
            r"algorithm name 'FedX', which is not lowercase; use 'fedx'",
        ),
        (
            "no_doc",
            "class C(Algorithm):\n    name = 'nodoc'\n",
            r"algorithm 'nodoc' of plugin no_doc .* has no docstring.*add one to class C",
        ),
        (
            "blank_doc",
            "class C(Algorithm):\n    '''   '''\n    name = 'blankdoc'\n",
            r"algorithm 'blankdoc' .* has no docstring",
        ),
        (
            "plain_params",
            "class P:\n    share = 'all'\n"
            "class C(Algorithm):\n    '''Odd parameters.'''\n    name = 'plain'\n    Params = P\n",
            r"'plain' .* Params = <class 'plain_params.P'>, which is not a subclass of "
            r"fmtlbench.components.Params",
        ),
        (
            "pydantic_params",
            "from pydantic import BaseModel\n"
            "class P(BaseModel):\n    share: str = 'all'\n"
            "class C(Algorithm):\n    '''Loose parameters.'''\n"
            "    name = 'loose'\n    Params = P\n",
            r"'loose' .* not a subclass of fmtlbench.components.Params",
        ),
    ],
)
def test_registry_refuses_what_contributing_forbids(tmp_path, monkeypatch, module, body, message):
    with pytest.raises(RegistryError, match=message) as err:
        _register(tmp_path, monkeypatch, module, body)
    assert "\n" not in str(err.value)


def test_registry_accepts_an_inherited_params_and_a_multiline_docstring(tmp_path, monkeypatch):
    body = (
        "class P(AlgorithmParams):\n    mix: float = 0.5\n"
        "class C(Algorithm):\n    '''Mixes.\n\n    More prose.\n    '''\n"
        "    name = 'mixer'\n    Params = P\n"
        "    def aggregate(self, round, updates):\n        return {}\n"
    )
    registry = _register(tmp_path, monkeypatch, "good_plugin", body)
    assert registry.names("algorithm") == ["mixer"]
    assert registry.get("algorithm", "mixer").summary() == "Mixes."
