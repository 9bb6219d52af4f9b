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
    ],
)
def test_out_of_bounds_setting_refused(assignment: str) -> None:
    with pytest.raises(FmtlbenchError):
        build_config(overrides=[parse_assignment(assignment)])


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
