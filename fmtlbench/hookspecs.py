"""The hooks through which plugins provide components.

Every hook returns a list. A plugin is a module named by an entry point of the ``fmtlbench``
group (``[project.entry-points.fmtlbench]`` in its ``pyproject.toml``) that implements one or
more of these hooks with ``@fmtlbench.hookimpl``. The built-in components are registered this
way too, so a third-party package is a first-class citizen.

Example, a module ``fmtlbench_myalgo/plugin.py``::

    from fmtlbench import hookimpl
    from fmtlbench.components import Algorithm

    class MyAlgo(Algorithm):
        '''FedAvg with a twist.'''
        name = "myalgo"
        def aggregate(self, round, updates): ...

    @hookimpl
    def register_algorithms():
        return [MyAlgo]
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fmtlbench")


@hookspec
def register_datasets() -> list[type]:
    """Dataset classes (subclasses of ``fmtlbench.components.Dataset``)."""


@hookspec
def register_partitioners() -> list[type]:
    """Partitioner classes (subclasses of ``fmtlbench.components.Partitioner``)."""


@hookspec
def register_backbones() -> list[type]:
    """Backbone classes (subclasses of ``fmtlbench.components.Backbone``)."""


@hookspec
def register_decoders() -> list[type]:
    """Decoder classes, one per architecture (subclasses of ``fmtlbench.components.Decoder``)."""


@hookspec
def register_algorithms() -> list[type]:
    """Federated algorithm classes (subclasses of ``fmtlbench.components.Algorithm``)."""


@hookspec
def register_executors() -> list[type]:
    """Executor classes (subclasses of ``fmtlbench.components.Executor``)."""


@hookspec
def register_weightings() -> list[type]:
    """Client-side task weighting classes (subclasses of ``fmtlbench.components.Weighting``)."""


@hookspec
def register_tasks() -> list[type]:
    """Task kinds (subclasses of ``fmtlbench.components.TaskKind``): everything the core needs
    to train, evaluate and tabulate one kind of dense-prediction task."""


@hookspec
def register_scenarios() -> list:
    """Scenario specs (``fmtlbench.scenario.ScenarioSpec`` instances): data, not classes."""


#: Hook name -> component kind it provides. The owner of the component-kind vocabulary: the
#: plural a kind is listed under (``fmtlbench list tasks``) is its hook's name without
#: ``register_``.
HOOKS: dict[str, str] = {
    "register_datasets": "dataset",
    "register_partitioners": "partitioner",
    "register_backbones": "backbone",
    "register_decoders": "decoder",
    "register_algorithms": "algorithm",
    "register_executors": "executor",
    "register_weightings": "weighting",
    "register_tasks": "task",
    "register_scenarios": "scenario",
}

#: Component kind -> its plural, as used in messages and by ``fmtlbench list``.
PLURALS: dict[str, str] = {kind: hook.removeprefix("register_") for hook, kind in HOOKS.items()}
