"""The canary controller over the real stack: Kafka events in, rollout.stage out, MLflow aliases and
tags moved, weights in Redis. Traffic is synthetic but flows through the live event stream."""

from __future__ import annotations

import asyncio

import pytest

from services.rollout.controller import TAG_REASON, TAG_STATUS
from services.rollout.routing import BASE_VERSION, Routing, read_routing
from services.rollout.settings import RolloutSettings
from shared.events import RolloutStage
from shared.registry import CHAMPION, PREVIOUS, ModelRegistry
from shared.settings import KaizenSettings
from shared.state import RedisState

from .support import (
    HEALTHY,
    Producer,
    Profile,
    StageEvents,
    controller_app,
    eval_passed,
    healthy,
    register_version,
    rollout_settings,
    running,
    traffic,
)

pytestmark = pytest.mark.integration


async def test_a_healthy_canary_goes_through_every_stage_and_is_promoted(settings: KaizenSettings) -> None:
    rollout = rollout_settings(settings)
    old = await asyncio.to_thread(register_version, rollout, 1)
    new = await asyncio.to_thread(register_version, rollout, 2)
    registry = ModelRegistry(rollout)
    registry.set_alias(CHAMPION, old)

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)),
        Producer(rollout) as producer,
        traffic(rollout, healthy),
    ):
        await producer.send(eval_passed(rollout, new, old))
        promoted = await stages.decision(new, "promoted")

    assert stages.decisions(new) == [("started", 0), ("advanced", 1), ("advanced", 2), ("promoted", 2)]
    weights = [e.canary_weight for e in stages.events if e.model_version == new]
    assert weights == [0.05, 0.25, 1.0, 1.0]
    advanced = [e for e in stages.events if e.decision == "advanced"]
    for event in advanced:  # every decision carries the numbers behind it
        assert event.metrics["error_rate.canary_n"] >= 30
        assert event.metrics["feedback.champion_n"] >= 20
        assert "composite_reward ok" in event.reason
    # The final stage judges the canary on its whole rollout, not on its last stage alone.
    for metric in ("error_rate", "feedback"):
        earlier = sum(e.metrics[f"{metric}.canary_n"] for e in advanced)
        assert promoted.metrics[f"{metric}.canary_n"] >= earlier, (metric, promoted.metrics, earlier)
    assert promoted.champion_version == old
    assert f"version {old} keeps alias 'previous'" in promoted.reason
    assert registry.version(CHAMPION).version == new  # type: ignore[union-attr]
    assert registry.version(PREVIOUS).version == old  # type: ignore[union-attr]
    tags = registry.client.get_model_version(rollout.mlflow.registered_model, new).tags
    assert tags[TAG_STATUS] == "promoted"
    state = RedisState(rollout)
    try:
        routing = await read_routing(state)
    finally:
        await state.close()
    assert (routing.champion_version, routing.canary_version, routing.canary_weight) == (new, None, 0.0)


async def test_a_canary_with_a_worse_error_rate_is_rolled_back_at_the_stage_where_it_shows(
    settings: KaizenSettings,
) -> None:
    rollout = rollout_settings(settings)
    canary = await asyncio.to_thread(register_version, rollout, 3)
    failing = Profile(errors=(1, 0, 0, 1, 0))  # 40% errors against the champion's 5%

    def profile(version: str, routing: Routing) -> Profile:
        # The canary is fine at 5% and breaks at 25% (say, under load).
        return failing if version == canary and (routing.stage or 0) >= 1 else HEALTHY

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)),
        Producer(rollout) as producer,
    ):
        async with traffic(rollout, profile):
            await producer.send(eval_passed(rollout, canary))
            rolled_back = await stages.decision(canary, "rolled_back")
        state = RedisState(rollout)
        try:
            routing = await read_routing(state)
        finally:
            await state.close()

    assert stages.decisions(canary) == [("started", 0), ("advanced", 1), ("rolled_back", 1)]
    assert rolled_back.canary_weight == 0.0
    assert "error_rate regressed" in rolled_back.reason
    assert "stage 1 (25%)" in rolled_back.reason
    assert rolled_back.metrics["error_rate.canary"] > rolled_back.metrics["error_rate.champion"] + 0.2
    assert rolled_back.metrics["rollback_latency_ms"] < 2000
    assert rolled_back.champion_version == BASE_VERSION  # no champion alias: the base model serves
    assert routing.canary_weight == 0.0 and routing.canary_version is None
    registry = ModelRegistry(rollout)
    tags = registry.client.get_model_version(rollout.mlflow.registered_model, canary).tags
    assert tags[TAG_STATUS] == "rolled_back"
    assert "error_rate regressed" in tags[TAG_REASON]
    assert registry.version(CHAMPION) is None


async def test_a_canary_with_worse_feedback_is_rolled_back(settings: KaizenSettings) -> None:
    rollout = rollout_settings(settings)
    canary = await asyncio.to_thread(register_version, rollout, 4)
    disliked = Profile(feedback=(0.0, 0.0, 1.0, 0.0, 0.0))  # 20% thumbs up against 70%

    def profile(version: str, routing: Routing) -> Profile:
        return disliked if version == canary else HEALTHY

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)),
        Producer(rollout) as producer,
        traffic(rollout, profile),
    ):
        await producer.send(eval_passed(rollout, canary))
        rolled_back = await stages.decision(canary, "rolled_back")

    assert stages.decisions(canary) == [("started", 0), ("rolled_back", 0)]
    assert "feedback regressed" in rolled_back.reason
    assert "error_rate" not in rolled_back.reason.split("feedback regressed")[0]
    assert rolled_back.metrics["feedback.canary"] < rolled_back.metrics["feedback.champion"]


async def roll_out_unrated(rollout: RolloutSettings, canary: str) -> tuple[StageEvents, RolloutStage]:
    """Roll ``canary`` out until it is rolled back: traces and labels flow on both arms, but no user ever
    rates an answer."""
    no_feedback = Profile(feedback=())

    def profile(version: str, routing: Routing) -> Profile | None:
        return no_feedback

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)),
        Producer(rollout) as producer,
        traffic(rollout, profile),
    ):
        await producer.send(eval_passed(rollout, canary))
        rolled_back = await stages.decision(canary, "rolled_back")
    return stages, rolled_back


async def test_too_little_traffic_extends_the_stage_and_missing_data_is_never_a_pass(
    settings: KaizenSettings,
) -> None:
    rollout = rollout_settings(settings, max_extensions=2)
    canary = await asyncio.to_thread(register_version, rollout, 5)
    stages, rolled_back = await roll_out_unrated(rollout, canary)

    assert stages.decisions(canary) == [("started", 0), ("extended", 0), ("extended", 0), ("rolled_back", 0)]
    extended = [e for e in stages.events if e.decision == "extended"]
    assert all("feedback" in e.reason and "insufficient" not in e.reason for e in extended)
    assert "0 canary and 0 champion samples" in extended[0].reason
    assert "missing data is never" in rolled_back.reason
    assert rolled_back.metrics["error_rate.canary_n"] >= 30  # the other metrics had data: not enough alone


async def test_a_first_stage_without_feedback_requirement_advances_and_the_next_stage_waits_for_it(
    settings: KaizenSettings,
) -> None:
    everything = ["error_rate", "latency_p95", "feedback", "composite_reward"]
    health = ["error_rate", "latency_p95", "composite_reward"]
    rollout = rollout_settings(
        settings, max_extensions=1, stage_required_metrics=[health, everything, everything]
    )
    canary = await asyncio.to_thread(register_version, rollout, 8)
    stages, rolled_back = await roll_out_unrated(rollout, canary)

    assert stages.decisions(canary) == [("started", 0), ("advanced", 1), ("extended", 1), ("rolled_back", 1)]
    advanced = next(e for e in stages.events if e.decision == "advanced")
    assert "composite_reward ok" in advanced.reason and "feedback insufficient" in advanced.reason
    assert "stage 1 (25%): too little data" in rolled_back.reason and "feedback" in rolled_back.reason


async def test_a_second_candidate_waits_for_the_running_rollout(settings: KaizenSettings) -> None:
    rollout = rollout_settings(settings, min_stage_duration_s=60.0)
    first = await asyncio.to_thread(register_version, rollout, 6)
    second = await asyncio.to_thread(register_version, rollout, 7)

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)) as app,
        Producer(rollout) as producer,
    ):
        await producer.send(eval_passed(rollout, first))
        await stages.decision(first, "started")
        await producer.send(eval_passed(rollout, second))
        queued = await stages.decision(second, "queued")
        assert queued.canary_weight == 0.0
        assert f"version {first} is being rolled out" in queued.reason
        state = RedisState(rollout)
        try:
            routing = await read_routing(state)
            assert routing.canary_version == first  # never two canaries at once
            # The operator aborts the first; the second starts on the next tick.
            from services.rollout import controls

            await controls.abort(rollout, reason="bad vibes")
            started = await stages.decision(second, "started")
            routing = await read_routing(state)
        finally:
            await state.close()
        del app

    assert stages.decisions(first) == [("started", 0), ("aborted", 0)]
    assert started.canary_weight == 0.05
    assert routing.canary_version == second


async def test_a_second_candidate_supersedes_when_configured(settings: KaizenSettings) -> None:
    rollout = rollout_settings(settings, min_stage_duration_s=60.0, on_new_candidate="supersede")
    first = await asyncio.to_thread(register_version, rollout, 8)
    second = await asyncio.to_thread(register_version, rollout, 9)

    async with (
        StageEvents(rollout) as stages,
        running(controller_app(rollout)),
        Producer(rollout) as producer,
    ):
        await producer.send(eval_passed(rollout, first))
        await stages.decision(first, "started")
        await producer.send(eval_passed(rollout, second))
        await stages.decision(second, "started")

    aborted = next(e for e in stages.events if e.decision == "aborted")
    assert aborted.model_version == first
    assert f"superseded by version {second}" in aborted.reason


async def test_feedback_that_arrives_before_its_trace_waits_for_it(settings: KaizenSettings) -> None:
    """Users rate answers before the traces are through ingest: that feedback must still count for the
    version that served it, once the trace is known."""
    import uuid

    from services.rollout.controller import Controller
    from services.rollout.routing import RedisRouter
    from shared.events import FeedbackReceived, TableRef, TraceIngested

    rollout = rollout_settings(settings)
    old = await asyncio.to_thread(register_version, rollout, 1)
    new = await asyncio.to_thread(register_version, rollout, 2)
    registry = ModelRegistry(rollout)
    registry.set_alias(CHAMPION, old)
    state = RedisState(rollout)
    published: list[object] = []

    async def publish(event: object) -> None:
        published.append(event)

    controller = Controller(rollout, state, registry, RedisRouter(state), publish)
    try:
        await controller.on_eval_passed(eval_passed(rollout, new, old))
        active = await controller.active()
        assert active is not None
        common = {"producer": "test", "project_id": rollout.project_id}
        early = [f"early-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        feedback = [
            FeedbackReceived(
                correlation_id=t, trace_id=t, feedback_id=uuid.uuid4().hex, kind="stars", value=v, **common
            )
            for t, v in zip(early, (0.25, 0.5, 1.0), strict=True)
        ]
        assert await controller.record_feedback(feedback) == 0, "no version known yet"
        traces = [
            TraceIngested(
                correlation_id=t,
                trace_id=t,
                model="m",
                model_version=version,
                consent=True,
                stored=TableRef(table="kaizen.traces"),
                latency_ms=100.0,
                **common,
            )
            for t, version in zip(early, (new, new, old), strict=True)
        ]
        await controller.record_traces(traces)
        canary = await controller._arm(active, "all", new)
        champion = await controller._arm(active, "all", old)
        assert sorted(canary.feedback) == [0.25, 0.5] and champion.feedback == [1.0]
        await controller.record_traces(traces)  # redelivered: nothing counted twice
        assert sorted((await controller._arm(active, "all", new)).feedback) == [0.25, 0.5]
    finally:
        await state.close()
