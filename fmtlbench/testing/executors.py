"""The executor contract: ``map`` runs a round's client jobs and hands the results back in
job order, round after round, and a failing job stops the round with an exception.

``check_executor`` builds the executor with ``params`` (a cluster address, for one that needs
a running cluster) and checks, on jobs whose later ones finish sooner (so an executor that
yields in completion order is caught) and with the module-level function ``kit_job``
(picklable by reference, so executors may ship it to other processes):

- ``map`` yields one result per job, in job order, equal to calling the function on every
  job here, one after another;
- ``map`` can be called again with the same function and new jobs (the next round), and
  gives the same answers;
- a job raising an exception makes consuming ``map`` raise (neither hang nor yield a
  placeholder such as ``None``), and the exception says what the job said;
- ``close`` can be called twice, on an executor that has run and on a fresh one.

Every wait is bounded by ``timeout`` seconds: an executor that never answers fails the check
instead of hanging the test session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fmtlbench.components import Executor, Params
from fmtlbench.testing.checks import ContractError, check_component

#: Jobs of the two rounds: (index, seconds to sleep, fails); later jobs sleep less, so they
#: finish first wherever jobs run side by side.
ROUNDS: tuple[list[tuple[int, float, bool]], ...] = (
    [(i, 0.02 * (5 - i), False) for i in range(6)],
    [(i, 0.02 * (3 - i % 4), False) for i in range(10, 14)],
)
#: The job of the failing round that raises, and what it says.
FAILING = 2
FAILURE = "kit job 2 fails on purpose"


def kit_job(job: tuple[int, float, bool]) -> dict[str, int]:
    """A client job stand-in: sleep, then a value only this job gives, or raise when the job
    says so. One function for every round, as a run maps one worker function all along."""
    index, delay, fails = job
    time.sleep(delay)
    if fails:
        raise ValueError(f"kit job {index} fails on purpose")
    return {"job": index, "value": index * index + 7}


def _fail(cls: Any, rule: str) -> None:
    raise ContractError(f"executor {getattr(cls, 'name', cls)!s}: {rule}")


def _bounded(cls: Any, what: str, call: Callable[[], Any], timeout: float) -> Any:
    """``call()`` in a daemon thread: its result, or its exception raised here; a
    ContractError when it has not returned within ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"fmtlbench-kit-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _fail(cls, f"{what} did not return within {timeout:g} s (a hang?)")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _round(cls: Any, executor: Executor, jobs: list, label: str, timeout: float) -> None:
    expected = [kit_job((index, 0.0, False)) for index, _, _ in jobs]
    try:
        got = _bounded(cls, f"map ({label})", lambda: list(executor.map(kit_job, jobs)), timeout)
    except ContractError:
        raise
    except Exception as exc:
        _fail(cls, f"map ({label}) raised {type(exc).__name__}: {exc}")
    if got == expected:
        return
    if len(got) != len(jobs):
        _fail(cls, f"map ({label}) yielded {len(got)} results for {len(jobs)} jobs")
    if sorted(got, key=repr) == sorted(expected, key=repr):
        order = [r["job"] for r in got]
        _fail(
            cls,
            f"map ({label}) yielded the results of jobs {order} for jobs "
            f"{[i for i, _, _ in jobs]}: results must come in job order",
        )
    _fail(
        cls,
        f"map ({label}) yielded {got}, not what running the jobs one after another gives: "
        f"{expected}",
    )


def _mentions(exc: BaseException, text: str) -> bool:
    """Whether ``text`` is in the message of ``exc`` or of an exception it carries."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if text in str(item):
            return True
        todo += [item.__cause__, getattr(item, "cause", None)]  # Ray's task errors: .cause
        if not item.__suppress_context__:  # ``raise ... from None`` drops what it replaced
            todo.append(item.__context__)
    return False


def _failure(cls: Any, executor: Executor, timeout: float) -> None:
    jobs = [(index, delay, index == FAILING) for index, delay, _ in ROUNDS[0]]
    try:
        got = _bounded(
            cls, "map of a failing job", lambda: list(executor.map(kit_job, jobs)), timeout
        )
    except ContractError:
        raise
    except Exception as exc:
        if not _mentions(exc, FAILURE):
            _fail(
                cls,
                f"a failing job's exception reached the caller as {type(exc).__name__}: {exc}, "
                f"which does not carry the job's own message {FAILURE!r}",
            )
        return
    _fail(
        cls,
        f"job {FAILING} raised ValueError, but map yielded {got} without raising: a failing "
        "job must raise in the caller, never become a result",
    )


def _close(cls: Any, executor: Executor, what: str, timeout: float) -> None:
    for attempt in ("first", "second"):
        try:
            _bounded(cls, f"close ({what}, {attempt} call)", executor.close, timeout)
        except ContractError:
            raise
        except Exception as exc:
            _fail(
                cls,
                f"the {attempt} close() of {what} raised {type(exc).__name__}: {exc}; close "
                "must be idempotent",
            )


def check_executor(
    cls: type[Executor], params: Params | None = None, timeout: float = 120.0
) -> None:
    """Run the executor contract (module docstring) on ``cls`` built with ``params`` (default
    its defaults; pass e.g. a cluster address to check against a running cluster), waiting
    at most ``timeout`` seconds for each call."""
    check_component(cls, "executor")
    params = params if params is not None else cls.Params()
    _close(cls, cls(params), "a fresh executor", timeout)
    executor = cls(params)
    try:
        for number, jobs in enumerate(ROUNDS, start=1):
            _round(cls, executor, list(jobs), f"round {number}", timeout)
        _failure(cls, executor, timeout)
    except BaseException:
        try:  # release what map started (actors, processes); the failure is the news
            executor.close()
        except Exception:
            pass
        raise
    _close(cls, executor, "an executor that has run", timeout)
