"""Settings that can only fail later are refused at validation (issue 15 item 3)."""

import pytest

from fmtlbench.config import build_config, parse_assignment, read_mapping
from fmtlbench.errors import FmtlbenchError


@pytest.mark.parametrize(
    "assignment",
    [
        "training.lr=.inf",
        "training.lr=.nan",
        "training.resolution.default=[100000,100000]",
        "seed=18446744073709551616",
        "seed=4294967296",
        "tracking.uri=",
        "checkpoint_every=0",
        "checkpoint_every=1000000",
        "training.rounds=1000000",
        "training.batch_size=1000000000000",
        "training.warmup_rounds=1000000",
        "training.eval_every=1000000",
        "training.local_epochs.default=1000000",
        "training.augmentation.scale_max=1e300",
        "training.augmentation.scale_min=1e-300",
        "clients=100000000",
        "training.weight_decay=.inf",
        # empty strings where a value is required (a folder "" would be the working directory)
        "tracking.experiment=",
        "tracking.run_name=",
        "reference=",
        "scenario=",
        "algorithm.name=",
        "backbone.name=",
        "data.root=",
        "data.cache_dir=",
        "checkpoint_dir=",
    ],
)
def test_out_of_bounds_setting_refused(assignment: str) -> None:
    field = assignment.split("=")[0].removesuffix(".default")
    with pytest.raises(FmtlbenchError, match=field.replace(".", r"\.")):
        build_config(overrides=[parse_assignment(assignment)])


@pytest.mark.parametrize(
    "assignment",
    [
        "training.rounds=100000",
        "training.batch_size=4096",
        "training.local_epochs.default=1000",
        "training.augmentation.scale_max=10",
        "clients=10000",
        "seed=4294967295",
    ],
)
def test_the_bounds_themselves_are_accepted(assignment: str) -> None:
    build_config(overrides=[parse_assignment(assignment)])


def test_an_empty_tracking_uri_in_the_environment_means_the_default(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert build_config().tracking.uri == "sqlite:///mlflow.db"


def test_directory_as_config_named(tmp_path) -> None:
    with pytest.raises(FmtlbenchError, match="is a directory"):
        read_mapping(tmp_path)


@pytest.mark.parametrize(
    "assignment",
    [
        "data.datasets.nyudv3.twin_train=4",
        "training.resolution.nyudv3=[64,64]",
        "training.local_epochs.nyudv3=2",
    ],
)
def test_unknown_dataset_key_suggests(assignment: str) -> None:
    from fmtlbench.config_keys import check_dataset_keys
    from fmtlbench.registry import load_registry

    config = build_config(overrides=[parse_assignment(assignment)])
    with pytest.raises(FmtlbenchError, match="nyudv3.*Did you mean 'nyudv2'"):
        check_dataset_keys(config, load_registry())
