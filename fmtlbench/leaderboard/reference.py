"""Which run is the Δ% reference of a run (SPEC section 6).

Default rule: the Local algorithm with the MD architecture on scenario ``iid1``, with the same
backbone and the same data kind (synthetic or real) as the run, so that a ResNet run is never
measured against a Swin reference nor real data against a synthetic twin. Among matching
runs the one with the same seed is preferred (pairing removes seed noise), then the same
client count for ``iid1`` runs (the K = 2..8 case study) or the standard four clients
otherwise, then the newest. A reference can also be named explicitly (an MLflow run id, or a
method name for published tables).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fmtlbench.errors import ConfigError
from fmtlbench.leaderboard.records import Record

#: The client count of the standard iid1 scenario (SPEC section 3).
IID1_CLIENTS = "4"

RULE = (
    "algorithm=local, arch=md, scenario=iid1, same backbone and data kind, same experiment; "
    "preferring the same seed, then the same client count (iid1) or 4 clients, then the newest"
)


def required_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags a reference run of a run with ``tags`` must carry (the rule's hard part)."""
    out = {"algorithm": "local", "arch": "md", "scenario": "iid1"}
    for tag in ("backbone", "data"):
        if tag in tags:
            out[tag] = tags[tag]
    return out


def choose(record: Record, candidates: Sequence[Record]) -> Record | None:
    """The reference of ``record`` among ``candidates`` by the default rule, or None."""
    needed = required_tags(record.tags)
    matching = [c for c in candidates if all(c.tags.get(k) == v for k, v in needed.items())]
    if not matching:
        return None
    same_k = record.tags.get("scenario") == "iid1"
    clients = record.tags.get("clients") if same_k else IID1_CLIENTS

    def preference(c: Record) -> tuple[bool, bool, int]:
        return (c.seed == record.seed, c.tags.get("clients") == clients, c.start_time)

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
