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
    ],
)
def test_out_of_bounds_setting_refused(assignment: str) -> None:
    with pytest.raises(FmtlbenchError):
        build_config(overrides=[parse_assignment(assignment)])


def test_directory_as_config_named(tmp_path) -> None:
    with pytest.raises(FmtlbenchError, match="is a directory"):
        read_mapping(tmp_path)
