"""Everything a run needs before round 1: components, datasets, manifest, clients and models.

Client state lives here as CPU state dicts, separate from the few working models (one per
model structure) into which a client's state is loaded for its turn; memory thus grows with
the number of clients only by their parameters, never by live modules or optimisers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fmtlbench.choices import resolve_components
from fmtlbench.components import Algorithm, ClientInfo, Dataset, Executor, Weighting
from fmtlbench.config import RunConfig, TrainingConfig
from fmtlbench.data import component_params, open_dataset
from fmtlbench.errors import ConfigError, IncompatibleError
from fmtlbench.exchange import check_shapes, exchange_names
from fmtlbench.model import MultiTaskModel, build_model
from fmtlbench.partition import Manifest, materialise
from fmtlbench.registry import Registry
from fmtlbench.sample import SampleSet, SeededSampler
from fmtlbench.scenario import ScenarioSpec
from fmtlbench.tasks import TaskSpec

State = dict[str, torch.Tensor]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; client state always stays in CPU memory."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{name}' requested but CUDA is not available; use --set device=cpu"
        )
    return device


def snapshot(model: torch.nn.Module) -> State:
    """A CPU copy of the model's state dict (client state lives off the working model)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts/lists/tuples moved to ``device`` (algorithm contexts)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


@dataclass
class Client:
    """One client: its data, tasks and the structure key of its model."""

    index: int
    dataset: Dataset
    specs: dict[str, TaskSpec]
    train: torch.utils.data.DataLoader
    test: torch.utils.data.DataLoader
    structure: tuple[str, tuple[str, ...]]
    epochs: int

    @property
    def info(self) -> ClientInfo:
        return ClientInfo(
            self.index, self.dataset.name, tuple(self.specs), len(self.train.dataset), self.epochs
        )


@dataclass
class Federation:
    """The resolved run: components, clients, working models and client states."""

    config: RunConfig
    scenario: ScenarioSpec
    algorithm: Algorithm
    executor: Executor
    datasets: dict[str, Dataset]
    manifest: Manifest
    clients: list[Client]
    global_tests: dict[str, torch.utils.data.DataLoader]
    models: dict[tuple[str, tuple[str, ...]], MultiTaskModel]
    device: torch.device
    states: list[State] = field(default_factory=list)
    #: Per client: state key -> exchange name (see ``fmtlbench.exchange``); private keys absent.
    names: list[dict[str, str]] = field(default_factory=list)
    #: Per client: exchange name -> parameter group.
    groups: list[dict[str, str]] = field(default_factory=list)
    #: The run's task weighting (``training.weighting``); each client job builds its own.
    weighting: Weighting | None = None
    #: Per client: the task weighting's private state, carried from round to round.
    weighting_states: list[dict[str, Any]] = field(default_factory=list)
    #: Per client: its personal model's state (state keys), under ``personal`` algorithms only.
    personal_states: list[State] = field(default_factory=list)

    def attach(self, algorithm: Algorithm) -> None:
        """Hand the clients' current exchangeable entries to ``algorithm`` and refuse, with a
        clear message, a run in which it would combine entries of different shapes."""
        self.algorithm = algorithm
        states = [self.exchangeable(k) for k in range(len(self.clients))]
        algorithm.setup([c.info for c in self.clients], states, self.groups)
        # a personal model starts as the client's model (tensors are never changed in place)
        self.personal_states = [dict(s) for s in self.states] if algorithm.personal else []
        check_shapes(
            [{n: tuple(t.shape) for n, t in s.items()} for s in states],
            [algorithm.exchanged_names(k) for k in range(len(self.clients))],
        )

    def exchangeable(self, k: int) -> State:
        """Client ``k``'s exchangeable entries under their exchange names."""
        return {name: self.states[k][key] for key, name in self.names[k].items()}

    def apply(self, k: int, payload: State) -> None:
        """Load a payload (exchange names) into client ``k``'s state."""
        keys = {name: key for key, name in self.names[k].items()}
        unknown = [name for name in payload if name not in keys]
        if unknown:
            raise IncompatibleError(
                f"algorithm '{self.algorithm.name}' sent client {k} entries it does not have: "
                f"{', '.join(unknown[:3])}"
            )
        self.states[k] = {**self.states[k], **{keys[n]: t for n, t in payload.items()}}

    @property
    def synthetic(self) -> bool:
        return any(d.synthetic for d in self.datasets.values())

    def model_of(self, k: int) -> MultiTaskModel:
        return self.models[self.clients[k].structure]

    def load(self, k: int, personal: bool = False) -> MultiTaskModel:
        """The working model of client ``k`` holding that client's state (its personal
        model's, with ``personal``)."""
        model = self.model_of(k)
        model.load_state_dict(self.personalised(k) if personal else self.states[k])
        return model

    def personalised(self, k: int) -> State:
        """The state of client ``k``'s personalised model: its personal model under a
        ``personal`` algorithm, else its federated model."""
        return self.personal_states[k] if self.personal_states else self.states[k]


def _seed_worker(worker_id: int) -> None:
    """NumPy's global generator in a DataLoader worker, from the worker's torch seed (which
    torch derives from the loader's generator, itself seeded from the run seed)."""
    np.random.seed(torch.initial_seed() % 2**32)


def _loader(
    dataset: Dataset,
    ids: list[str],
    tasks: list[str],
    training: TrainingConfig,
    train: bool,
    device: torch.device | None = None,
) -> torch.utils.data.DataLoader:
    """A train loader (shuffled, augmented, one seed per sample) or an evaluation loader.

    Workers decode real data only: a synthetic twin is small and cached in this process's
    memory, where workers would each hold a copy of the cache and lose it every epoch.
    """
    table = training.resolution if train else training.eval_resolution
    resolution = tuple(TrainingConfig.per_dataset(table, dataset.name))
    augmentation = training.augmentation if train else None
    samples = SampleSet(dataset, ids, tasks, resolution, augmentation, cache=dataset.synthetic)
    size = training.batch_size
    workers = 0 if dataset.synthetic else training.workers
    sampler = SeededSampler(len(samples), shuffle=train)
    return torch.utils.data.DataLoader(
        samples,
        batch_size=size,
        sampler=sampler,
        drop_last=train and len(ids) % size == 1 and len(ids) > 1,
        generator=sampler.generator,  # the engine seeds it per client and round
        num_workers=workers,
        persistent_workers=training.persistent_workers and workers > 0,
        pin_memory=training.pin_memory and device is not None and device.type == "cuda",
        worker_init_fn=_seed_worker if workers else None,
    )


def build_federation(config: RunConfig, registry: Registry) -> Federation:
    """Resolve every component named in ``config`` and materialise the scenario."""
    choose = resolve_components(config, registry)
    scenario = choose["scenario"]
    datasets = {
        name: open_dataset(registry.get("dataset", name), config.data)
        for name in dict.fromkeys(g.dataset for g in scenario.groups)
    }
    part_cls = registry.get("partitioner", scenario.partitioner)
    partitioner = part_cls(
        component_params(part_cls, scenario.partitioner_params, "scenario.partitioner_params")
    )
    manifest = materialise(scenario, datasets, partitioner, config.seed)
    for ds in datasets.values():
        # this run's metric settings (odsF thresholds, chosen primaries) travel with the task
        # specs, so the engine, the tables and every evaluator (Ray workers too) agree
        ds.tasks = {t: config.training.metrics.apply(spec) for t, spec in type(ds).tasks.items()}

    training = config.training
    device = resolve_device(config.device)
    clients, models, initial = [], {}, {}
    for cm in manifest.clients:
        ds = datasets[cm.dataset]
        specs = {t: ds.tasks[t] for t in cm.tasks}
        key = (cm.dataset, tuple(cm.tasks))
        if key not in models:
            torch.manual_seed(config.seed)  # every structure starts from the same encoder
            resolution = tuple(TrainingConfig.per_dataset(training.resolution, ds.name))
            models[key] = build_model(choose["backbone"], choose["arch"], specs, resolution)
            initial[key] = snapshot(models[key])
            models[key].to(device)
        clients.append(
            Client(
                index=cm.index,
                dataset=ds,
                specs=specs,
                train=_loader(ds, cm.train, cm.tasks, training, train=True, device=device),
                test=_loader(ds, cm.test, cm.tasks, training, train=False, device=device),
                structure=key,
                epochs=int(TrainingConfig.per_dataset(training.local_epochs, ds.name)),
            )
        )
    global_tests = {}
    for name, ds in datasets.items():
        tasks = list(dict.fromkeys(t for c in clients if c.dataset is ds for t in c.specs))
        global_tests[name] = _loader(
            ds, ds.ids("test"), tasks, training, train=False, device=device
        )
    if not clients:
        raise ConfigError(f"scenario '{scenario.name}' has no clients")
    fed = Federation(
        config=config,
        scenario=scenario,
        algorithm=choose["algorithm"],
        executor=choose["executor"],
        datasets=datasets,
        manifest=manifest,
        clients=clients,
        global_tests=global_tests,
        models=models,
        device=device,
        states=[dict(initial[c.structure]) for c in clients],
        weighting=choose["weighting"],
        weighting_states=[{} for _ in clients],
    )
    for c in clients:
        if len(c.specs) > 1:  # single-task clients train the study's loss whatever the choice
            choose["weighting"].check(c.index, c.specs, training.precision)
    tags = [models[c.structure].groups() for c in clients]
    fed.names = exchange_names(
        [models[c.structure] for c in clients], [c.dataset.name for c in clients], tags
    )
    fed.groups = [
        {name: tags[k][key] for key, name in fed.names[k].items()} for k in range(len(clients))
    ]
    fed.attach(fed.algorithm)
    return fed
