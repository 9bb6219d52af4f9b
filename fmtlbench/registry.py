"""One registry for every component kind, filled from the ``fmtlbench`` entry-point group.

Plugins are discovered through entry points only (built-in ones included), loaded one by one so
that a plugin that fails to import is recorded and reported instead of breaking or hiding
everything else, and their ``register_*`` hooks are called to collect components. A name that
two plugins register is an error naming both; an unknown name gets a "did you mean".
"""

from __future__ import annotations

import difflib
import functools
import traceback
import types
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from fmtlbench import hookspecs
from fmtlbench.errors import RegistryError, UnknownComponentError

GROUP = "fmtlbench"

#: Plural forms used in messages and in ``fmtlbench list`` (owned by ``hookspecs``).
PLURALS = hookspecs.PLURALS


@dataclass(frozen=True)
class Entry:
    """A registered component and the plugin that provided it."""

    kind: str
    name: str
    obj: Any
    provider: str


@dataclass
class PluginInfo:
    """An entry point of the ``fmtlbench`` group, loaded or not."""

    name: str
    module: str
    distribution: str
    version: str
    error: str | None = None
    components: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"


class Registry:
    """``kind -> name -> Entry`` for every installed component."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in PLURALS}
        self.plugins: list[PluginInfo] = []

    # ------------------------------------------------------------------ filling
    def add(self, kind: str, obj: Any, provider: str) -> None:
        """Register ``obj`` under its ``name`` after the checks CONTRIBUTING.md promises: the
        kind's type, a unique lowercase name and, for component classes, a docstring summary
        (what ``fmtlbench list`` shows) and a ``Params`` model (what ``--set`` validates
        against). A second provider of the name is an error naming both."""
        _check_kind(kind, obj, provider)
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(
                f"plugin {provider}: {kind} {obj!r} has no 'name'; give it a lowercase string "
                f"name (e.g. name = 'my{kind}')"
            )
        if name != name.lower():
            raise RegistryError(
                f"plugin {provider} registered the {kind} name {name!r}, which is not lowercase;"
                f" use {name.lower()!r}"
            )
        if isinstance(obj, type):
            _check_component(kind, obj, provider)
        table = self._entries[kind]
        if name in table:
            raise RegistryError(
                f"{kind} '{name}' is registered twice: by {table[name].provider} and by "
                f"{provider}. Uninstall one of the two distributions or rename the component."
            )
        table[name] = Entry(kind, name, obj, provider)

    # ------------------------------------------------------------------ lookup
    def get(self, kind: str, name: str) -> Any:
        """The component ``name`` of ``kind``, or an error suggesting near misses."""
        table = self._entries[kind]
        if name in table:
            return table[name].obj
        installed = sorted(table)
        close = difflib.get_close_matches(name, installed, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(installed) if installed else "none"
        broken = [p.label for p in self.plugins if p.error]
        extra = f" (plugins that failed to load: {', '.join(broken)})" if broken else ""
        raise UnknownComponentError(
            f"unknown {kind} '{name}'.{hint} Installed {PLURALS[kind]}: {listing}{extra}."
        )

    def entry(self, kind: str, name: str) -> Entry:
        self.get(kind, name)
        return self._entries[kind][name]

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def registered(self, kind: str) -> list[str]:
        """Names of ``kind`` in registration order (plugins by entry-point name, then each
        plugin's own order): for listings whose order means something, like table rows."""
        return list(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]


def _check_kind(kind: str, obj: Any, provider: str) -> None:
    """Reject hook results that are not of the kind the hook promises."""
    if kind == "scenario":
        from fmtlbench.scenario import ScenarioSpec

        ok = isinstance(obj, ScenarioSpec)
    else:
        from fmtlbench.components import KINDS

        ok = isinstance(obj, type) and issubclass(obj, KINDS[kind])
    if not ok:
        raise RegistryError(f"plugin {provider} returned {obj!r} from its {kind} hook: wrong type")


def _check_component(kind: str, cls: type, provider: str) -> None:
    """A component class says what it is (its summary) and how it is configured (``Params``)."""
    from fmtlbench.components import Params

    label = f"{kind} '{cls.name}' of plugin {provider}"
    if not cls.summary().strip():
        raise RegistryError(
            f"{label} has no docstring: its first line is the summary `fmtlbench list` shows; "
            f"add one to class {cls.__qualname__}"
        )
    model = getattr(cls, "Params", None)
    if not (isinstance(model, type) and issubclass(model, Params)):
        raise RegistryError(
            f"{label} has Params = {model!r}, which is not a subclass of "
            "fmtlbench.components.Params; derive its parameter model from that class (or from "
            "its kind's, e.g. AlgorithmParams)"
        )


def _plugin_info(ep: EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    return PluginInfo(
        name=ep.name,
        module=ep.value,
        distribution=dist.name if dist is not None else "?",
        version=dist.version if dist is not None else "?",
    )


def _hooks_of(module: types.ModuleType) -> types.SimpleNamespace:
    """The module's hook implementations alone, which is what pluggy is given to register.

    pluggy inspects every attribute of what it registers, and asking a lazily imported package
    (``fmtlbench.lazy``) even for its class imports it: registering the module itself would
    import torch for ``fmtlbench list``. ``vars`` and ``type`` read no attribute of the values.
    """
    marker = f"{GROUP}_impl"
    return types.SimpleNamespace(
        **{
            name: value
            for name, value in vars(module).items()
            if type(value) is types.FunctionType and hasattr(value, marker)
        }
    )


def build_registry(eps: list[EntryPoint] | None = None) -> Registry:
    """Load every entry point of the group and collect what their hooks return."""
    registry = Registry()
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    found = list(entry_points(group=GROUP)) if eps is None else eps
    for ep in sorted(found, key=lambda e: (e.name, e.value)):
        info = _plugin_info(ep)
        registry.plugins.append(info)
        try:
            module = ep.load()
            manager.register(_hooks_of(module), name=info.label)
        except Exception as exc:  # a broken plugin is reported, never fatal for the others
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            info.error = last
    for hook_name, kind in hookspecs.HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            info = next(p for p in registry.plugins if p.label == impl.plugin_name)
            try:
                result = impl.function()
            except Exception as exc:
                info.error = traceback.format_exception_only(type(exc), exc)[-1].strip()
                continue
            for obj in result or []:
                registry.add(kind, obj, info.label)
                info.components.append(f"{kind}:{obj.name}")
    return registry


@functools.cache
def load_registry() -> Registry:
    """The process-wide registry (built on first use)."""
    return build_registry()
