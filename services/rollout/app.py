"""The rollout controller's FastStream app: thin handlers over ``controller.Controller``.

Consumer groups:

- ``rollout`` (``EVAL_GROUP``): eval.passed starts (or queues) a rollout;
- ``rollout-traces``, ``rollout-labels``, ``rollout-feedback``: trace.ingested, trace.labeled and
  feedback.received feed the per-version sample windows of the analysis.

A background loop ticks the controller every ``rollout.tick_s``: analysis, then roll back, extend,
advance or promote. Each decision is published on rollout.stage.

``python -m services.rollout`` (or ``faststream run services.rollout.app:app``) runs it.
"""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import REGISTRY, CollectorRegistry

from services.rollout.controller import SERVICE, Controller
from services.rollout.routing import KubernetesRouter, RedisRouter, TrafficRouter
from services.rollout.settings import RolloutSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event, split_batch, subscribe
from shared.events import (
    EVAL_PASSED,
    FEEDBACK_RECEIVED,
    ROLLOUT_STAGE,
    TRACE_INGESTED,
    TRACE_LABELED,
    EvalPassed,
    FeedbackReceived,
    RolloutStage,
    TraceIngested,
    TraceLabeled,
)
from shared.registry import ModelRegistry
from shared.state import RedisState

EVAL_GROUP = "rollout"
TRACES_GROUP = "rollout-traces"
LABELS_GROUP = "rollout-labels"
FEEDBACK_GROUP = "rollout-feedback"
TOPICS = (EVAL_PASSED, TRACE_INGESTED, TRACE_LABELED, FEEDBACK_RECEIVED, ROLLOUT_STAGE)

log = logging.getLogger("kaizen.rollout")


def make_router(settings: RolloutSettings, state: RedisState) -> TrafficRouter:
    if settings.rollout.router == "kubernetes":
        return KubernetesRouter(state, settings.rollout.kubernetes)
    return RedisRouter(state)


class Resources:
    """The controller and what it holds, created on startup."""

    def __init__(self, settings: RolloutSettings, broker: KafkaBroker) -> None:
        self.settings = settings
        self.stage_out = declare_publisher(broker, settings, RolloutStage)
        self._controller: Controller | None = None
        self.state: RedisState | None = None
        self.stopping = asyncio.Event()
        self.loop: asyncio.Task[None] | None = None

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            raise RuntimeError("the rollout controller is not started")
        return self._controller

    async def publish(self, event: RolloutStage) -> None:
        await publish_event(self.stage_out, event)

    async def start(self) -> None:
        await ensure_topics(self.settings, list(TOPICS))
        self.state = RedisState(self.settings)
        registry = await asyncio.to_thread(ModelRegistry, self.settings)
        self._controller = Controller(
            self.settings, self.state, registry, make_router(self.settings, self.state), self.publish
        )

    async def start_loop(self) -> None:
        routing = await self.controller.sync_champion()
        active = await self.controller.active()
        log.info(
            "rollout controller ready",
            extra={
                "champion": routing.champion_version,
                "resuming": active.model_dump(mode="json") if active is not None else None,
            },
        )
        self.stopping.clear()
        self.loop = asyncio.create_task(self.controller.run(self.stopping), name="rollout-ticks")

    async def stop_loop(self) -> None:
        self.stopping.set()
        if self.loop is not None:
            await self.loop
            self.loop = None

    async def close(self) -> None:
        if self.state is not None:
            await self.state.close()


def create_app(
    settings: RolloutSettings | None = None, *, registry: CollectorRegistry = REGISTRY
) -> FastStream:
    settings = settings or RolloutSettings()
    broker = create_broker(settings, SERVICE, logger=log, registry=registry)
    resources = Resources(settings, broker)

    @subscribe(broker, settings, EVAL_PASSED, EVAL_GROUP)
    async def on_eval_passed(event: EvalPassed) -> None:
        await resources.controller.on_eval_passed(event)

    # The sample streams come in batches: one Redis round trip and one offset commit per batch.
    batching = {"batch": True, "max_records": settings.rollout.batch_size, "batch_timeout_ms": 100}

    # Records are validated one by one (split_batch): an invalid one goes to the DLQ alone.
    traces, labels, feedback = (
        settings.kafka.topic(name) for name in (TRACE_INGESTED, TRACE_LABELED, FEEDBACK_RECEIVED)
    )

    @subscribe(broker, settings, TRACE_INGESTED, TRACES_GROUP, **batching)
    async def on_traces(message: KafkaMessage) -> None:
        events = await split_batch(
            broker, message, {traces: TraceIngested}, settings.kafka.group(TRACES_GROUP)
        )
        await resources.controller.record_traces(events[traces])

    @subscribe(broker, settings, TRACE_LABELED, LABELS_GROUP, **batching)
    async def on_labels(message: KafkaMessage) -> None:
        events = await split_batch(
            broker, message, {labels: TraceLabeled}, settings.kafka.group(LABELS_GROUP)
        )
        await resources.controller.record_labels(events[labels])

    @subscribe(broker, settings, FEEDBACK_RECEIVED, FEEDBACK_GROUP, **batching)
    async def on_feedback(message: KafkaMessage) -> None:
        group = settings.kafka.group(FEEDBACK_GROUP)
        events = await split_batch(broker, message, {feedback: FeedbackReceived}, group)
        await resources.controller.record_feedback(events[feedback])

    return FastStream(
        broker,
        logger=log,
        on_startup=[resources.start],
        after_startup=[resources.start_loop],
        on_shutdown=[resources.stop_loop],
        after_shutdown=[resources.close],
    )


app = create_app()
"""``faststream run services.rollout.app:app`` / ``faststream docs gen services.rollout.app:app``."""
