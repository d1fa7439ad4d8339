"""The loop configurations are files the services' own settings accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.config import DEMO_CONFIG, REDUCED_CONFIG, flatten_settings, load_config
from demo.workload.prompts import WorkloadError
from services.evaluator.settings import EvaluatorSettings
from services.labeler.settings import LabelerSettings
from services.rollout.settings import RolloutSettings
from services.trainer.settings import TrainerSettings


def test_flatten_nests_groups_and_encodes_values() -> None:
    env = flatten_settings(
        {
            "log_level": "DEBUG",
            "evaluator": {"absolute": {}, "judge_enabled": False},
            "rollout": {"stages": [0.5, 1.0]},
        }
    )
    assert env == {
        "KAIZEN_LOG_LEVEL": "DEBUG",
        "KAIZEN_EVALUATOR__ABSOLUTE": "{}",
        "KAIZEN_EVALUATOR__JUDGE_ENABLED": "false",
        "KAIZEN_ROLLOUT__STAGES": "[0.5, 1.0]",
    }


@pytest.mark.parametrize("path", [DEMO_CONFIG, REDUCED_CONFIG], ids=["demo", "reduced"])
def test_every_service_reads_the_configuration(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(path)
    for name, value in config.service_env().items():
        monkeypatch.setenv(name, value)
    rollout = RolloutSettings()
    assert rollout.rollout.stages == [0.05, 0.25, 1.0]
    assert rollout.gateway.base_model == config.base_model
    trainer = TrainerSettings()
    assert trainer.training.base_model == config.base_model
    assert trainer.training.max_steps == config.settings["training"]["max_steps"]
    assert (
        LabelerSettings().curator.sample_count_threshold
        == config.settings["curator"]["sample_count_threshold"]
    )
    assert EvaluatorSettings().evaluator.judge_enabled is False


def test_reduced_is_small_and_permissive() -> None:
    reduced = load_config(REDUCED_CONFIG)
    assert reduced.base_model == "tiny-random-llama"
    assert reduced.settings["evaluator"]["absolute"] == {}
    assert reduced.time_limit_s <= 600


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nworkload: {users: 2, requets_per_round: 3}\n")
    with pytest.raises(ValueError, match="requets_per_round"):
        load_config(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(WorkloadError):
        load_config(path)
