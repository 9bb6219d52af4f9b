"""Modules imported on first use, so that listing and validating components stays fast.

``fmtlbench list``, ``fmtlbench --help`` and config validation import every plugin module to
read its components' names, summaries and ``Params``; none of that needs torch, timm or
torchvision, which together take seconds to import. A plugin or core module that needs such a
library for its maths writes ``torch = lazy.module("torch")`` at module level and uses
``torch.…`` inside its functions as usual: the real import happens at the first attribute
access, i.e. when a run actually computes something. ``from torch import nn`` at module level
would import torch at once, so class definitions that subclass ``torch.nn.Module`` belong in
a module that is itself imported only when a model is built.

Defer torch itself, not the packages built on it (timm, torchvision): a deferred module sits in
``sys.modules``, and torch's own import walks ``sys.modules`` (``inspect.getmodule``), which
would start a deferred timm while torch is half initialised and leave it broken. Import those
inside the functions that need them.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """``name`` as a module object whose real import is deferred to its first attribute
    access (the standard library's ``importlib.util.LazyLoader``); an already imported
    module is returned as it is. Only top-level packages can be deferred."""
    if "." in name:
        # finding a submodule imports its parent package at once, defeating the purpose
        raise ValueError(
            f"lazy.module({name!r}): defer a top-level package and reach its submodules "
            f"through it (e.g. torch.nn.functional after torch = lazy.module('torch'))"
        )
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    found = importlib.util.module_from_spec(spec)
    sys.modules[name] = found
    loader.exec_module(found)
    return found
