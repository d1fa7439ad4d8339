"""Helpers of the labeler's integration tests: traces land and events go out exactly as the ingest worker
does it (rows appended to the ``traces`` table, then trace.ingested / feedback.received), the labeler
app runs in process against the real stack, and an observer group collects what it publishes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from faststream import FastStream
from prometheus_client import CollectorRegistry

from services.labeler.app import LABELER_GROUP, create_app
from services.labeler.settings import LabelerSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event, subscribe
from shared.events import (
    DATASET_READY,
    FEEDBACK_RECEIVED,
    TRACE_INGESTED,
    TRACE_LABELED,
    DatasetReady,
    FeedbackReceived,
    TableRef,
    TraceIngested,
    TraceLabeled,
)
from shared.settings import KaizenSettings
from shared.store import TRACES, IcebergStore

TIMEOUT_S = 90.0


def labeler_settings(settings: KaizenSettings, *, judge_url: str | None = None) -> LabelerSettings:
    """The test's isolated settings as the labeler's, judge off unless a judge URL is given."""
    labeler = LabelerSettings.model_validate(settings.model_dump())
    labeler.labeler.batch_timeout_ms = 50
    labeler.labeler.judge_enabled = judge_url is not None
    if judge_url is not None:
        labeler.judge.base_url = judge_url
        labeler.judge.model = "scripted"
        # Generous for a loaded machine: the judge shares this process, and a call that times out
        # before the judge counts it would hide the retry the judge-path test counts.
        labeler.judge.timeout_s = 3.0
    labeler.curator.tick_s = 0.2
    labeler.curator.champion_cache_s = 3600
    return labeler


async def wait_for(
    condition: Callable[[], bool], timeout: float = TIMEOUT_S, what: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[FastStream]:
    started = time.monotonic()
    await app.start()
    print(f"[labeler] started in {time.monotonic() - started:.1f}s")
    try:
        yield app
    finally:
        stopping = time.monotonic()
        await app.stop()
        print(f"[labeler] stopped in {time.monotonic() - stopping:.1f}s")


def trace_row(project_id: str, trace_id: str, prompt: str, response: str, **fields: Any) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "project_id": project_id,
        "ts": datetime.now(UTC),
        "model": "SmolLM2-135M-Instruct",
        "model_version": "1",
        "consent": True,
        "prompt": prompt,
        "response": response,
        "status": "ok",
        "ingested_at": datetime.now(UTC),
        **fields,
    }


class Traffic:
    """What the ingest worker does: land traces in Iceberg, then publish their events."""

    def __init__(self, settings: KaizenSettings) -> None:
        self.settings = settings
        self.store = IcebergStore(settings)
        self.broker = create_broker(settings, "test-ingest", registry=CollectorRegistry())
        self.traces = declare_publisher(self.broker, settings, TraceIngested)
        self.feedback = declare_publisher(self.broker, settings, FeedbackReceived)
        self.sent_feedback = 0

    async def __aenter__(self) -> Traffic:
        await ensure_topics(self.settings, [TRACE_INGESTED, FEEDBACK_RECEIVED, TRACE_LABELED, DATASET_READY])
        await self.broker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()

    def land(self, rows: Sequence[dict[str, Any]]) -> list[TraceIngested]:
        """Append trace rows in one commit; the trace.ingested events that point at that snapshot."""
        snapshot_id = self.store.append(TRACES, rows)
        return [
            TraceIngested(
                producer="ingest-worker",
                project_id=row["project_id"],
                correlation_id=row["trace_id"],
                trace_id=row["trace_id"],
                model=row["model"],
                model_version=row.get("model_version"),
                consent=True,
                stored=TableRef(table=self.store.identifier(TRACES), snapshot_id=snapshot_id),
                session_id=row.get("session_id"),
                status=row.get("status", "ok"),
            )
            for row in rows
        ]

    async def publish_traces(self, events: Sequence[TraceIngested]) -> None:
        for event in events:
            await publish_event(self.traces, event)

    async def publish_feedback(
        self,
        project_id: str,
        trace_id: str,
        kind: str,
        value: float | None = None,
        feedback_id: str | None = None,
    ) -> FeedbackReceived:
        event = FeedbackReceived(
            producer="ingest-worker",
            project_id=project_id,
            correlation_id=trace_id,
            trace_id=trace_id,
            feedback_id=feedback_id or uuid.uuid4().hex,
            kind=kind,  # type: ignore[arg-type]
            value=value,
        )
        await publish_event(self.feedback, event)
        self.sent_feedback += 1
        return event


class Observer:
    """A consumer group of its own collecting trace.labeled and dataset.ready."""

    def __init__(self, settings: KaizenSettings) -> None:
        self.broker = create_broker(settings, "test-observer", registry=CollectorRegistry())
        self.labels: list[TraceLabeled] = []
        self.datasets: list[DatasetReady] = []

        # One group per subscriber: two consumers of one group in one process can stall each other's
        # shutdown in a rebalance.
        @subscribe(self.broker, settings, TRACE_LABELED, "test-observer-labels")
        async def on_label(event: TraceLabeled) -> None:
            self.labels.append(event)

        @subscribe(self.broker, settings, DATASET_READY, "test-observer-datasets")
        async def on_dataset(event: DatasetReady) -> None:
            self.datasets.append(event)

    async def __aenter__(self) -> Observer:
        await self.broker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()

    def latest(self) -> dict[str, TraceLabeled]:
        found: dict[str, TraceLabeled] = {}
        for event in self.labels:
            if event.trace_id not in found or event.label_version > found[event.trace_id].label_version:
                found[event.trace_id] = event
        return found

    def versions(self, trace_id: str) -> list[int]:
        return sorted(event.label_version for event in self.labels if event.trace_id == trace_id)


async def committed(settings: KaizenSettings, topic: str, group: str = LABELER_GROUP) -> int:
    """Messages of a topic the group has committed (summed over partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.kafka.group(group))
    finally:
        await admin.close()
    physical = settings.kafka.topic(topic)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == physical and meta.offset > 0)


def labeler_app(settings: LabelerSettings, roles: Sequence[str] = ("labeler",)) -> FastStream:
    return create_app(settings, roles=roles, registry=CollectorRegistry())
