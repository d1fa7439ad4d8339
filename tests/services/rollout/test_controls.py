"""Manual controls through the CLI sub-app (`kaizen rollout ...`, `kaizen rollback`), over the real stack."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from services.rollout import controls
from services.rollout.cli import rollout_app
from services.rollout.routing import read_routing
from shared.events import ROLLOUT_STAGE, RolloutStage
from shared.registry import CHAMPION, PREVIOUS, ModelRegistry
from shared.settings import KaizenSettings
from shared.state import RedisState
from tests.services.ingest.support import read_topic

from .support import eval_passed, register_version, rollout_settings, settings_env

pytestmark = pytest.mark.integration


def test_status_pause_resume_promote_rollback_and_abort(settings: KaizenSettings) -> None:
    rollout = rollout_settings(settings, min_stage_duration_s=600.0)
    old = register_version(rollout, 1)
    new = register_version(rollout, 2)
    registry = ModelRegistry(rollout)
    registry.set_alias(CHAMPION, old)
    runner = CliRunner(env=settings_env(rollout))

    async def start() -> None:
        async with controls.controller(rollout) as controller:
            await controller.on_eval_passed(eval_passed(rollout, new, old))

    asyncio.run(start())

    status = runner.invoke(rollout_app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    document = json.loads(status.output)
    assert document["rollout"]["model_version"] == new and document["rollout"]["stage"] == 0
    assert document["routing"]["canary_weight"] == 0.05
    assert {item["metric"] for item in document["analysis"]} == {
        "error_rate",
        "latency_p95",
        "feedback",
        "composite_reward",
    }
    assert "rollout of version" in runner.invoke(rollout_app, ["status"]).output

    paused = runner.invoke(rollout_app, ["pause", "--reason", "looking at dashboards"])
    assert paused.exit_code == 0 and "paused" in paused.output
    again = runner.invoke(rollout_app, ["pause"])
    assert again.exit_code == 1 and "already paused" in again.output
    assert runner.invoke(rollout_app, ["resume"]).exit_code == 0

    promoted = runner.invoke(rollout_app, ["promote", "-r", "metrics look great"])
    assert promoted.exit_code == 0, promoted.output
    assert registry.version(CHAMPION).version == new  # type: ignore[union-attr]
    assert registry.version(PREVIOUS).version == old  # type: ignore[union-attr]

    nothing = runner.invoke(rollout_app, ["abort"])
    assert nothing.exit_code == 1 and "no rollout is running" in nothing.output

    back = runner.invoke(rollout_app, ["rollback", "-r", "users complain"])
    assert back.exit_code == 0, back.output
    assert registry.version(CHAMPION).version == old  # type: ignore[union-attr]

    async def observe() -> tuple[list[RolloutStage], str]:
        records = await read_topic(rollout, ROLLOUT_STAGE, at_least=5, settle_s=0.5)
        state = RedisState(rollout)
        try:
            routing = await read_routing(state)
        finally:
            await state.close()
        return [RolloutStage.model_validate_json(r.value or b"") for r in records], routing.champion_version

    events, champion = asyncio.run(observe())
    assert [(e.decision, e.model_version) for e in events] == [
        ("started", new),
        ("paused", new),
        ("resumed", new),
        ("promoted", new),
        ("rolled_back", new),
    ]
    assert events[1].reason == "looking at dashboards"
    assert "metrics look great at stage 0" in events[3].reason
    assert f"champion returned from version {new} to {old}" in events[4].reason
    assert champion == old  # the gateway serves the restored champion at once
