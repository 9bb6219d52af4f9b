"""The run configuration: one validated pydantic model, loaded from files, profiles and flags.

Precedence, lowest first: the model's defaults, the settings profile (``cpu`` or ``paper``, or a
profile file), the user's config file (YAML or TOML), then command-line overrides. The resolved
config is dumped with every run, so a run can be replayed with ``--config``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fmtlbench.errors import ConfigError
from fmtlbench.tasks import TaskSpec, kind_of

PROFILES = ("cpu", "paper", "gpu-smoke")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: Any) -> Any:
    # pydantic turns "" into Path("."), the working directory: an empty ``--set
    # checkpoint_dir=`` would silently write there
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; give a folder path (or leave the setting out)")
    return value


#: A folder setting: an empty string is an error, never the working directory.
FolderPath = Annotated[Path, BeforeValidator(_not_blank)]
#: Upper bound of round-like counts: far beyond the study's 100 rounds, low enough that a
#: typo (an extra few zeros) is caught instead of running for ever.
MAX_ROUNDS = 100_000


class ComponentChoice(_Strict):
    """A component by registered name, with its parameters (validated by its ``Params``)."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class Augmentation(BaseModel):
    """Training-time augmentation: random scale, crop, flip and photometric jitter."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    scale_min: float = Field(0.5, ge=0.1, le=10, description="smallest random scale factor")
    scale_max: float = Field(2.0, ge=0.1, le=10, description="largest random scale factor")
    flip: bool = Field(True, description="random horizontal flip (negates normals x)")
    jitter: float = Field(
        0.2, ge=0, le=1, description="brightness/contrast/saturation strength; 0 disables"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Augmentation:
        if self.scale_min > self.scale_max:
            raise ValueError(
                f"scale_min ({self.scale_min}) must be <= scale_max ({self.scale_max})"
            )
        return self


Resolution = tuple[int, int]
#: The default task weighting: the study's fixed task weights, i.e. its results unchanged.
DEFAULT_WEIGHTING = "equal"


class MetricsConfig(_Strict):
    """Evaluation metrics that are run settings rather than dataset facts."""

    edge_thresholds: int = Field(
        9,
        ge=0,
        le=255,
        description="thresholds k/(n+1) of edge odsF/oisF; 0 skips them. Each threshold "
        "costs one pixel matching per test image (about 0.3 s at 425x560), so the default is "
        "modest; BSDS uses 99",
    )
    edge_at: Literal["final", "every"] = Field(
        "final",
        description="evaluations that compute edge odsF/oisF: 'final' (the last evaluation of "
        "the run, which the leaderboard reads; every evaluation while odsF is the edge primary) "
        "or 'every'. The matching costs about 0.25 s per threshold and test image at 425x560, "
        "so at every evaluation it would outweigh the rest of a GPU run",
    )
    primary: dict[str, str] = Field(
        default_factory=dict,
        description="task -> metric that replaces its default primary in tables and "
        "delta-percent (edge: odsf); default: the study's primaries, so published numbers match",
    )

    @field_validator("primary")
    @classmethod
    def _known_choice(cls, value: dict[str, str]) -> dict[str, str]:
        for task, metric in value.items():
            try:
                kind_of(task).primary_metric(metric)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _thresholded_needs_thresholds(self) -> MetricsConfig:
        for task, metric in self.primary.items():
            if metric in kind_of(task).thresholded and self.edge_thresholds == 0:
                raise ValueError(f"primary {task}={metric} needs edge_thresholds > 0")
        return self

    def interim(self, spec: TaskSpec) -> TaskSpec:
        """``spec`` as evaluated before the last evaluation: without odsF/oisF under
        ``edge_at='final'``, unless odsF is the primary (Δ% is logged at every evaluation)."""
        ranked = spec.chosen_primary in spec.kind.thresholded
        if self.edge_at == "every" or not spec.odsf_thresholds or ranked:
            return spec
        return dataclasses.replace(spec, odsf_thresholds=0)

    def apply(self, spec: TaskSpec) -> TaskSpec:
        """``spec`` with this run's metric settings stamped in (see ``TaskSpec``)."""
        return dataclasses.replace(
            spec,
            odsf_thresholds=self.edge_thresholds if spec.kind.thresholded else 0,
            chosen_primary=self.primary.get(spec.name),
        )


class TrainingConfig(_Strict):
    """Local training and evaluation settings; per-dataset values are keyed by dataset name,
    with ``default`` for datasets not listed."""

    rounds: int = Field(6, gt=0, le=MAX_ROUNDS)
    local_epochs: dict[str, int] = Field(default_factory=lambda: {"default": 1})
    batch_size: int = Field(8, gt=0, le=4096)
    lr: float = Field(1e-3, gt=0, le=10.0, allow_inf_nan=False)
    weight_decay: float = Field(1e-4, ge=0, le=10.0, allow_inf_nan=False)
    warmup_rounds: int = Field(1, ge=0, le=MAX_ROUNDS)
    resolution: dict[str, Resolution] = Field(default_factory=lambda: {"default": (64, 80)})
    eval_resolution: dict[str, Resolution] = Field(default_factory=lambda: {"default": (64, 80)})
    eval_every: int = Field(
        1,
        gt=0,
        le=MAX_ROUNDS,
        description="rounds between evaluations; the last round is always evaluated",
    )
    eval_initial: bool = True
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    augmentation: Augmentation = Field(default_factory=Augmentation)
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="DataLoader worker processes per loader for real data (the synthetic "
        "twins are cached in memory and always read in-process); results do not depend on it",
    )
    pin_memory: bool = Field(
        False, description="page-locked batches for faster copies to a CUDA device"
    )
    persistent_workers: bool = Field(
        False,
        description="keep a loader's workers between epochs (each client has a train and a "
        "test loader, so this keeps clients x 2 x workers processes alive)",
    )
    non_blocking: bool = Field(
        False, description="asynchronous host-to-device copies (useful with pin_memory)"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="autocast precision of local training; fp16 adds gradient scaling",
    )
    channels_last: bool = Field(
        False, description="train in the channels-last memory format (faster convolutions)"
    )
    weighting: ComponentChoice = Field(
        default_factory=lambda: ComponentChoice(name=DEFAULT_WEIGHTING),
        description="client-side task weighting (a weighting component, `--weighting NAME`); "
        "'equal' keeps the study's fixed task weights. Not algorithm.params.weighting, which "
        "is the server's choice of client weights",
    )

    @model_validator(mode="after")
    def _persistent_needs_workers(self) -> TrainingConfig:
        if self.persistent_workers and self.workers == 0:
            raise ValueError("persistent_workers needs workers > 0; set training.workers")
        return self

    @field_validator("local_epochs")
    @classmethod
    def _epochs_positive(cls, value: dict[str, int]) -> dict[str, int]:
        for key, epochs in value.items():
            if not 0 < epochs <= 1000:
                raise ValueError(
                    f"local epochs of '{key}' must be between 1 and 1000, got {epochs}"
                )
        return value

    @field_validator("resolution", "eval_resolution")
    @classmethod
    def _sizes_positive(cls, value: dict[str, Resolution]) -> dict[str, Resolution]:
        for key, (h, w) in value.items():
            if h < 16 or w < 16 or h > 4096 or w > 4096:
                raise ValueError(
                    f"resolution of '{key}' must be between 16x16 and 4096x4096, got {h}x{w}"
                )
        return value

    @staticmethod
    def per_dataset(table: dict[str, Any], dataset: str) -> Any:
        if dataset in table:
            return table[dataset]
        if "default" in table:
            return table["default"]
        raise ConfigError(f"no setting for dataset '{dataset}' and no 'default' entry in {table}")


class DataConfig(_Strict):
    """Where datasets are read from and where derived files (synthetic twins, caches) go."""

    root: FolderPath | None = Field(
        default_factory=lambda: _env_path("FMTLBENCH_DATA_ROOT"),
        description="folder holding NYUDv2/, PASCALContext/ ...; unset = synthetic twins",
    )
    cache_dir: FolderPath = Field(
        default_factory=lambda: _env_path("FMTLBENCH_CACHE") or Path.home() / ".cache" / "fmtlbench"
    )
    datasets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-dataset plugin parameters"
    )

    @field_validator("cache_dir")
    @classmethod
    def _cache_is_a_folder(cls, value: Path) -> Path:
        # found now, not as a traceback when the first twin is written
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a folder; give a folder path")
        return value


class EnergyConfig(_Strict):
    """Energy and CO2e measurement with codecarbon's offline tracker (never the network)."""

    enabled: bool = True
    country_iso_code: str = Field(
        "USA",
        min_length=3,
        max_length=3,
        description="ISO 3166 alpha-3 code for the carbon intensity",
    )


class TrackingConfig(_Strict):
    """MLflow tracking: a local SQLite store by default, any tracking URI accepted."""

    uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
        min_length=1,
        description="MLflow tracking URI; an empty string is an error, not the default",
    )
    experiment: str = Field("fmtlbench", min_length=1)
    run_name: str | None = Field(None, min_length=1, description="unset: MLflow picks a name")
    # MLflow's own defaults (120 s per request, 7 retries with back-off factor 2) make a lost
    # server hang a run for minutes; these bound every tracking call to seconds
    timeout_s: int = Field(
        10, ge=1, le=600, description="seconds one tracking request may wait for the server"
    )
    retries: int = Field(
        2, ge=0, le=10, description="retries of a failed tracking request before giving up"
    )
    backoff_s: int = Field(
        1, ge=0, le=60, description="back-off factor: retries wait 0, 2x, 4x ... this many s"
    )


class SmokeConfig(_Strict):
    """Turns ``fmtlbench run`` into a set-up check (the ``gpu-smoke`` profile sets it): one
    untracked round per precision, printing images per second and peak memory."""

    precisions: list[Literal["fp32", "bf16", "fp16"]] = Field(
        default_factory=lambda: ["fp32", "bf16", "fp16"], min_length=1
    )


class RunConfig(_Strict):
    """Everything that defines one federated run."""

    profile: str = "cpu"
    scenario: str = Field("iid1", min_length=1)
    algorithm: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="fedavg"))
    arch: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="md"))
    backbone: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="resnet18"))
    executor: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="serial"))
    seed: int = Field(0, ge=0, lt=2**32, description="torch/numpy seeds take 32 bits")
    clients: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="client count of a single-group scenario (e.g. iid1 with K=8)",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="where working models train: auto (cuda if available), cpu, cuda[:N], mps",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    smoke: SmokeConfig | None = Field(
        None, description="set: a timed set-up check instead of a tracked run (gpu-smoke)"
    )
    reference: str | None = Field(
        None, min_length=1, description="MLflow run id of the delta-percent reference"
    )
    checkpoint_dir: FolderPath = Field(Path(".fmtlbench/checkpoints"))
    checkpoint_every: int = Field(
        1,
        ge=1,
        le=MAX_ROUNDS,
        description="rounds between checkpoints (the last round is always saved); a run "
        "killed between two resumes from the last saved round and ends the same",
    )

    def dump(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def flat(self) -> dict[str, str]:
        """Dotted keys -> string values, for MLflow params."""
        return flatten(self.dump())


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------- loading
def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML, TOML or JSON file as a dict; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"config file {path} is a directory; give the path of a YAML/TOML/JSON file"
        )
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); give a YAML/TOML/JSON file"
        ) from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (
        yaml.YAMLError,
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        IndexError,
    ) as exc:
        # tomllib and json errors are ValueErrors; YAML tags such as ``!!float x`` raise
        # ValueError/TypeError (``!!timestamp x``: AttributeError) from the constructor
        raise ConfigError(f"cannot parse {path}: {_parse_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at its top level")
    return data


def _parse_problem(exc: Exception) -> str:
    """One line saying what is wrong and where (YAML errors keep their line and column)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split()) or type(exc).__name__
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def load_profile(name: str) -> dict[str, Any]:
    """A built-in profile by name, or a profile file by path."""
    if name in PROFILES:
        text = resources.files("fmtlbench.profiles").joinpath(f"{name}.yaml").read_text()
        return yaml.safe_load(text) or {}
    path = Path(name)
    if path.suffix in {".yaml", ".yml", ".toml", ".json"}:
        return read_mapping(path)
    raise ConfigError(
        f"unknown profile '{name}': use one of {', '.join(PROFILES)} or a profile file path"
    )


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``over`` replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}`` with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"override '{text}': {exc.problem}") from None
    except yaml.YAMLError:
        value = raw
    except (
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        IndexError,
    ) as exc:  # ``!!float x``
        raise ConfigError(f"override '{text}': {' '.join(str(exc).split())}") from None
    tree: dict[str, Any] = {}
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def build_config(
    file: Path | None = None, overrides: list[dict[str, Any]] | None = None
) -> RunConfig:
    """Resolve profile, file and overrides into a validated ``RunConfig``."""
    user: dict[str, Any] = read_mapping(file) if file else {}
    for over in overrides or []:
        user = merge(user, over)
    profile = user.get("profile", RunConfig.model_fields["profile"].default)
    # component defaults first, so that ``--set algorithm.params.x=1`` keeps the default name
    base = _component_defaults(RunConfig)
    data = merge(merge(base, load_profile(str(profile))), user)
    data["profile"] = profile
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {describe_validation_error(exc)}") from None


def _component_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The default ``ComponentChoice`` of every such field, nested sections included (so that
    ``--set training.weighting.params.x=1`` keeps the default weighting's name)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.annotation is ComponentChoice:
            out[name] = info.default_factory().model_dump()
        elif isinstance(info.annotation, type) and issubclass(info.annotation, _Strict):
            inner = _component_defaults(info.annotation)
            if inner:
                out[name] = inner
    return out


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One readable line per problem, each naming the dotted field."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{field or 'value'}: {err['msg']}{shown}")
    return "; ".join(lines)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if not isinstance(value, str) else value
    return out
