"""Names of everything a run logs: the one module that builds and parses metric keys.

A run writes its numbers to MLflow under flat string keys, and the leaderboard, the progress
display, the smoke check and the benchmarks read them back. Building and parsing both live
here, so the layout is written once; everywhere else holds a key object or calls a builder.

The layout:

- ``G|P/<dataset>/<task>/<metric>`` — a task metric averaged over the clients of a dataset, in
  the G-FL setting (each client on the dataset's official test split) or P-FL (each client on
  its own local test set); ``..._std`` beside it is the spread over those clients;
- ``client<k>/G|P/<task>/<metric>`` — the same for one client;
- ``client<k>/train/<name>`` and ``train/loss`` — local training losses;
- ``client<k>/weight/<task>`` — the task weight a client's local training used in a round (the
  mean coefficient of the task's unweighted loss, see ``fmtlbench.components.Weighting``);
- ``comm/client<k>/up|down/<group>`` — bytes one client sent or received per parameter group,
  ``comm/up_bytes``/``comm/down_bytes`` their round totals;
- ``time/<phase>`` — wall seconds of a round phase; ``energy/<phase>_<unit>`` and
  ``energy/<unit>`` — energy estimates, ``energy/total_<unit>`` over the whole run;
- ``algo/<algorithm>/<name>`` — whatever an algorithm reports about its round;
- ``eval/<name>`` — bookkeeping of the evaluation (how many models were evaluated, shared).
"""

from __future__ import annotations

from dataclasses import dataclass

from fmtlbench.errors import ConfigError

#: Evaluation settings: G-FL (official test split of the dataset) and P-FL (local test sets).
SETTINGS = ("G", "P")
#: Traffic directions, as seen from a client.
DIRECTIONS = ("up", "down")
#: Prefixes of metrics that measure the machine rather than the learning.
MACHINE_PREFIXES = ("time/", "energy/", "comm/")
#: Suffix of the client spread beside a client-mean task metric.
STD_SUFFIX = "_std"
#: The round's learning rate.
LR = "lr"
#: The mean local training loss of a round over all clients.
TRAIN_LOSS = "train/loss"
#: Evaluation bookkeeping: models evaluated this round, and whether P-FL reused G-FL models.
EVAL_EVALUATED = "eval/evaluated"
EVAL_SHARED = "eval/shared"

_CLIENT = "client"


def client_label(client: int) -> str:
    """``client<k>``: how a client is named in keys and tables."""
    return f"{_CLIENT}{client}"


def _client_index(text: str) -> int | None:
    digits = text.removeprefix(_CLIENT)
    return int(digits) if text.startswith(_CLIENT) and digits.isdigit() else None


@dataclass(frozen=True)
class TaskMetric:
    """A task metric of a dataset's clients in one evaluation setting (client mean)."""

    setting: str
    dataset: str
    task: str
    metric: str

    @classmethod
    def read(cls, text: str) -> TaskMetric | None:
        """The key ``text`` names, or ``None`` when it is another kind of key."""
        parts = text.split("/")
        if len(parts) != 4 or parts[0] not in SETTINGS or not all(parts):
            return None
        return cls(*parts)

    @classmethod
    def parse(cls, text: str) -> TaskMetric:
        """Like ``read``, for user input: a clear error instead of ``None``."""
        key = cls.read(text)
        if key is None:
            raise ConfigError(f"metric key {text!r} must look like G|P/<dataset>/<task>/<metric>")
        return key

    def __str__(self) -> str:
        return f"{self.setting}/{self.dataset}/{self.task}/{self.metric}"

    @property
    def label(self) -> str:
        """The key without its setting, e.g. ``nyudv2/depth/rmse``."""
        return f"{self.dataset}/{self.task}/{self.metric}"

    @property
    def task_label(self) -> str:
        """``<dataset>/<task>``: how a user names one dataset's task (e.g. in task weights)."""
        return f"{self.dataset}/{self.task}"

    @property
    def std(self) -> str:
        """The key of the spread over the clients beside this mean."""
        return f"{self}{STD_SUFFIX}"


@dataclass(frozen=True)
class ClientMetric:
    """A task metric of one client in one evaluation setting."""

    client: int
    setting: str
    task: str
    metric: str

    @classmethod
    def read(cls, text: str) -> ClientMetric | None:
        """The key ``text`` names, or ``None`` when it is another kind of key."""
        parts = text.split("/")
        if len(parts) != 4 or parts[1] not in SETTINGS or not all(parts):
            return None
        client = _client_index(parts[0])
        return None if client is None else cls(client, *parts[1:])

    def __str__(self) -> str:
        return f"{client_label(self.client)}/{self.setting}/{self.task}/{self.metric}"


@dataclass(frozen=True)
class Traffic:
    """Bytes one client sent (``up``) or received (``down``) for one parameter group."""

    client: int
    direction: str
    group: str

    @classmethod
    def read(cls, text: str) -> Traffic | None:
        """The key ``text`` names, or ``None`` when it is another kind of key."""
        parts = text.split("/", 3)
        if len(parts) != 4 or parts[0] != "comm" or parts[2] not in DIRECTIONS or not parts[3]:
            return None
        client = _client_index(parts[1])
        return None if client is None else cls(client, parts[2], parts[3])

    def __str__(self) -> str:
        return f"comm/{client_label(self.client)}/{self.direction}/{self.group}"


def traffic_total(direction: str) -> str:
    """The round's total bytes in ``direction`` over all clients."""
    return f"comm/{direction}_bytes"


def client_train(client: int, name: str) -> str:
    """A local training figure of one client (e.g. its loss)."""
    return f"{client_label(client)}/train/{name}"


def client_task_weight(client: int, task: str) -> str:
    """The mean weight of ``task``'s loss in one client's local training of a round."""
    return f"{client_label(client)}/weight/{task}"


def time(phase: str) -> str:
    """Wall seconds of a round phase (``train``, ``aggregate``, ``eval``, ...)."""
    return f"time/{phase}"


def energy(unit: str, phase: str | None = None) -> str:
    """A round's energy estimate in ``unit`` (``kwh``, ``co2_kg``), of one phase or all."""
    return f"energy/{unit}" if phase is None else f"energy/{phase}_{unit}"


def energy_total(unit: str) -> str:
    """The whole run's energy estimate in ``unit``."""
    return f"energy/total_{unit}"


def algorithm(name: str, figure: str) -> str:
    """A figure an algorithm reports about its round (``round_metrics``)."""
    return f"algo/{name}/{figure}"


def is_machine(key: str) -> bool:
    """Whether ``key`` measures the machine (time, energy, traffic) rather than learning."""
    return key.startswith(MACHINE_PREFIXES)


def delta(setting: str) -> str:
    """The round's Δ% against the reference run in ``setting`` (``G`` or ``P``)."""
    return f"delta/{setting}"


def method_delta(setting: str, method: str) -> str:
    """A method's mean Δ% in ``setting``, as the leaderboard's own MLflow run logs it."""
    return f"delta_{setting}/{method}"
