"""Which run is the Δ% reference of a run (SPEC section 6).

Default rule, the study's convention: the Local algorithm with the MD architecture and the
ResNet-18 backbone - whatever the run's own backbone, so Swin-T rows are measured against
Local-MD-ResNet-18 as in the paper - on the same data kind (a synthetic twin is never compared
with real data). The scenario is ``iid1`` when an iid1 reference evaluates every task of the
run, otherwise the run's own scenario (the study's Table 7: niid6's PASCAL tasks are not in
iid1, so niid6 is measured against niid6's Local-MD-ResNet-18). Among matching runs the one
with the same seed is preferred (pairing removes seed noise), then the same client count for
iid1 runs (the K = 2..8 case study) or the standard four clients otherwise, then the newest.

``ReferenceRule`` holds the rule's parts so that a user can change them (``--reference-rule
backbone=swin-t``); a reference can also be named outright (an MLflow run id, or a method name
for published tables), and such a run is checked by ``check_reference`` and
``check_comparable`` before any Δ% is computed against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fmtlbench.errors import ConfigError
from fmtlbench.leaderboard.records import Record

#: The client count of the standard iid1 scenario (SPEC section 3).
IID1_CLIENTS = "4"
IID1 = "iid1"


class ReferenceRule(BaseModel):
    """The tags a default Δ% reference must carry, and where its scenario comes from.

    ``scenario``: ``auto`` takes iid1 when an iid1 reference evaluates every task of the run
    and the run's own scenario otherwise (the paper); ``iid1`` and ``same`` force one side.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: str = Field("local", min_length=1, description="algorithm of the reference")
    arch: str = Field("md", min_length=1, description="architecture of the reference")
    backbone: str = Field("resnet18", min_length=1, description="backbone of the reference")
    scenario: Literal["auto", "same", "iid1"] = Field(
        "auto", description="iid1, the run's own scenario, or auto (iid1 if it covers the run)"
    )

    @classmethod
    def parse(cls, pairs: Mapping[str, str], option: str = "--reference-rule") -> ReferenceRule:
        """The rule from ``KEY=VALUE`` pairs; one clear line naming the bad key otherwise."""
        try:
            return cls(**pairs)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "?"
            known = ", ".join(cls.model_fields)
            raise ConfigError(
                f"{option} {field}: {err['msg']} (keys: {known}; scenario is auto, same or iid1)"
            ) from None

    def describe(self) -> str:
        """The rule in one line, as printed with the leaderboard and logged with its run."""
        where = {
            "auto": "iid1 when it evaluates every task of the run, else the same scenario",
            "same": "the same scenario",
            "iid1": "iid1",
        }[self.scenario]
        return (
            f"algorithm={self.algorithm}, arch={self.arch}, backbone={self.backbone} "
            f"(whatever the run's backbone), same data kind, scenario {where}; preferring the "
            "same seed, then the same client count (iid1) or 4 clients, then the newest"
        )


DEFAULT = ReferenceRule()
RULE = DEFAULT.describe()


def _has(candidate: Record, tag: str, value: str | None) -> bool:
    """Whether ``candidate`` carries ``tag=value``; a tag a published table leaves out (no
    such column) cannot disqualify, a differing one does."""
    if value is None or tag not in candidate.tags:
        return True
    return candidate.tags[tag] == value


def tasks_of(record: Record) -> set[tuple[str, str]]:
    """The (dataset, task) pairs ``record`` evaluated."""
    return {(k.dataset, k.task) for k in record.final}


def covers(reference: Record, record: Record) -> bool:
    """Whether ``reference`` evaluated every task of ``record``."""
    return tasks_of(record) <= tasks_of(reference)


def choose(
    record: Record, candidates: Sequence[Record], rule: ReferenceRule = DEFAULT
) -> Record | None:
    """The reference of ``record`` among ``candidates`` by ``rule``, or None."""
    fixed = {"algorithm": rule.algorithm, "arch": rule.arch, "backbone": rule.backbone}
    pool = [
        c
        for c in candidates
        if all(c.tags.get(k) == v if k == "algorithm" else _has(c, k, v) for k, v in fixed.items())
        and _has(c, "data", record.tags.get("data"))
    ]
    iid1 = [c for c in pool if c.tags.get("scenario") == IID1]
    same = [c for c in pool if c.tags.get("scenario") == record.tags.get("scenario")]
    if rule.scenario == "iid1":
        matching = iid1
    elif rule.scenario == "same":
        matching = same
    else:
        matching = [c for c in iid1 if covers(c, record)] or same
    if not matching:
        return None
    same_k = record.tags.get("scenario") == IID1
    clients = record.tags.get("clients", IID1_CLIENTS) if same_k else IID1_CLIENTS

    def preference(c: Record) -> tuple[bool, bool, bool, int]:
        return (covers(c, record), c.seed == record.seed, c.tags.get("clients") == clients,
                c.start_time)  # fmt: skip

    return max(matching, key=preference)


def choose_by_method(record: Record, candidates: Sequence[Record], method: str) -> Record | None:
    """The record of method ``method`` (case-insensitive), same seed preferred."""
    matching = [c for c in candidates if c.method.lower() == method.lower()]
    if not matching:
        return None
    return max(matching, key=lambda c: (c.seed == record.seed, c.start_time))


def check_reference(run) -> None:
    """Refuse an MLflow ``run`` as a Δ% reference unless it has FINISHED: a RUNNING run has
    no final metrics yet and a FAILED or KILLED one holds those of an unfinished model."""
    status = run.info.status
    if status != "FINISHED":
        raise ConfigError(
            f"reference run '{run.info.run_id}' is {status}, not FINISHED; give a finished "
            "run as --reference (or wait for it to finish)"
        )


def check_comparable(reference: Record, records: Sequence[Record]) -> None:
    """Refuse a given reference run that was evaluated on other data or lacks tasks of the
    runs: Δ% against it would silently drop those tasks or compare twin with real data."""
    name = f"reference run '{reference.source}'"
    kinds = sorted({r.tags["data"] for r in records if "data" in r.tags})
    kind = reference.tags.get("data")
    if kind is not None and kinds and kinds != [kind]:
        raise ConfigError(
            f"{name} was evaluated on {kind} data, the runs on {', '.join(kinds)} data; "
            "give a reference of the same data kind"
        )
    missing = sorted(set().union(*(tasks_of(r) for r in records)) - tasks_of(reference))
    if missing:
        shown = ", ".join(f"{d}/{t}" for d, t in missing)
        raise ConfigError(
            f"{name} has no metrics of {shown}, which the runs evaluate; give a reference "
            "evaluated on the same tasks"
        )
