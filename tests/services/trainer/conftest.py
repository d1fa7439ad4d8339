"""Fixtures of the trainer tests: the real kernel server, and trainer settings of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.settings import TrainerSettings
from shared.settings import KaizenSettings
from tests.fixtures.kernel_server import kernel_server  # noqa: F401
from tests.services.trainer.support import trainer_settings


@pytest.fixture
def trainer(settings: KaizenSettings, tmp_path: Path) -> TrainerSettings:
    """Trainer settings for a few quick steps of the tiny random llama, isolated like ``settings``."""
    return trainer_settings(settings, tmp_path / "work")
