"""The algorithm contract, run on tiny synthetic federations.

One cell is one (architecture, scenario) pair: multi-task clients of one dataset (iid1),
single-task clients whose decoder bodies are exchanged (niid2), two datasets with different task
sets (niid6), each for MD and TC models. In a cell the algorithm either refuses the clients in
``setup`` with one clear ``IncompatibleError`` line, or it must:

- run two real rounds through the engine (local training with its context, client loss and
  schedule; aggregation; payloads loaded; traffic counted) with finite losses and states, and
  count upload traffic exactly when it exchanges something;
- survive a checkpoint: its server state, encoded in the checkpoint format and loaded into a
  fresh instance, gives the same exchange plan, phases, contexts (personal ones too) and next
  aggregation;
- send each client only entries that client exchanges;
- give every client the same payload whatever order the updates arrive in (within float32
  rounding: sums may be taken in another order).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from fmtlbench import checkpoint
from fmtlbench import metric_keys as keys
from fmtlbench.components import Algorithm, ClientInfo, Update
from fmtlbench.testing.checks import ContractError, check_params
from fmtlbench.testing.tiny import TINY_DECODER, TWIN, TinyPyramid, overrides

ARCHS = ("md", "tc")
SCENARIOS = ("iid1", "niid2", "niid6")

_BUILT: dict[tuple[int, str, str], Any] = {}
#: What a fresh instance loaded from the checkpointed server state must answer as the original
#: does, for every client (the personal hooks too: they are what a personalised client is sent).
WHAT_A_CHECKPOINT_KEEPS = (
    "exchanged_names",
    "local_phases",
    "context",
    "personal_phases",
    "personal_context",
)


def kit_registry(*extra: type) -> Any:
    """The installed registry plus the kit's tiny backbone (and ``extra`` algorithm classes
    that are not installed, e.g. one under development)."""
    from fmtlbench.registry import build_registry

    registry = build_registry()
    registry.add("backbone", TinyPyramid, "fmtlbench.testing")
    for cls in extra:
        if cls.name not in registry.names("algorithm"):
            registry.add("algorithm", cls, "fmtlbench.testing")
    return registry


def _federation(registry: Any, arch: str, scenario: str, workdir: Path) -> Any:
    """One federation per (registry, arch, scenario), built once; cells attach to copies."""
    from fmtlbench.config import build_config
    from fmtlbench.federation import build_federation

    key = (id(registry), arch, scenario)
    if key not in _BUILT:
        decoder = registry.get("decoder", arch).Params.model_fields
        datasets = {g.dataset for g in registry.get("scenario", scenario).groups}
        config = build_config(
            None,
            overrides(
                Path(workdir) / f"{arch}-{scenario}",
                scenario=scenario,
                algorithm={"name": "local"},
                backbone={"name": TinyPyramid.name},
                arch={
                    "name": arch,
                    "params": {k: v for k, v in TINY_DECODER.items() if k in decoder},
                },
                data={"datasets": {d: dict(TWIN) for d in datasets}},
                training={"rounds": 3, "eval_every": 100, "eval_initial": False},
            ),
        )
        _BUILT[key] = build_federation(config, registry)
    return _BUILT[key]


def same(a: Any, b: Any) -> bool:
    """Deep equality with exact tensor comparison."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _fail(algorithm: Algorithm, where: str, rule: str) -> None:
    raise ContractError(f"algorithm {algorithm.name} ({where}): {rule}")


def _restored(algorithm: Algorithm, infos: list[ClientInfo], initial: list, groups: list) -> Any:
    """A fresh instance set up like ``algorithm`` and loaded from its state, encoded in the
    checkpoint format (every server state must survive it as data)."""
    saved = checkpoint.decode(checkpoint.encode({"algorithm": algorithm.state_dict()}), "kit")
    twin = type(algorithm)(algorithm.params)
    twin.setup(infos, initial, groups)
    twin.load_state_dict(saved["algorithm"])
    return twin


def _close(a: dict, b: dict) -> str | None:
    """The first entry where two payload tables differ beyond float32 rounding, if any."""
    if a.keys() != b.keys():
        return f"clients {sorted(a)} vs {sorted(b)}"
    for client in a:
        if a[client].keys() != b[client].keys():
            return f"client {client} gets entries {sorted(a[client])} vs {sorted(b[client])}"
        for name, x in a[client].items():
            y = b[client][name]
            if x.shape != y.shape or x.dtype != y.dtype:
                return f"client {client} entry {name!r}: {x.shape}/{x.dtype} vs {y.shape}/{y.dtype}"
            if x.is_floating_point():
                scale = max(float(x.abs().max()) if x.numel() else 0.0, 1.0)
                if not torch.allclose(x, y, rtol=1e-5, atol=1e-6 * scale):
                    gap = float((x - y).abs().max())
                    return f"client {client} entry {name!r}: largest difference {gap:.3g}"
            elif not torch.equal(x, y):
                return f"client {client} entry {name!r} differs"
    return None


def check_algorithm_cell(
    cls: type[Algorithm], arch: str, scenario: str, workdir: Path, registry: Any = None
) -> str:
    """Run the contract for one (architecture, scenario) cell: ``"ok"``, or ``"refused"`` when
    setup refused the clients with one clear line. Raises ``ContractError`` otherwise."""
    from fmtlbench.engine import Engine
    from fmtlbench.errors import IncompatibleError

    registry = registry if registry is not None else kit_registry(cls)
    where = f"{arch.upper()} models, scenario {scenario}"
    base = _federation(registry, arch, scenario, workdir)
    fed = dataclasses.replace(base, states=[dict(s) for s in base.states])
    algorithm = cls(cls.Params())
    try:
        fed.attach(algorithm)
    except IncompatibleError as exc:
        message = str(exc)
        if "\n" in message or len(message) < 40:
            _fail(algorithm, where, f"a refusal must be one line that says why: {message!r}")
        return "refused"
    unset = [n for n in type(algorithm).server_state if not hasattr(algorithm, n)]
    if unset:
        _fail(algorithm, where, f"server_state names {unset}, which on_setup does not set")
    infos = [c.info for c in fed.clients]
    initial = [fed.exchangeable(k) for k in range(len(fed.clients))]
    engine = Engine(fed)
    try:
        for r in (1, 2):
            metrics = engine.run_round(r)
    except IncompatibleError as exc:  # the engine refused what the algorithm sent
        _fail(algorithm, where, f"a round failed: {exc}")
    losses = [v for k, v in metrics.items() if k.endswith("/train/total")]
    if len(losses) != len(fed.clients) or not all(math.isfinite(v) for v in losses):
        _fail(algorithm, where, f"local training losses are not all finite: {losses}")
    for k, state in enumerate(fed.states):
        for name, t in state.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                _fail(
                    algorithm, where, f"client {k}'s entry {name!r} is not finite after two rounds"
                )
    sends = any(algorithm.exchanged_names(k) for k in range(len(fed.clients)))
    up = metrics[keys.traffic_total("up")]
    if (up > 0) != sends:
        _fail(algorithm, where, f"upload traffic {up} B while exchanging: {sends}")

    twins = [_restored(algorithm, infos, initial, fed.groups) for _ in range(2)]
    for k in range(len(infos)):
        for what in WHAT_A_CHECKPOINT_KEEPS:
            if not same(getattr(twins[0], what)(k), getattr(algorithm, what)(k)):
                _fail(algorithm, where, f"{what}({k}) differs after a checkpoint round-trip")

    def round_three() -> list[Update]:
        return [
            Update(k, info.num_train, {n: fed.exchangeable(k)[n].clone() for n in keys})
            for k, info in enumerate(infos)
            for keys in [algorithm.exchanged_names(k)]
        ]

    payloads = algorithm.aggregate(3, round_three())
    if not same(payloads, twins[0].aggregate(3, round_three())):
        _fail(algorithm, where, "the aggregation after a checkpoint round-trip differs: some "
              "server state is not in state_dict()")  # fmt: skip
    for client, payload in payloads.items():
        extra = sorted(set(payload) - set(algorithm.exchanged_names(client)))
        if extra:
            _fail(algorithm, where, f"the payload of client {client} holds entries it does not "
                  f"exchange: {extra[:3]}; send only exchanged_names({client})")  # fmt: skip
    reordered = twins[1].aggregate(3, round_three()[::-1])
    difference = _close(payloads, reordered)
    if difference is not None:
        _fail(algorithm, where, f"updates in reverse order change the payloads ({difference}); "
              "key every per-client choice on Update.client, not on its position")  # fmt: skip
    return "ok"


def check_algorithm(
    cls: type[Algorithm],
    workdir: Path,
    archs: tuple[str, ...] = ARCHS,
    scenarios: tuple[str, ...] = SCENARIOS,
) -> dict[tuple[str, str], str]:
    """The whole algorithm contract: its parameters (``check_params``) and every cell;
    returns ``{(arch, scenario): "ok" | "refused"}``. At least one cell must run."""
    check_params(cls)
    registry = kit_registry(cls)
    out = {
        (arch, scenario): check_algorithm_cell(cls, arch, scenario, workdir, registry)
        for arch in archs
        for scenario in scenarios
    }
    if all(v == "refused" for v in out.values()):
        raise ContractError(f"algorithm {cls.name} refused every scenario: {sorted(out)}")
    return out
