"""The partitioner contract, checked on a real tiny dataset with several share vectors.

``check_partitioner`` splits the training ids of a dataset instance (by default the built-in
nyudv2 synthetic twin, opened by ``fmtlbench.testing.datasets.open_twin``) for equal shares,
unequal shares and a single client, and checks that:

- there is one part per share, each a list;
- the parts are disjoint (no id twice, in one part or in two) and cover every id, inventing
  none;
- every id comes back as the very value it was given, of its original type (not a numpy
  string or an int parsed from it);
- the sizes are exactly ``fmtlbench.partition.share_counts`` of the shares: that is the
  scenario's size rule, which ``materialise`` enforces on every partitioner, so no other
  tolerance can be documented (a label-skewed partitioner such as dirichlet skews what each
  client holds, not how much);
- the ids handed in are left as they were (the caller keeps using them);
- one seed gives one split, also from a fresh instance; and a partitioner that declares
  ``randomised = True`` gives another split for some other seed (one that does not declare it
  is not asked to).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmtlbench.components import Dataset, Params, Partitioner
from fmtlbench.partition import share_counts
from fmtlbench.testing.checks import ContractError, check_component

#: Share vectors the split is checked with: equal, unequal (the study's 1:2:3:4), one client.
SHARES: tuple[tuple[float, ...], ...] = ((1, 1, 1, 1), (1, 2, 3, 4), (1,))
#: Seeds a randomised partitioner is split with; some pair must differ.
SEEDS = (0, 1, 2, 3)


def _fail(cls: Any, rule: str) -> None:
    raise ContractError(f"partitioner {getattr(cls, 'name', cls)!s}: {rule}")


def _check_parts(
    cls: type[Partitioner], parts: Any, ids: list[Any], shares: Sequence[float], seed: int
) -> list[list[Any]]:
    where = f"split of {len(ids)} ids for shares {list(shares)} (seed {seed})"
    if not isinstance(parts, Sequence) or isinstance(parts, str | bytes):
        _fail(cls, f"{where} returned a {type(parts).__name__}, not a list of lists of ids")
    if len(parts) != len(shares):
        _fail(cls, f"{where} returned {len(parts)} parts for {len(shares)} shares (clients)")
    parts = [list(p) for p in parts]
    given = {i: type(i) for i in ids}
    owner: dict[Any, int] = {}
    for client, part in enumerate(parts):
        for item in part:
            if item in owner:
                again = "twice to client" if owner[item] == client else "to clients"
                others = client if owner[item] == client else f"{owner[item]} and {client}"
                _fail(cls, f"{where} gave id {item!r} {again} {others}: parts must be disjoint")
            owner[item] = client
            if item not in given:
                _fail(cls, f"{where} invented id {item!r}, which is not among the ids given")
            if type(item) is not given[item]:
                _fail(
                    cls,
                    f"{where} returned id {item!r} as {type(item).__name__}, given as "
                    f"{given[item].__name__}: return the ids themselves, not converted copies",
                )
    missing = [i for i in ids if i not in owner]
    if missing:
        _fail(cls, f"{where} dropped id {missing[0]!r}: the parts must cover every id")
    sizes, rule = [len(p) for p in parts], share_counts(len(ids), shares)
    if sizes != rule:
        _fail(
            cls,
            f"{where} gave parts of sizes {sizes}; the size rule (share_counts, enforced by "
            f"materialise) needs exactly {rule}",
        )
    return parts


def _split(
    cls: type[Partitioner],
    params: Params,
    ids: list[Any],
    shares: Sequence[float],
    seed: int,
    dataset: Dataset,
) -> list[list[Any]]:
    given = list(ids)
    parts = cls(params).split(given, list(shares), seed, dataset)
    if given != ids:
        _fail(
            cls,
            f"split changed the list of ids it was given (shares {list(shares)}, seed {seed}): "
            "copy it before shuffling",
        )
    return _check_parts(cls, parts, ids, shares, seed)


def _check(cls: type[Partitioner], params: Params, dataset: Dataset) -> None:
    ids = list(dataset.ids("train"))
    if len(ids) < 2 * max(len(s) for s in SHARES):
        raise ContractError(
            f"partitioner {cls.name}: dataset {dataset.name} has {len(ids)} training ids; the "
            f"check needs at least {2 * max(len(s) for s in SHARES)}"
        )
    for shares in SHARES:
        first = _split(cls, params, ids, shares, SEEDS[0], dataset)
        if _split(cls, params, ids, shares, SEEDS[0], dataset) != first:
            _fail(
                cls,
                f"two splits with seed {SEEDS[0]} for shares {list(shares)} differ: one seed "
                "must give one split (seed every random draw from the seed argument)",
            )
        if not cls.randomised or len(shares) < 2:
            continue
        others = [_split(cls, params, ids, shares, seed, dataset) for seed in SEEDS[1:]]
        if all(other == first for other in others):
            _fail(
                cls,
                f"declares randomised = True, but seeds {list(SEEDS)} all give one split for "
                f"shares {list(shares)}: draw from the seed, or declare randomised = False",
            )


def check_partitioner(
    cls: type[Partitioner],
    dataset: Dataset | None = None,
    params: Params | None = None,
    workdir: Path | None = None,
) -> None:
    """Run the partitioner contract (module docstring) on ``cls`` built with ``params``
    (default: its defaults), splitting the training ids of ``dataset`` (default: the
    built-in nyudv2 twin at the kit's tiny size, synthesised under ``workdir``, or a
    temporary folder)."""
    check_component(cls, "partitioner")
    params = params if params is not None else cls.Params()
    if dataset is not None:
        _check(cls, params, dataset)
        return
    from fmtlbench.registry import load_registry
    from fmtlbench.testing.datasets import open_twin

    nyudv2 = load_registry().get("dataset", "nyudv2")
    if workdir is not None:
        _check(cls, params, open_twin(nyudv2, Path(workdir)))
        return
    with tempfile.TemporaryDirectory(prefix="fmtlbench-kit-") as scratch:
        _check(cls, params, open_twin(nyudv2, Path(scratch)))
