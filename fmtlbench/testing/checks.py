"""Contract checks shared by every component kind: name, summary, parameters; and the model
parts (backbones, decoders), whose contract is a shape contract."""

from __future__ import annotations

import math
from typing import Any

import annotated_types
import pydantic

from fmtlbench.components import KINDS, Params


class ContractError(AssertionError):
    """A plugin breaks the component contract; the message names the rule and the fix."""


def _fail(cls: Any, rule: str) -> None:
    raise ContractError(f"{getattr(cls, 'name', cls)!s}: {rule}")


def check_component(cls: type, kind: str) -> None:
    """What the registry requires of every component class (see ``Registry.add``): the base
    class of its kind, a lowercase name, a one-line summary, a ``Params`` model."""
    from fmtlbench.registry import Registry

    if kind not in KINDS:
        raise ContractError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    try:
        Registry().add(kind, cls, "fmtlbench.testing")
    except Exception as exc:  # the registry's own refusal, in its words
        raise ContractError(str(exc)) from None
    check_params(cls)


#: A value of no parameter type: only a field typed ``Any`` would accept it.
_FOREIGN = object()


def _bound_violations(field: pydantic.fields.FieldInfo) -> list[tuple[str, Any]]:
    """``(rule, value)`` pairs just outside each numeric bound the field declares."""
    out: list[tuple[str, Any]] = []
    for rule in field.metadata:
        for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(rule, attr, None)
            if isinstance(rule, getattr(annotated_types, attr.capitalize())) and bound is not None:
                if isinstance(bound, int) and not isinstance(bound, bool):
                    value = bound + step
                else:
                    value = bound + step * max(1e-6, abs(bound) * 1e-6) if step else bound
                out.append((f"{attr}={bound}", value))
    return out


def check_params(cls: type) -> None:
    """The component builds with no parameters, and its ``Params`` rejects bad values: an
    unknown field, a value of no parameter type in every field, and each declared numeric
    bound crossed."""
    model = getattr(cls, "Params", None)
    if not (isinstance(model, type) and issubclass(model, Params)):
        _fail(cls, "Params must be a subclass of fmtlbench.components.Params (a pydantic model)")
    for name, field in model.model_fields.items():
        if field.is_required():
            _fail(
                cls,
                f"Params field {name!r} has no default: every component must build without "
                "parameters (`fmtlbench run --algo NAME`); give the field a default",
            )
    try:
        model()
    except pydantic.ValidationError as exc:
        _fail(cls, f"its default Params do not validate: {exc.errors()[0]['msg']}")
    bad: list[tuple[str, dict[str, Any]]] = [("an unknown field", {"no_such_parameter": 1})]
    for name, field in model.model_fields.items():
        if field.annotation is not Any:
            bad.append((f"{name!r} set to an object of no parameter type", {name: _FOREIGN}))
        for rule, value in _bound_violations(field):
            if isinstance(value, float) and not math.isfinite(value):
                continue
            bad.append((f"{name!r} = {value!r}, outside its bound {rule}", {name: value}))
    for what, values in bad:
        try:
            model(**values)
        except pydantic.ValidationError:
            continue
        _fail(cls, f"its Params accepted {what}; declare the field's type and bounds")


def check_backbone(cls: type, resolution: tuple[int, int] = (64, 80)) -> None:
    """A backbone builds at a small resolution into a module whose ``channels`` and
    ``reductions`` describe, finest first, the feature maps its forward pass returns."""
    import torch

    check_component(cls, "backbone")
    module = cls(cls.Params()).build(resolution)
    channels, reductions = list(module.channels), list(module.reductions)
    if len(channels) != len(reductions) or not channels:
        _fail(
            cls,
            f"channels {channels} and reductions {reductions} must be non-empty lists of "
            "one length",
        )
    if reductions != sorted(reductions):
        _fail(cls, f"reductions {reductions} must be finest first (increasing)")
    module.eval()
    with torch.no_grad():
        maps = module(torch.zeros(2, 3, *resolution))
    if len(maps) != len(channels):
        _fail(cls, f"forward returned {len(maps)} feature maps for {len(channels)} declared")
    for level, (fmap, c, r) in enumerate(zip(maps, channels, reductions, strict=True)):
        sizes = [(math.floor(s / r), math.ceil(s / r)) for s in resolution]
        h_ok = sizes[0][0] <= fmap.shape[2] <= sizes[0][1]
        w_ok = sizes[1][0] <= fmap.shape[3] <= sizes[1][1]
        if fmap.shape[:2] != (2, c) or not (h_ok and w_ok):
            _fail(
                cls,
                f"feature map {level} has shape {tuple(fmap.shape)}; declared {c} channels at "
                f"1/{r} of {resolution}",
            )


def check_decoder(
    cls: type, dataset: str = "nyudv2", resolution: tuple[int, int] = (64, 80)
) -> None:
    """A decoder builds for a dataset's tasks on a tiny feature pyramid and returns one
    prediction per asked task with the task's channels; every state key is tagged "decoder" or
    "task", and a task key names its task as one dot-separated segment."""
    import torch

    from fmtlbench.registry import load_registry
    from fmtlbench.testing.tiny import TinyPyramid

    check_component(cls, "decoder")
    specs = dict(load_registry().get("dataset", dataset).tasks)
    encoder = TinyPyramid().build(resolution)
    module = cls(cls.Params()).build(encoder.channels, encoder.reductions, specs)
    module.eval()
    with torch.no_grad():
        features = encoder(torch.zeros(2, 3, *resolution))
        for asked in (list(specs), list(specs)[:1]):
            preds = module(features, asked)
            if set(preds) != set(asked):
                _fail(cls, f"forward asked for {asked} returned {sorted(preds)}")
            for task, pred in preds.items():
                if pred.dim() != 4 or pred.shape[:2] != (2, specs[task].channels):
                    _fail(
                        cls,
                        f"task {task!r} prediction has shape {tuple(pred.shape)}; expected "
                        f"2 x {specs[task].channels} x H x W",
                    )
    for key in module.state_dict():
        group, task = module.group_of(key), module.task_of(key)
        if group not in ("decoder", "task"):
            _fail(cls, f"group_of({key!r}) is {group!r}; must be 'decoder' or 'task'")
        if task is not None and (task not in specs or task not in key.split(".")):
            _fail(cls, f"task_of({key!r}) is {task!r}: not one of its tasks named in the key")
