"""The run cache key ignores where results go and changes with what determines them."""

from fmtlbench.cachekey import cache_key
from fmtlbench.config import RunConfig

VERSIONS = ["fmtlbench==1", "torch==2"]


def key(**fields: object) -> str:
    return cache_key(RunConfig(**fields), "abc", VERSIONS, "synthetic")


def test_tracking_and_executor_settings_keep_the_key() -> None:
    base = key()
    assert key(tracking={"uri": "sqlite:///other.db", "run_name": "x"}) == base
    assert key(checkpoint_dir="elsewhere") == base
    assert key(checkpoint_every=5) == base


def test_lr_seed_partition_versions_and_data_change_the_key() -> None:
    base = key()
    lr = RunConfig().training.lr
    assert key(training={"lr": lr * 2}) != base
    assert key(seed=1) != base
    cfg = RunConfig()
    assert cache_key(cfg, "other", VERSIONS, "synthetic") != base
    assert cache_key(cfg, "abc", [*VERSIONS, "plug==3"], "synthetic") != base
    assert cache_key(cfg, "abc", VERSIONS, "real") != base
    assert len(base) == 64


def test_default_task_weighting_leaves_the_key_unchanged() -> None:
    """Naming the default weighting is the default run; any other weighting, or other
    parameters of one, is another run. (Keys from before ``training.metrics`` existed are not
    kept: those runs logged no edge odsF/oisF, so a sweep runs them again.)"""
    assert key(training={"weighting": {"name": "equal"}}) == key()
    assert key(training={"weighting": {"name": "dwa"}}) != key()
    dwa_tau = {"name": "dwa", "params": {"temperature": 1.0}}
    assert key(training={"weighting": dwa_tau}) != key(training={"weighting": {"name": "dwa"}})
