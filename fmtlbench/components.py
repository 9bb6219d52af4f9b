"""Base classes of the component kinds that plugins provide.

Every component class has a unique lowercase ``name``, a one-line docstring (its summary in
``fmtlbench list``) and a pydantic ``Params`` model holding its hyper-parameters with defaults.
This module imports neither torch nor numpy at module level: it is loaded by the CLI before any
command runs, and ``fmtlbench --help`` has to stay fast.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

from pydantic import BaseModel, ConfigDict, Field

from fmtlbench.errors import ConfigError, IncompatibleError
from fmtlbench.tasks import TaskSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch
    from torch import nn

    from fmtlbench.exchange import ExchangeView


class Params(BaseModel):
    """Base of every component's hyper-parameters: unknown fields are an error, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Common behaviour of all components: a name, a summary and validated parameters."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring, shown by ``fmtlbench list``."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------- datasets
Split = Literal["train", "test"]


class Dataset(Component):
    """A dense-prediction dataset stored in its usual on-disk layout.

    The engine locates the dataset folder (``folder`` under the configured data root, or a
    synthetic twin generated once by ``synthesize`` into the cache) and constructs the dataset
    on it. ``read`` returns raw numpy arrays; resizing, augmentation and tensor conversion are
    the core's job (``fmtlbench.sample``), so every dataset is treated alike.

    Raw sample contract of ``read`` (H x W of the stored image, invalid pixels = 255):
    ``image`` uint8 HxWx3 RGB, and per task the form its kind (``TaskKind``) expects: for the
    built-in kinds, ``semseg``/``parts`` uint8 HxW class ids; ``depth`` float32 HxW metres;
    ``normals`` float32 HxWx3 unit vectors in the dataset's stored camera frame, channel 0
    horizontal (positive to the right, so a horizontal flip negates it); ``edge``/``saliency``
    float32 HxW in {0, 1}. Each task is named by its registered kind in ``tasks``.
    """

    kind: ClassVar[str] = "dataset"
    #: Folder name of this dataset under a data root (e.g. ``NYUDv2``).
    folder: ClassVar[str]
    #: Tasks this dataset labels.
    tasks: ClassVar[dict[str, TaskSpec]]
    #: Sizes of the official splits of the real dataset (checked by ``fmtlbench data verify``).
    expected_sizes: ClassVar[dict[str, int]] = {}
    #: Where ``fmtlbench data download`` fetches the real dataset archive, and its SHA-256
    #: (None: not published; the command then prints the digest it computed).
    archive_url: ClassVar[str | None] = None
    archive_sha256: ClassVar[str | None] = None
    #: Sub-folders every copy of the dataset has (checked by ``fmtlbench data verify``).
    layout: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, params: Params | None, root: Path, *, synthetic: bool, cache: Path | None = None
    ) -> None:
        super().__init__(params)
        self.root = Path(root)
        self.synthetic = synthetic
        #: A folder of this dataset's own for derived files; the data root is never written.
        self.cache = Path(cache) if cache is not None else None

    @classmethod
    def synthesize(cls, out: Path, params: Params, seed: int = 0) -> None:
        """Write a synthetic twin of this dataset, in its real layout, into folder ``out``."""
        raise NotImplementedError(f"dataset {cls.name!r} has no synthetic twin")

    def ids(self, split: Split) -> list[str]:
        """Sample ids of the official split, in file order."""
        raise NotImplementedError

    def read(self, sample_id: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
        """The image and the labels of ``tasks`` for one sample (see the class docstring)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- partitioners
class Partitioner(Component):
    """Splits one dataset's training ids among clients.

    ``split`` receives the ids of one dataset split and one share per client (relative sizes)
    and returns one list of ids per client. Partitions must be disjoint, cover every id and
    have exactly the sizes ``fmtlbench.partition.share_counts`` gives the shares (the
    scenario's size rule: ``materialise`` refuses any other split).
    """

    kind: ClassVar[str] = "partitioner"
    #: Whether the split depends on the seed (a seeded random draw). The kit checks that a
    #: randomised partitioner gives other splits for other seeds, and every partitioner gives
    #: one split for one seed.
    randomised: ClassVar[bool] = False

    def split(
        self, ids: Sequence[str], shares: Sequence[float], seed: int, dataset: Dataset
    ) -> list[list[str]]:
        raise NotImplementedError


# --------------------------------------------------------------------------- models
class Backbone(Component):
    """An image encoder returning a pyramid of feature maps (NCHW, finest first)."""

    kind: ClassVar[str] = "backbone"

    def build(self, resolution: tuple[int, int]) -> nn.Module:
        """A module with attributes ``channels`` and ``reductions`` (lists, finest first) whose
        ``forward(image)`` returns the list of feature maps."""
        raise NotImplementedError


class Decoder(Component):
    """Turns encoder features into one prediction per task (the model's architecture)."""

    kind: ClassVar[str] = "decoder"

    def build(
        self, channels: Sequence[int], reductions: Sequence[int], tasks: dict[str, TaskSpec]
    ) -> nn.Module:
        """A module whose ``forward(features, tasks)`` returns ``{task: logits}``, whose
        ``group_of(key)`` tags each of its state-dict keys ``"decoder"`` or ``"task"``, and whose
        ``task_of(key)`` names the task a key belongs to (``None`` for entries shared by all
        tasks); a task-specific key contains its task name as one dot-separated segment."""
        raise NotImplementedError


# --------------------------------------------------------------------------- executors
class Executor(Component):
    """Runs the clients' local work of a round. Holds no algorithm logic."""

    kind: ClassVar[str] = "executor"

    def map(self, fn: Any, jobs: Sequence[Any]) -> Iterator[Any]:
        """Apply ``fn`` to every job and yield the results in job order (so the engine can
        report progress client by client). ``fn`` is picklable: an executor running jobs in
        other processes ships it once per process and reuses it for every later round."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``map`` started (processes, actors) at the end of a run."""

    def run_cells(self, fn: Any, cells: Sequence[Any]) -> Iterator[CellEvent]:
        """Run whole federated runs (the cells of a sweep), yielding events as they happen.

        ``fn`` is a module-level function (picklable by reference) and every cell picklable
        data, so that executors may run cells in other processes or on other machines. For
        every cell the executor yields one ``started`` event and then one ``finished`` (with
        ``fn``'s result) or ``failed`` (with the reason) event; a failing cell never stops the
        others. ``KeyboardInterrupt`` in the caller stops the sweep: cells still running are
        interrupted (so their runs end KILLED and stay resumable) before it propagates.
        This default runs the cells one after another in this process.
        """
        for index, cell in enumerate(cells):
            yield CellEvent(index, "started")
            try:
                result = fn(cell)
            except Exception as exc:  # one cell's failure is that cell's outcome only
                yield CellEvent(index, "failed", error=f"{type(exc).__name__}: {exc}")
            else:
                yield CellEvent(index, "finished", result=result)


@dataclass(frozen=True)
class CellEvent:
    """Progress of one sweep cell under ``Executor.run_cells``."""

    index: int
    state: Literal["started", "finished", "failed"]
    result: Any = None
    error: str | None = None


# --------------------------------------------------------------------------- algorithms
#: Parameter groups every model entry is tagged with (see ``fmtlbench.model``).
GROUPS = ("encoder", "encoder.stats", "decoder", "decoder.stats", "task")
#: Groups that hold trainable parameters; the ``.stats`` groups hold buffers only.
PARAMETER_GROUPS = ("encoder", "decoder", "task")
#: Which groups a ``share`` choice exchanges; "-E" variants use ``share="encoder"``.
SHARED_GROUPS: dict[str, frozenset[str]] = {
    "all": frozenset(GROUPS),
    "encoder": frozenset({"encoder", "encoder.stats"}),
    "none": frozenset(),
}


@dataclass(frozen=True)
class ClientInfo:
    """What the server knows of a client: its position, data, tasks and local schedule."""

    index: int
    dataset: str
    tasks: tuple[str, ...]
    num_train: int
    #: The configured local epochs E of the client's dataset (what ``Phase(epochs=None)``
    #: runs), for methods that split E among phases (FedRep).
    local_epochs: int = 1


@dataclass
class Update:
    """A client's exchanged entries after local training (CPU tensors, keyed by exchange
    name) and its sample count."""

    client: int
    num_samples: int
    entries: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """One stage of a client's local schedule: epochs to run and groups kept frozen.

    ``epochs=None`` means the configured local epochs of the client's dataset.
    """

    epochs: int | None = None
    frozen: frozenset[str] = field(default_factory=frozenset)


class AlgorithmParams(Params):
    """Parameters every algorithm accepts."""

    share: Literal["all", "encoder"] = Field(
        "all", description="parameter groups exchanged: all, or the encoder only (-E variant)"
    )
    weighting: Literal["uniform", "samples"] = Field(
        "uniform", description="client weights in averages: uniform (1/K) or by sample count"
    )


#: Members renamed in the algorithm contract -> their new names. A subclass still defining an
#: old name would be silently ignored by the engine, so defining one is refused at once.
RENAMED: dict[str, str] = {
    "exchanged_keys": "exchanged_names",
    "setup": "on_setup (the base's setup calls it; initial entries in self.initial)",
    "state_dict": "server_state (the names of the attributes to checkpoint)",
    "load_state_dict": "server_state (the names of the attributes to checkpoint)",
}


class Algorithm(Component):
    """A federated algorithm: what clients exchange, how the server combines it.

    Two key spaces meet here. A *state key* is a key of one client model's ``state_dict``
    (local to its structure); an *exchange name* (``fmtlbench.exchange``) is what algorithms
    see, equal across clients exactly when their entries may be combined. Everything an
    algorithm receives and returns is keyed by exchange names; the engine translates.

    Algorithms hold the server's state and the maths; they never touch files, tracking,
    threads or devices. Before round 0 the engine calls ``setup`` (done here: it records the
    clients, their groups and initial entries, then calls the subclass's ``on_setup`` hook).
    Each round it calls ``context(k)`` for every client (sent with its job), ``client_loss`` at
    every local step on the client side, ``local_phases`` for the schedule, and ``aggregate``
    with the clients' ``Update`` objects, returning per-client payloads (fragments the engine
    loads into each client's model), then ``round_metrics``. The attributes named in
    ``server_state`` are the server's state across rounds: checkpointed and restored by this
    base class, so a resumed run continues exactly.
    """

    kind: ClassVar[str] = "algorithm"
    Params: ClassVar[type[Params]] = AlgorithmParams
    #: Attributes holding the server's state across rounds (set in ``on_setup``, updated by
    #: ``aggregate``): checkpointed by ``state_dict`` and restored by ``load_state_dict``.
    server_state: ClassVar[tuple[str, ...]] = ()
    #: True: every client also keeps a personal model beside the federated one (a full model
    #: state, private: never sent, never aggregated), trained after the federated model each
    #: round by ``personal_phases`` with ``personal_loss``, checkpointed with the run, and
    #: evaluated as the client's personalised model (P-FL; G-FL stays the federated model).
    personal: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        old = sorted(set(RENAMED) & set(vars(cls)))
        if old:
            moves = "; ".join(f"{name} -> {RENAMED[name]}" for name in old)
            raise TypeError(
                f"algorithm {cls.__qualname__} defines {', '.join(old)}, which the algorithm "
                f"contract no longer calls: {moves} (see CONTRIBUTING.md)"
            )

    @final
    def setup(
        self,
        clients: Sequence[ClientInfo],
        states: Sequence[dict[str, torch.Tensor]],
        groups: Sequence[dict[str, str]],
    ) -> None:
        """Receive every client, its initial exchangeable entries and their groups (exchange
        names) before round 0, then run the subclass's ``on_setup``."""
        self.clients = list(clients)
        self.groups = list(groups)
        #: Every client's entries at the start, by exchange name (read them in ``on_setup``).
        self.initial = list(states)
        #: How many clients hold each exchange name.
        self.holders = Counter(name for tags in self.groups for name in tags)
        self.on_setup()

    def on_setup(self) -> None:
        """What an algorithm adds to ``setup``: initialise the ``server_state`` attributes from
        ``self.clients``, ``self.groups`` and ``self.initial``, or refuse clients it cannot
        serve with an ``IncompatibleError``. Default nothing."""

    def exchanged_names(self, client: int) -> list[str]:
        """Exchange names client ``client`` sends up each round: by default the entries of the
        groups ``share`` selects that at least one other client also holds (an entry nobody
        else has would only travel to the server and back unchanged)."""
        shared = SHARED_GROUPS[getattr(self.params, "share", "all")]
        return [
            name
            for name, group in self.groups[client].items()
            if group in shared and self.holders[name] > 1
        ]

    def common_parameters(
        self, what: str, groups: Collection[str] = PARAMETER_GROUPS, instead: str = "fedavg"
    ) -> list[str]:
        """Exchange names that every client sends and whose group is in ``groups``, in the
        first client's order: what methods comparing or combining whole client vectors work
        on. None at all is an ``IncompatibleError`` saying that the method ``what`` and to
        use ``instead``."""
        others = [set(self.exchanged_names(k)) for k in range(1, len(self.groups))]
        names = [
            n
            for n in self.exchanged_names(0)
            if self.groups[0][n] in groups and all(n in s for s in others)
        ]
        if not names:
            share = getattr(self.params, "share", "all")
            raise IncompatibleError(
                f"{self.name} {what} over parameters every client holds, and these clients "
                f"share none under share={share}; use {instead}"
            )
        return names

    def exchanged_parameters(self, client: int) -> list[str]:
        """The exchanged entries of ``client`` that are trainable parameters (statistics carry
        no gradient, so client-side terms such as FedProx's pull only on these)."""
        return [
            n for n in self.exchanged_names(client) if self.groups[client][n] in PARAMETER_GROUPS
        ]

    def context(self, client: int) -> Any:
        """Data sent down with a client's job and handed to ``client_loss`` (default none)."""
        return None

    def client_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        """An extra loss term added at every local step (FedProx, FedAMP, ...); default none.

        ``view.parameters()`` gives the client's live parameters by exchange name, to compare
        with tensors of ``context`` (already on the model's device). It runs on the client
        side, possibly in another process: on a fresh instance built from ``self.params``
        alone, so everything else it needs must come in ``context``."""
        return None

    def local_phases(self, client: int) -> list[Phase]:
        """The local schedule of ``client``; default: all groups trainable for the set epochs."""
        return [Phase()]

    def personal_phases(self, client: int) -> list[Phase]:
        """The schedule of ``client``'s personal model each round (``personal`` algorithms);
        default: all groups trainable for the set epochs."""
        return [Phase()]

    def personal_context(self, client: int) -> Any:
        """Data sent down with a client's job for ``personal_loss`` (default none), e.g. the
        federated model the personal one is pulled toward."""
        return None

    def personal_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        """An extra loss term of the personal model's local steps (default none). As for
        ``client_loss``, ``view`` shows the live parameters (here the personal model's) by
        exchange name, and it runs client-side on a fresh instance built from ``params``."""
        return None

    def weights(self, updates: Sequence[Update]) -> list[float]:
        """Normalised aggregation weights of ``updates`` under the ``weighting`` parameter."""
        mode = getattr(self.params, "weighting", "uniform")
        raw = [float(u.num_samples) if mode == "samples" else 1.0 for u in updates]
        total = sum(raw)
        return [w / total for w in raw]

    def aggregate(
        self, round: int, updates: Sequence[Update]
    ) -> dict[int, dict[str, torch.Tensor]]:
        """Combine the round's updates into payloads, keyed by client index."""
        raise NotImplementedError

    def round_metrics(self) -> dict[str, float]:
        """Diagnostics of the latest ``aggregate``, logged with the round's metrics as
        ``algo/<name>/<key>``: how a method says when its documented departures from the
        paper came into play (e.g. FedAMP's clipped attention rows). Default none."""
        return {}

    @final
    def state_dict(self) -> dict[str, Any]:
        """The ``server_state`` attributes, for the checkpoint."""
        return {name: getattr(self, name) for name in self.server_state}

    @final
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (after ``setup``, on a fresh instance);
        sequences come back as lists, whatever the checkpoint format made of them."""
        missing = [name for name in self.server_state if name not in state]
        if missing:
            raise ConfigError(
                f"algorithm {self.name}: the checkpoint's server state lacks {missing}; it was "
                "written by another version of the algorithm: start the run afresh"
            )
        for name in self.server_state:
            value = state[name]
            setattr(self, name, list(value) if isinstance(value, tuple) else value)


# --------------------------------------------------------------------------- weightings
class Weighting(Component):
    """Balances a multi-task client's task losses in local training (``training.weighting``).

    Not to be confused with ``algorithm.params.weighting``, which is the server's choice of
    client weights in averages: this kind acts inside one client, on its tasks.

    A fresh instance serves one client for one round: the worker builds it from ``params``,
    calls ``begin`` with the client's tasks and the state the weighting left at the end of
    the client's previous round (``{}`` at first), and reads ``state_dict`` back after the
    round, so state that a method carries across rounds (DWA's loss history, uncertainty
    weighting's log-variances) is client-private data that travels in the job and its result
    like the model's state, whatever executor runs the job, and is checkpointed with it.

    Two families. Loss weightings (``gradient = False``) return the scalar to differentiate
    from ``combine``. Gradient weightings (``gradient = True``) fill the parameters'
    gradients themselves in ``backward``, from the per-task losses. Every method receives the
    *unweighted* task losses; ``spec.loss_weight`` is the study's fixed weight ``q_t`` of a
    task, which the default weighting applies and the others build on.

    A single-task client never sees a weighting: training uses the study's loss ``q_t L_t``
    for it, so every weighting is the identity there. ``weights()`` reports, per task, the
    mean over the round's steps of the coefficient of the task's unweighted loss (or of its
    gradient) in what was differentiated: what the engine logs per client and round.
    """

    kind: ClassVar[str] = "weighting"
    #: False: ``combine`` builds the loss; True: ``backward`` writes the gradients.
    gradient: ClassVar[bool] = False

    def check(self, client: int, specs: Mapping[str, TaskSpec], precision: str) -> None:
        """Refuse, with a ``ConfigError``, a client this weighting cannot serve (called when
        the run is built, before any training). Default: every client is fine."""

    def begin(
        self, client: int, specs: Mapping[str, TaskSpec], state: Mapping[str, Any], device: Any
    ) -> None:
        """Start a client's round: its index and tasks, its saved state (``{}`` at first) and
        the device it trains on."""
        self.client = client
        self.specs = dict(specs)
        self.device = device
        self._sums: dict[str, float] = {}
        self._steps = 0

    def parameters(self) -> list[torch.Tensor]:
        """Learnable tensors of the weighting, optimised with the model (default none)."""
        return []

    def epoch_start(self) -> None:
        """Called before every local epoch (DWA sets its epoch's weights here)."""

    def epoch_end(self, means: Mapping[str, float]) -> None:
        """Called after every local epoch with the epoch's mean unweighted task losses."""

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The scalar loss of one step from the unweighted task losses (loss weightings)."""
        raise NotImplementedError

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        shared: Sequence[torch.Tensor],
        specific: Sequence[torch.Tensor],
    ) -> None:
        """Accumulate one step's gradients into ``.grad`` (gradient weightings). ``shared``
        are the trainable parameters every task's loss depends on, ``specific`` those of one
        task alone (see ``fmtlbench.training.split_parameters``)."""
        raise NotImplementedError

    def record(self, weights: Mapping[str, float]) -> None:
        """Note the coefficients one step used (for ``weights``)."""
        for task, value in weights.items():
            self._sums[task] = self._sums.get(task, 0.0) + float(value)
        self._steps += 1

    def weights(self) -> dict[str, float]:
        """Mean coefficient per task over the steps recorded since ``begin``."""
        return {t: v / max(self._steps, 1) for t, v in self._sums.items()}

    def state_dict(self) -> dict[str, Any]:
        """What the next round's ``begin`` of the same client receives (default nothing)."""
        return {}


# --------------------------------------------------------------------------- task kinds
class TaskKind(Component):
    """A kind of dense-prediction task: how it is predicted, trained, evaluated and tabulated.

    A dataset declares its tasks by kind: ``TaskSpec(name)`` names a registered kind and adds
    what depends on the dataset (channels, classes, class balance, edge matching distance).
    The core keeps no per-task table; it asks the spec's kind. A kind's name is also the task's
    name in metric keys, so runs stay readable by the leaderboard wherever the kind is
    installed; a dataset holds at most one task of each kind (register a subclass under a new
    name for a second one).

    Labels, as ``fmtlbench.sample`` hands them to losses and meters: label-map tasks
    (``TaskSpec.classes`` set) int64 N x H x W class ids, the others float32 N x C x H x W;
    ``IGNORE`` (255) marks pixels without supervision everywhere. A kind sees one instance for
    the whole process and keeps no state of its own.
    """

    kind: ClassVar[str] = "task"
    #: The study's fixed weight ``q_t`` of this kind's loss in a multi-task client's sum.
    loss_weight: ClassVar[float] = 1.0
    #: Every metric the kind's meter reports -> whether lower is better.
    metrics: ClassVar[dict[str, bool]] = {}
    #: The metric that represents the task in tables and in Δ% by default.
    primary: ClassVar[str]
    #: Metrics a run may choose as primary instead (``training.metrics.primary``).
    alternatives: ClassVar[tuple[str, ...]] = ()
    #: Metrics that need ``training.metrics.edge_thresholds`` > 0 (F-measures over thresholds).
    thresholded: ClassVar[frozenset[str]] = frozenset()
    #: Metric -> factor tables print it at (display only: stored values are never scaled).
    display_scale: ClassVar[dict[str, float]] = {}

    def primary_metric(self, chosen: str | None = None) -> tuple[str, bool]:
        """(metric, lower is better) representing the task: ``chosen`` when it is one of the
        ``alternatives``, else ``primary``; anything else is a ``ConfigError`` naming both."""
        from fmtlbench.errors import ConfigError

        name = self.primary if chosen is None else chosen
        if name != self.primary and name not in self.alternatives:
            allowed = ", ".join([self.primary, *self.alternatives])
            raise ConfigError(
                f"task {self.name!r} cannot use {name!r} as its primary metric; use {allowed}"
            )
        return name, self.metrics[name]

    def unavailable(self, metric: str) -> str | None:
        """Why ``metric`` cannot be computed in this environment (a missing optional library,
        with the install command), or ``None``. Checked before a run ranks by it."""
        return None

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The model's output for this task from the decoder's N x C x H x W map (default:
        unchanged; directions come out as unit vectors)."""
        return logits

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the labelled pixels of a batch of targets; losses and meters both
        use it, so they never disagree about what counts. Default: not ``IGNORE``."""
        from fmtlbench.tasks import IGNORE

        return target != IGNORE

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted scalar training loss, averaged over valid pixels, 0 with a gradient
        path when none is valid (shapes already checked by ``fmtlbench.losses``)."""
        raise NotImplementedError

    def meter(self, spec: TaskSpec) -> Any:
        """A fresh streaming meter (``fmtlbench.metrics.Meter``) reporting ``metrics``."""
        raise NotImplementedError

    def flip(self, label: torch.Tensor) -> torch.Tensor:
        """The label of the left-right mirrored image (1 x C x H x W float, ``IGNORE`` kept).
        Default: the mirrored map; kinds whose values have a direction also transform them."""
        return label.flip(-1)

    def picture(self, label: np.ndarray) -> np.ndarray:
        """An H x W x 3 RGB picture in [0, 1] of a raw label for ``fmtlbench data gallery``
        (default: drawn by the array's shape and dtype)."""
        from fmtlbench.gallery import by_shape

        return by_shape(label)


KINDS: dict[str, type[Component]] = {
    cls.kind: cls
    for cls in (Dataset, Partitioner, Backbone, Decoder, Algorithm, Executor, Weighting, TaskKind)
}
