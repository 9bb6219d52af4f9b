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
