"""The GPU-ready training path on the CPU: data workers keep results exact, precision and
memory-format settings train, the evaluation interval is honoured, speed settings stay out of
the cache key."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from fmtlbench import cachekey
from fmtlbench.config import build_config
from fmtlbench.engine import Engine
from fmtlbench.errors import ConfigError
from fmtlbench.federation import build_federation
from fmtlbench.registry import load_registry
from fmtlbench.sample import SeededSampler

#: Smaller than the suite's tiny twin: reduced precision is slow on a CPU (no fast kernels).
TWIN = {"twin_train": 16, "twin_test": 4, "twin_height": 24, "twin_width": 32}


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding NYUDv2/ in the real layout (PNG files on disk), read as real data."""
    registry = load_registry()
    cls = registry.get("dataset", "nyudv2")
    root = tmp_path_factory.mktemp("root")
    cls.synthesize(root / cls.folder, cls.Params(**TWIN), 0)
    return root


def _config(tmp: Path, root: Path | None = None, **training: object):
    fragment = {
        "clients": 1,
        "data": {"datasets": {"nyudv2": dict(TWIN)}},
        "training": {
            "rounds": 1,
            "batch_size": 4,
            "resolution": {"default": [16, 16]},
            "eval_resolution": {"default": [16, 16]},
            **training,
        },
        "checkpoint_dir": str(tmp / "checkpoints"),
    }
    if root is not None:
        fragment["data"]["root"] = str(root)
    return build_config(None, [fragment])


def _rounds(config, rounds: int = 1):
    fed = build_federation(config, load_registry())
    engine = Engine(fed)
    return fed, [engine.run_round(r) for r in range(1, rounds + 1)]


def _results(metrics: dict[str, float]) -> dict[str, float]:
    """Losses and metrics, without the wall-clock times."""
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def test_two_workers_give_the_metrics_of_none_on_real_files(tmp_path, real_root) -> None:
    fed0, [none] = _rounds(_config(tmp_path, real_root))
    assert not fed0.synthetic and fed0.clients[0].train.num_workers == 0
    fed2, [two] = _rounds(_config(tmp_path, real_root, workers=2))
    assert fed2.clients[0].train.num_workers == 2  # the files really are decoded in workers
    assert any(k.startswith("G/nyudv2/") for k in none)
    assert _results(two) == _results(none)
    _, [kept] = _rounds(_config(tmp_path, real_root, workers=2, persistent_workers=True))
    assert _results(kept) == _results(none)


def test_synthetic_twins_stay_in_process(tmp_path) -> None:
    fed = build_federation(_config(tmp_path, workers=2), load_registry())
    assert fed.synthetic and fed.clients[0].train.num_workers == 0


def test_sampler_fixes_an_epoch_from_the_seed_alone() -> None:
    sampler = SeededSampler(10, shuffle=True)
    gen = sampler.generator.manual_seed(7)
    first = list(sampler)
    torch.empty(()).random_(
        generator=gen
    )  # the DataLoader draws its worker seed from the generator: no effect
    second = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10)) and first != second
    gen.manual_seed(7)  # the engine reseeds per client and round: epochs start over
    assert list(sampler) == first
    assert pickle.loads(pickle.dumps(sampler)).__iter__() is not None
    copy = pickle.loads(pickle.dumps(sampler))  # a Ray worker's copy goes on alike
    assert list(copy) == list(sampler)
    copy.generator.manual_seed(7)
    assert list(copy) == first
    assert [i for i, _ in SeededSampler(4, shuffle=False)] == [0, 1, 2, 3]


@pytest.mark.slow
def test_fp32_with_settings_absent_and_stated_agree(tmp_path) -> None:
    _, [absent] = _rounds(_config(tmp_path))
    stated = {"precision": "fp32", "channels_last": False, "non_blocking": True, "workers": 2}
    _, [explicit] = _rounds(_config(tmp_path, **stated))
    assert _results(explicit) == _results(absent)
    fed, [last] = _rounds(_config(tmp_path, channels_last=True))
    for key in ("train/loss", "G/nyudv2/semseg/miou", "G/nyudv2/depth/rmse"):
        assert last[key] == pytest.approx(absent[key], rel=1e-2, abs=1e-4), key
    state = fed.states[0]
    assert all(t.is_contiguous() for t in state.values())  # client states keep one layout


@pytest.mark.slow  # reduced precision has no fast CPU kernels; minutes here
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_on_the_cpu(tmp_path, precision) -> None:
    _, [fp32] = _rounds(_config(tmp_path))
    _, [low] = _rounds(_config(tmp_path, precision=precision))
    losses = {k: v for k, v in low.items() if "/train/" in k}
    assert losses and all(math.isfinite(v) for v in losses.values())
    assert low["train/loss"] != fp32["train/loss"]  # autocast really ran in low precision
    # fp16 skips its first steps while the gradient scale settles, so only roughly alike
    assert low["train/loss"] == pytest.approx(fp32["train/loss"], rel=0.25)


@pytest.mark.slow
def test_eval_every_two_over_three_rounds_evaluates_rounds_two_and_three(tmp_path) -> None:
    _, history = _rounds(_config(tmp_path, rounds=3, eval_every=2), rounds=3)
    evaluated = [r for r, m in enumerate(history, 1) if "G/nyudv2/semseg/miou" in m]
    assert evaluated == [2, 3]


def test_bad_training_path_settings_name_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match="persistent_workers needs workers > 0"):
        _config(tmp_path, persistent_workers=True)
    with pytest.raises(ConfigError, match="training.precision"):
        _config(tmp_path, precision="fp8")


def test_speed_settings_leave_the_cache_key_alone(tmp_path) -> None:
    def key(**training: object) -> str:
        return cachekey.cache_key(_config(tmp_path, **training), "p", ["v"], "real")

    base = key()
    assert key(workers=4, pin_memory=True, persistent_workers=True, non_blocking=True) == base
    assert key(precision="bf16") != base and key(channels_last=True) != base


@pytest.mark.slow  # a minute here (bf16 on the CPU); the fp32 path is the one runs use
def test_gpu_smoke_profile_times_each_precision_on_the_cpu(tmp_path) -> None:
    from click.testing import CliRunner

    from fmtlbench.cli import main

    args = ["run", "--profile", "gpu-smoke", "--clients", "1"]
    settings = {
        "training.resolution.default": "[16, 16]",
        "training.eval_resolution.default": "[16, 16]",
        "training.resolution.nyudv2": "[16, 16]",
        "training.eval_resolution.nyudv2": "[16, 16]",
        "training.batch_size": "4",
        "data.datasets.nyudv2": str(TWIN),
        "smoke.precisions": "[fp32, bf16]",
        "checkpoint_dir": str(tmp_path / "ck"),
    }
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "images/s" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["fp32", "bf16"]
    for line in lines:
        rate = float(line.split(":")[1].split()[0])
        rss = float(line.split("process RSS")[1].split()[0].replace(",", ""))
        assert rate > 0 and 100 < rss < 100_000  # a CPU run reports the process's peak RSS
        images = int(line.split("(")[1].split()[0])
        assert 0 < images <= TWIN["twin_train"]  # the one client's train split, one epoch
    assert not (tmp_path / "ck").exists()  # untracked: no checkpoint, no MLflow run
