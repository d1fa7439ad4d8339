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


@pytest.mark.integration
def test_kaizen_approve_refuses_a_version_that_awaits_no_approval(stack: Stack, tmp_path: Path) -> None:
    import os

    from tests.conftest import isolated_settings

    settings = isolated_settings()
    env = os.environ | {
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_PROJECT_ID": settings.project_id,
    }
    result = subprocess.run(
        [str(ROOT / "scripts" / "kaizen"), "approve", "987654", "--by", "tester"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "approval refused" in result.stderr and "987654" in result.stderr
