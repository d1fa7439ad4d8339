"""The training configuration: help on every field, defaults per device, the hash, the environment."""

from __future__ import annotations

import dataclasses

import pytest

from services.trainer.config import TrainingConfig
from services.trainer.settings import TrainerSettings


def test_every_field_has_help_text() -> None:
    missing = [name for name, text in TrainingConfig.help().items() if not text.strip()]
    assert missing == []
    assert len(TrainingConfig.help()) == len(dataclasses.fields(TrainingConfig))


def test_cpu_defaults_are_memory_frugal_and_float32() -> None:
    config = TrainingConfig().resolve("dpo", cuda=False)
    assert config.algorithm == "dpo"
    assert config.micro_batch_size == 2 and config.gradient_accumulation_steps == 4
    odd = TrainingConfig(batch_size=5).resolve("dpo", cuda=False)
    assert odd.micro_batch_size == 1 and odd.gradient_accumulation_steps == 5
    assert config.bf16 is False and config.gradient_checkpointing is False
    assert config.learning_rate == 2e-5, "LoRA's rate"
    assert config.use_lora


def test_gpu_defaults_are_trls() -> None:
    config = TrainingConfig().resolve("sft", cuda=True, bf16_supported=True)
    assert config.micro_batch_size == 8 and config.gradient_accumulation_steps == 1
    assert config.bf16 is True and config.gradient_checkpointing is True
    full = TrainingConfig(use_lora=False)
    assert full.resolve("sft", cuda=True).learning_rate == 2e-5
    assert full.resolve("dpo", cuda=True).learning_rate == 1e-6
    assert full.resolve("grpo", cuda=True, bf16_supported=False).bf16 is False


def test_pinned_algorithm_wins_over_the_datasets_suggestion() -> None:
    assert TrainingConfig(algorithm="sft").resolve("dpo", cuda=False).algorithm == "sft"


def test_inconsistent_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="micro_batch_size"):
        TrainingConfig(batch_size=8, micro_batch_size=3).resolve("dpo", cuda=False)
    with pytest.raises(ValueError, match="num_generations"):
        TrainingConfig(batch_size=6, num_generations=4).resolve("grpo", cuda=False)
    with pytest.raises(ValueError, match="dpo_loss_type"):
        TrainingConfig(dpo_loss_type=["sigmoid", "exo_pair"]).resolve("dpo", cuda=False)
    with pytest.raises(ValueError, match="grpo_loss_type"):
        TrainingConfig(grpo_loss_type="cispo").resolve("grpo", cuda=False)
    with pytest.raises(ValueError, match="algorithm"):
        TrainingConfig().resolve("ppo", cuda=False)


def test_config_hash_is_stable_and_follows_every_field() -> None:
    config = TrainingConfig().resolve("dpo", cuda=False)
    assert config.config_hash() == TrainingConfig().resolve("dpo", cuda=False).config_hash()
    assert config.config_hash() != dataclasses.replace(config, beta=0.2).config_hash()
    assert len(config.config_hash()) == 16


def test_training_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_TRAINING__BASE_MODEL", "tiny-random-llama")
    monkeypatch.setenv("KAIZEN_TRAINING__DPO_LOSS_TYPE", '["ipo", "sigmoid"]')
    monkeypatch.setenv("KAIZEN_TRAINING__LEARNING_RATE", "0.001")
    monkeypatch.setenv("KAIZEN_TRAINER__LEASE_S", "30")
    settings = TrainerSettings()
    assert settings.training.base_model == "tiny-random-llama"
    assert settings.training.dpo_loss_type == ["ipo", "sigmoid"]
    assert settings.training.learning_rate == 0.001
    assert settings.trainer.lease_s == 30
    assert settings.work_dir == settings.home / "trainer"
