"""No core module names a task: everything about a task comes from its registered kind.

The scan reads every module of ``fmtlbench/`` as Python syntax and looks at its string
literals (docstrings excepted, f-string parts included): a literal that is a task's name
(``"edge"``) or uses it as a segment of a key or dotted path (``"G/nyudv2/depth/rmse"``,
``"training.metrics.primary.edge"``) means the module keeps its own per-task knowledge, which a
third-party task kind could never extend. Prose that mentions a task ("edge odsF skipped")
is not such a use.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fmtlbench.tasks import known_tasks

CORE = Path(__file__).resolve().parents[1] / "fmtlbench"


def pattern(names: list[str]) -> re.Pattern[str]:
    """A literal that is one of ``names`` or holds one as a ``/`` or ``.`` separated segment."""
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?:^|[/.])(?:{alternatives})(?:[/.]|$)")


def docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def task_literals(source: str, names: list[str]) -> list[tuple[int, str]]:
    """(line, literal) of every string literal in ``source`` that names a task."""
    tree = ast.parse(source)
    skip = docstring_nodes(tree)
    found = pattern(names)
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and found.search(node.value)
    )


def test_the_scan_catches_task_tables_keys_and_comparisons() -> None:
    """Self-check: the scan flags the ways a module used to carry per-task knowledge and
    leaves prose and docstrings alone."""
    names = ["semseg", "depth", "normals", "edge"]
    offending = """
LOSS_WEIGHTS = {"semseg": 1.0, "edge": 50.0}
if task == "normals":
    pass
key = f"G/{dataset}/depth/rmse"
path = "training.metrics.primary.edge"
"""
    assert [line for line, _ in task_literals(offending, names)] == [2, 2, 3, 5, 6]
    harmless = '''
"""The edge F-measure and the normals flip, in a docstring."""
def f():
    """semseg here is prose."""
    return "edge odsF/oisF skipped: pyEdgeEval is not installed"
edges = "edges"
thresholds = "edge_thresholds"
'''
    assert task_literals(harmless, names) == []


def test_no_core_module_names_a_task() -> None:
    names = known_tasks()
    assert {"semseg", "parts", "depth", "normals", "edge", "saliency"} <= set(names)
    hits = [
        f"{path.relative_to(CORE.parent)}:{line}: {text!r}"
        for path in sorted(CORE.rglob("*.py"))
        for line, text in task_literals(path.read_text(), names)
    ]
    assert not hits, "task names in core modules (move them onto the task kind):\n" + "\n".join(
        hits
    )


@pytest.mark.parametrize("task", ["semseg", "edge"])
def test_a_reintroduced_table_would_be_found(task: str) -> None:
    """The scan over a real core module with one per-task line added fails on that line."""
    source = (CORE / "losses.py").read_text() + f'\nWEIGHTS = {{"{task}": 1.0}}\n'
    lines = source.count("\n")
    assert task_literals(source, known_tasks()) == [(lines, task)]
