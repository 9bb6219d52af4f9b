"""CONTRIBUTING.md cannot drift from the code: every hook and every public member of each
component base class is documented where that kind's contract is described, and the guide's
example plugin is written out as a package, registered through an entry point and put through
the plugin kit."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from fmtlbench import hookspecs
from fmtlbench.components import KINDS, Component
from fmtlbench.registry import build_registry

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "CONTRIBUTING.md").read_text()

#: Where the guide describes each kind's contract: the line that opens the passage (a bullet
#: of "The component contracts" or a section heading).
PASSAGES = {
    "dataset": "- **Dataset**",
    "partitioner": "- **Partitioner**",
    "backbone": "- **Backbone**",
    "decoder": "- **Decoder**",
    "algorithm": "- **Algorithm**",
    "executor": "- **Executor**",
    "weighting": "### Task weightings",
    "task": "### Task kinds",
}


FENCE = re.compile(r"^( *)```.*?^\1```[^\n]*$", flags=re.S | re.M)


def without_fences(text: str) -> str:
    """The guide's prose: fenced code blocks blanked out, line for line (a name must be
    documented, not merely used in an example; a ``#`` comment in one is no heading)."""
    return FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def passage(opening: str) -> str:
    """The text from ``opening`` to the next bullet at its level or heading (a bullet), or to
    the next heading of its level or above (a heading); code blocks included."""
    start = GUIDE.index(opening) + len(opening)
    rest = without_fences(GUIDE)[start:]
    if opening.startswith("#"):
        level = len(opening) - len(opening.lstrip("#"))
        end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    else:
        end = re.search(r"^(- \*\*|#)", rest, flags=re.M)
    return GUIDE[start - len(opening) : start + end.start() if end else None]


def documented(text: str) -> set[str]:
    """Names a code span of ``text`` is about: the head of each of its ``/``-separated parts
    (``weights()``, ``gradient = True``, ``fmtlbench.maths.weighted_mean``,
    ``state_dict()/load_state_dict()``), not every word in it (``check(cls, kind)`` does not
    document ``kind``)."""
    names = set()
    for span in re.findall(r"`([^`]+)`", without_fences(text)):
        for part in span.split("/"):
            head = re.match(r"\s*([A-Za-z_][\w.]*)", part)
            if head:
                names.add(head.group(1).rsplit(".", 1)[-1])
    return names


def public_members(cls: type) -> list[str]:
    """What ``cls`` itself defines or declares (annotations included), private names aside."""
    own = [*vars(cls), *vars(cls).get("__annotations__", {})]
    return sorted({n for n in own if not n.startswith("_")})


def test_every_hook_is_documented() -> None:
    missing = sorted(set(hookspecs.HOOKS) - documented(GUIDE))
    assert not missing, f"hooks missing from CONTRIBUTING.md: {missing}"


def test_the_common_component_members_are_documented() -> None:
    """``name``, ``kind``, ``Params``, ``summary`` (redeclared by every base): in "Writing a
    plugin", which every plugin author reads."""
    rules = passage("## Writing a plugin").split("### The component contracts")[0]
    missing = [n for n in public_members(Component) if n not in documented(rules)]
    assert not missing, f"Component members missing from 'Writing a plugin': {missing}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_public_member_of_each_base_class_is_documented(kind: str) -> None:
    assert set(PASSAGES) == set(KINDS), "a kind without a passage to check against"
    cls = KINDS[kind]
    common = set(public_members(Component))
    names = documented(passage(PASSAGES[kind]))
    missing = [n for n in public_members(cls) if n not in common and n not in names]
    assert not missing, (
        f"{cls.__name__} members missing from CONTRIBUTING.md under {PASSAGES[kind]!r}: "
        f"{missing}; document each in backticks there"
    )


# --------------------------------------------------------------------------- the example plugin
def guide_blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of "Writing a plugin" (up to its contracts)."""
    section = passage("## Writing a plugin").split("### The component contracts")[0]
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.S | re.M)


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> EntryPoint:
    """The guide's pyproject snippet and plugin module written out as a package; the entry
    point its pyproject declares."""
    (toml,) = guide_blocks("toml")
    (code,) = guide_blocks("python")
    project = tomllib.loads(toml)
    ((name, target),) = project["project"]["entry-points"]["fmtlbench"].items()
    path = code.splitlines()[0].removeprefix("# ").strip()
    assert path == target.replace(".", "/") + ".py", (path, target)
    root = tmp_path_factory.mktemp("example-plugin")
    (root / "pyproject.toml").write_text(toml)
    module = root / path
    module.parent.mkdir(parents=True)
    (module.parent / "__init__.py").write_text("")
    module.write_text(code)
    sys.path.insert(0, str(root))
    yield EntryPoint(name=name, value=target, group="fmtlbench")
    sys.path.remove(str(root))
    for loaded in [m for m in sys.modules if m.split(".")[0] == target.split(".")[0]]:
        del sys.modules[loaded]


def test_the_guide_example_registers_and_keeps_the_algorithm_contract(
    example_plugin: EntryPoint, tmp_path: Path
) -> None:
    from fmtlbench.testing import check_algorithm_cell, check_component

    registry = build_registry([example_plugin])
    assert not [p.error for p in registry.plugins if p.error]
    (name,) = registry.names("algorithm")
    cls = registry.get("algorithm", name)
    assert name == "mix" and cls.summary().startswith("Each client keeps")
    check_component(cls, "algorithm")
    assert check_algorithm_cell(cls, "md", "iid1", tmp_path) == "ok"  # ran, not refused
    # The parameter the guide says is validated is: within bounds accepted, outside refused.
    assert cls.Params(mix=0.25).mix == 0.25
    with pytest.raises(ValueError, match="mix"):
        cls.Params(mix=1.5)
