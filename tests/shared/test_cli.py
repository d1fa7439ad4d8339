"""The `kaizen` command as a user runs it."""

import subprocess
from pathlib import Path

import pytest

from shared.events import EVENT_TYPES
from shared.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_kaizen_stack_status_lists_every_part_answering(stack: Stack) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "kaizen"), "stack", "status"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for part in ("kafka", "redis", "s3", "mlflow"):
        assert part in result.stdout


def test_kaizen_events_lists_every_topic() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "kaizen"), "events"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for model in EVENT_TYPES:
        assert model.topic in result.stdout
