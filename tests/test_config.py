"""Run configuration: profiles, files, overrides, and errors that name the field."""

from __future__ import annotations

import pytest

from fmtlbench.config import RunConfig, build_config, parse_assignment
from fmtlbench.errors import ConfigError


def test_cpu_profile_is_default_and_paper_profile_has_study_settings():
    cpu = build_config()
    assert cpu.profile == "cpu"
    paper = build_config(None, [{"profile": "paper"}])
    assert paper.training.rounds == 100
    assert paper.training.lr == pytest.approx(1e-4)
    assert paper.training.local_epochs["nyudv2"] == 4
    assert paper.training.local_epochs["pascal-context"] == 1
    assert tuple(paper.training.resolution["nyudv2"]) == (448, 576)
    assert tuple(paper.training.resolution["pascal-context"]) == (512, 512)
    assert paper.training.warmup_rounds == 5


def test_precedence_profile_file_then_overrides(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("profile: paper\ntraining:\n  rounds: 7\n  batch_size: 4\n")
    config = build_config(file, [parse_assignment("training.rounds=3")])
    assert config.training.rounds == 3  # override beats file
    assert config.training.batch_size == 4  # file beats profile
    assert config.training.lr == pytest.approx(1e-4)  # profile beats defaults


def test_toml_file_and_dump_roundtrip(tmp_path):
    file = tmp_path / "run.toml"
    file.write_text('scenario = "iid1"\nseed = 5\n[algorithm]\nname = "local"\n')
    config = build_config(file)
    assert (config.seed, config.algorithm.name) == (5, "local")
    again = RunConfig.model_validate(config.dump())
    assert again == config


def test_negative_learning_rate_names_the_field():
    with pytest.raises(ConfigError) as err:
        build_config(None, [parse_assignment("training.lr=-0.1")])
    assert "training.lr" in str(err.value)
    assert "greater than 0" in str(err.value)


def test_unknown_field_is_an_error():
    with pytest.raises(ConfigError, match="training.lrr"):
        build_config(None, [parse_assignment("training.lrr=0.1")])


def test_unknown_profile_and_missing_file():
    with pytest.raises(ConfigError, match="unknown profile 'gpu'"):
        build_config(None, [{"profile": "gpu"}])
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(__import__("pathlib").Path("/nonexistent/run.yaml"))


def test_assignment_parsing():
    assert parse_assignment("a.b=3") == {"a": {"b": 3}}
    assert parse_assignment("a=[1, 2]") == {"a": [1, 2]}
    assert parse_assignment("x.y=fedavg") == {"x": {"y": "fedavg"}}
    with pytest.raises(ConfigError):
        parse_assignment("novalue")
