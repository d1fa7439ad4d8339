"""The canary timeline: rollout.stage read from its beginning and followed while the dashboard runs.

A consumer without a group (nothing is committed; every start reads the topic again from the earliest
offset) keeps the project's events in memory, deduplicated by event id, the newest ``limit`` of them.
A broker that does not answer is retried with backoff; the page says the feed is disconnected meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from services.dashboard.views import RolloutEvent, RolloutTimeline
from shared.bus import ensure_topics
from shared.events import ROLLOUT_STAGE, RolloutStage
from shared.settings import KaizenSettings


class RolloutFeed:
    def __init__(self, settings: KaizenSettings, limit: int, logger: logging.Logger) -> None:
        self.settings = settings
        self.limit = limit
        self.log = logger
        self.connected = False
        self._events: OrderedDict[str, RolloutEvent] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="rollout-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def timeline(self) -> RolloutTimeline:
        events = sorted(self._events.values(), key=lambda event: (event.occurred_at, event.stage))
        return RolloutTimeline(connected=self.connected, events=events)

    def add(self, payload: bytes | None) -> None:
        """Keep one rollout.stage message if it is this project's; a malformed one is logged and skipped."""
        try:
            event = RolloutStage.model_validate_json(payload or b"")
        except ValidationError as exc:
            self.log.warning("skipping a malformed rollout.stage message", extra={"error": str(exc)})
            return
        if event.project_id != self.settings.project_id:
            return
        self._events[str(event.event_id)] = RolloutEvent(
            event_id=str(event.event_id),
            occurred_at=event.occurred_at,
            model_version=event.model_version,
            champion_version=event.champion_version,
            stage=event.stage,
            canary_weight=event.canary_weight,
            decision=event.decision,
            reason=event.reason,
            metrics=event.metrics,
        )
        while len(self._events) > self.limit:
            self._events.popitem(last=False)

    async def _follow(self) -> None:
        topic = self.settings.kafka.topic(ROLLOUT_STAGE)
        backoff = 0.5
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                await ensure_topics(self.settings, [ROLLOUT_STAGE])
                consumer = AIOKafkaConsumer(
                    topic,
                    bootstrap_servers=self.settings.kafka.bootstrap_servers,
                    client_id="kaizen-dashboard",
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    metadata_max_age_ms=5000,
                )
                await consumer.start()
                self.connected = True
                backoff = 0.5
                self.log.info("following rollout.stage", extra={"topic": topic})
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=500)
                    for records in batch.values():
                        for record in records:
                            self.add(record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: retry, the page says so meanwhile
                self.log.warning(
                    "rollout.stage feed failed, retrying", extra={"error": repr(exc), "retry_in_s": backoff}
                )
            finally:
                self.connected = False
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
