"""The controller killed mid-stage (SIGKILL, real entry point) resumes the same rollout at its stage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.rollout.controller import ACTIVE_KEY, Rollout
from shared.settings import KaizenSettings
from shared.state import RedisState

from .support import (
    Producer,
    StageEvents,
    eval_passed,
    healthy,
    register_version,
    rollout_settings,
    settings_env,
    traffic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[3]


def start_controller(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "services.rollout"], cwd=REPO_ROOT, env=env, stdout=sink, stderr=sink
        )


async def test_a_killed_controller_resumes_the_same_rollout_at_the_same_stage(
    settings: KaizenSettings, tmp_path: Path
) -> None:
    # Extensions are allowed generously: on a busy machine the subprocess's consumers can lag the
    # synthetic traffic, and this test is about resuming, not about the extension limit.
    rollout = rollout_settings(settings, min_stage_duration_s=2.0, max_extensions=10)
    canary = await asyncio.to_thread(register_version, rollout, 11)
    env = os.environ | settings_env(rollout) | {"PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "controller.log"
    state = RedisState(rollout)
    first = start_controller(env, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with StageEvents(rollout) as stages, Producer(rollout) as producer, traffic(rollout, healthy):
            await producer.send(eval_passed(rollout, canary))
            await stages.decision(canary, "advanced", timeout=90)
            before = Rollout.model_validate(await state.get_json(ACTIVE_KEY))
            first.kill()  # mid-stage 1, no shutdown of any kind
            first.wait()
            after_kill = Rollout.model_validate(await state.get_json(ACTIVE_KEY))
            second = start_controller(env, log)
            await stages.decision(canary, "promoted", timeout=90)
    except AssertionError:
        print(log.read_text()[-5000:])
        raise
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        await state.close()

    assert before.stage == 1
    assert (after_kill.rollout_id, after_kill.stage) == (before.rollout_id, 1)
    decisions = stages.decisions(canary)
    # The restarted controller may extend stage 1 once while its consumers catch up on the backlog.
    assert [d for d in decisions if d[0] != "extended"] == [
        ("started", 0),
        ("advanced", 1),
        ("advanced", 2),
        ("promoted", 2),
    ]
    assert all(stage == 1 for decision, stage in decisions if decision == "extended")
    resumed = next(e for e in stages.events if e.decision == "advanced" and e.stage == 2)
    assert "stage 1 (25%)" in resumed.reason  # the restarted controller finished stage 1, not a new rollout
