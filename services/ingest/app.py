"""The ingest worker: a FastStream app from ``trace.raw`` / ``feedback.raw`` to Iceberg and announcements.

``python -m services.ingest.worker`` (or ``faststream run services.ingest.app:app``) runs it. Each
handler takes a batch of raw messages and:

1. validates every message (an invalid one goes to ``<topic>.dlq`` with the reason; the rest go on),
2. hands the batch to ``TraceLanding`` / ``FeedbackLanding`` (redaction, consent gate, deduplication,
   one Iceberg commit per table),
3. publishes the announcements (``trace.ingested`` only after the commit, ``feedback.received``), asking
   the topic first about announcements a crashed attempt may already have published,
4. marks them done in the ledger; FastStream then commits the offsets.

A failure of Kafka, Redis or Iceberg is retried, with backoff, until it passes: the batch is never
skipped, and every step is idempotent, so a retry (or another worker after a crash) finishes the
work without repeating any of it. Anything else is retried a few times, then each message of the
batch goes to its dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import REGISTRY, CollectorRegistry
from redis.exceptions import RedisError

from services.ingest.auth import KeyRing
from services.ingest.bulk import BulkProducer, Header, find_published
from services.ingest.landing import Announcement, FeedbackLanding, LandingResult, TraceLanding
from services.ingest.ledger import Ledger
from services.ingest.metrics import IngestMetrics
from services.ingest.redaction import Redactor
from services.ingest.runtime import BatchCollector
from services.ingest.settings import IngestSettings
from services.ingest.validation import Rejected, decode_events
from shared.bus import (
    create_broker,
    dead_letter_headers,
    declare_publisher,
    ensure_topics,
    subscribe,
)
from shared.events import (
    FEEDBACK_RAW,
    FEEDBACK_RECEIVED,
    TRACE_INGESTED,
    TRACE_RAW,
    FeedbackRaw,
    FeedbackReceived,
    TraceIngested,
    TraceRaw,
    dlq_topic,
)
from shared.state import RedisState
from shared.store import TRACES, TRACES_NOTRAIN, IcebergStore, StoreError
from shared.telemetry import serve_metrics

SERVICE = "ingest"
TRACE_CONSUMER = "ingest-worker"
"""Consumer group of the worker on ``trace.raw`` (KEDA scales the worker on its lag)."""
FEEDBACK_CONSUMER = "ingest-worker-feedback"
"""Consumer group of the worker on ``feedback.raw``."""
CONSUMER_GROUPS = (TRACE_CONSUMER, FEEDBACK_CONSUMER)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    KafkaError,
    RedisError,
    StoreError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)
"""Failures of the infrastructure: retried until they pass (skipping the batch would lose data)."""
_OTHER_ATTEMPTS = 3
_MAX_BACKOFF_S = 30.0

T = TypeVar("T")


async def _raw_bodies(message: Any) -> Any:
    """Keep message bodies as bytes: the handlers validate each message themselves."""
    return message.body


class Worker:
    """The worker's resources (created on startup) and the steps of its handlers."""

    def __init__(self, settings: IngestSettings, broker: KafkaBroker, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.broker = broker
        self.log = logging.getLogger("kaizen.ingest.worker")
        self.metrics = IngestMetrics.of(registry)
        self.redactor = Redactor(settings.ingest.redact_patterns)
        self.projects = KeyRing.from_settings(settings).projects
        self.producer: BulkProducer | None = None
        self.state: RedisState | None = None
        self.traces: TraceLanding | None = None
        self.feedback: FeedbackLanding | None = None
        self._headers: dict[str, list[Header]] = {
            topic: [("content-type", b"application/json"), ("kaizen-event-type", topic.encode())]
            for topic in (TRACE_INGESTED, FEEDBACK_RECEIVED)
        }

    async def start(self) -> None:
        settings = self.settings
        await ensure_topics(settings, [TRACE_RAW, FEEDBACK_RAW, TRACE_INGESTED, FEEDBACK_RECEIVED])
        self.state = RedisState(settings)
        ledger = Ledger(self.state, settings.ingest.dedup_ttl_s)
        store = await asyncio.to_thread(IcebergStore, settings)
        # Create (or load) the tables now, so the first batch does not pay for it.
        for table in (TRACES, TRACES_NOTRAIN) if settings.ingest.keep_unconsented else (TRACES,):
            await asyncio.to_thread(store.table, table)
        self.traces = TraceLanding(
            store,
            ledger,
            self.redactor,
            self.metrics,
            keep_unconsented=settings.ingest.keep_unconsented,
            contexts_ttl_s=settings.ingest.contexts_ttl_s,
            logger=self.log,
        )
        self.feedback = FeedbackLanding(ledger, self.redactor)
        self.producer = BulkProducer(settings, client_id="kaizen-ingest-worker")
        await self.producer.start()
        if settings.metrics_port is not None:
            serve_metrics(settings.metrics_port)
        self.log.info("ingest worker ready", extra={"projects": sorted(self.projects)})

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.state is not None:
            await self.state.close()

    # The two handlers' bodies.

    async def land_traces(self, records: Sequence[ConsumerRecord[Any, Any]], consumer: str) -> None:
        assert self.traces is not None
        landing = self.traces
        decoded = decode_events([record.value for record in records], TraceRaw, self.projects)
        await self._dead_letter(records, decoded.rejected, consumer)
        self.metrics.records.labels("trace", "invalid").inc(len(decoded.rejected))
        if not decoded.events:
            return
        events = [event for _, event in decoded.events]
        result = await self._persist(lambda: landing.land(events), records, consumer)
        if result is None:
            return
        await self._persist(
            self._announcer(TRACE_INGESTED, result, landing.mark_announced), records, consumer
        )
        self.metrics.records.labels("trace", "stored").inc(result.stored)
        self.metrics.records.labels("trace", "unconsented").inc(result.unconsented)
        self.metrics.records.labels("trace", "duplicate").inc(result.duplicates)
        self.metrics.records.labels("trace", "contexts_only").inc(result.contexts_only)

    async def land_feedback(self, records: Sequence[ConsumerRecord[Any, Any]], consumer: str) -> None:
        assert self.feedback is not None
        landing = self.feedback
        decoded = decode_events([record.value for record in records], FeedbackRaw, self.projects)
        await self._dead_letter(records, decoded.rejected, consumer)
        self.metrics.records.labels("feedback", "invalid").inc(len(decoded.rejected))
        if not decoded.events:
            return
        events = [event for _, event in decoded.events]
        result = await self._persist(lambda: landing.land(events), records, consumer)
        if result is None:
            return
        await self._persist(
            self._announcer(FEEDBACK_RECEIVED, result, landing.mark_announced), records, consumer
        )
        self.metrics.records.labels("feedback", "announced").inc(len(result.fresh) + len(result.uncertain))
        self.metrics.records.labels("feedback", "duplicate").inc(result.duplicates)

    def _announcer(
        self,
        logical_topic: str,
        result: LandingResult,
        mark_announced: Callable[[Sequence[Announcement]], Awaitable[None]],
    ) -> Callable[[], Awaitable[None]]:
        """The announce step, for ``_persist``: a retry first asks the topic what the failed try published."""
        attempts = 0

        async def announce() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and result.fresh:
                result.uncertain += result.fresh
                result.fresh = []
            await self._announce(logical_topic, result, mark_announced)

        return announce

    async def _announce(
        self,
        logical_topic: str,
        result: LandingResult,
        mark_announced: Callable[[Sequence[Announcement]], Awaitable[None]],
    ) -> None:
        """Publish the announcements not yet on the topic, wait for acks=all, then mark them done."""
        assert self.producer is not None
        topic = self.settings.kafka.topic(logical_topic)
        to_publish = list(result.fresh)
        if result.uncertain:
            keys = [a.key for a in result.uncertain]
            partitions = await self.producer.partition_map(topic, keys)
            wanted: dict[bytes, set[str]] = {}
            for announcement in result.uncertain:
                wanted.setdefault(announcement.key, set()).add(announcement.event_id)
            since = min(a.started_ms for a in result.uncertain) - int(
                self.settings.ingest.announce_scan_margin_s * 1000
            )
            published = await find_published(self.settings, topic, wanted, since, partitions)
            self.log.info(
                "announcements of a previous attempt checked against the topic",
                extra={"topic": topic, "checked": len(result.uncertain), "found": len(published)},
            )
            to_publish += [a for a in result.uncertain if a.event_id not in published]
        if to_publish:
            await self.producer.send_and_wait(
                topic,
                [(a.key, a.value) for a in to_publish],
                self._headers[logical_topic],
            )
            now = datetime.now(UTC)
            histogram = self.metrics.end_to_end_seconds.labels(logical_topic)
            for announcement in to_publish:
                histogram.observe(max(0.0, (now - announcement.received_at).total_seconds()))
        announced = [*result.fresh, *result.uncertain]
        if announced:
            await mark_announced(announced)

    async def _persist(
        self,
        step: Callable[[], Awaitable[T]],
        records: Sequence[ConsumerRecord[Any, Any]],
        consumer: str,
    ) -> T | None:
        """Run an idempotent step until it succeeds; infrastructure failures are retried without end.

        Any other failure is retried a few times; then every message of the batch is dead-lettered and
        None is returned (the batch is done with).
        """
        attempt = 0
        other_failures = 0
        while True:
            attempt += 1
            try:
                return await step()
            except TRANSIENT_ERRORS as error:
                delay = min(_MAX_BACKOFF_S, self.settings.kafka.retry_backoff_s * 2 ** min(attempt - 1, 10))
                self.log.warning(
                    "infrastructure failure, retrying the batch",
                    extra={
                        "attempt": attempt,
                        "error": repr(error),
                        "delay_s": delay,
                        "messages": len(records),
                    },
                )
            except Exception as error:
                other_failures += 1
                if other_failures > _OTHER_ATTEMPTS:
                    self.log.exception("batch failed for good; dead-lettering its messages")
                    await self._dead_letter(
                        records,
                        [
                            Rejected(index, f"{type(error).__name__}: {error}")
                            for index in range(len(records))
                        ],
                        consumer,
                        reason="retries_exhausted",
                        attempts=other_failures,
                    )
                    return None
                delay = self.settings.kafka.retry_backoff_s * 2 ** (other_failures - 1)
                self.log.warning(
                    "batch failed, retrying",
                    extra={"attempt": attempt, "error": repr(error), "delay_s": delay},
                )
            await asyncio.sleep(delay)

    async def _dead_letter(
        self,
        records: Sequence[ConsumerRecord[Any, Any]],
        rejected: Sequence[Rejected],
        consumer: str,
        *,
        reason: str = "invalid",
        attempts: int = 1,
    ) -> None:
        """Put each rejected message on its topic's DLQ, as the bus does: original message + why."""
        for item in rejected:
            record = records[item.index]
            headers = dead_letter_headers(
                record, item.reason, reason=reason, consumer=consumer, attempts=attempts
            )
            await self.broker.publish(
                record.value, topic=dlq_topic(record.topic), key=record.key, headers=headers
            )
            self.log.warning(
                "message sent to the dead-letter topic",
                extra={"topic": record.topic, "offset": record.offset, "reason": item.reason[:500]},
            )


def create_app(
    settings: IngestSettings | None = None, *, registry: CollectorRegistry = REGISTRY
) -> FastStream:
    """The worker app for these settings (the environment's by default)."""
    settings = settings or IngestSettings()
    broker = create_broker(
        settings, SERVICE, logger=logging.getLogger("kaizen.ingest.worker"), registry=registry
    )
    worker = Worker(settings, broker, registry)
    # The announcements are published in bulk (see ``bulk``); declaring them documents the topics.
    declare_publisher(broker, settings, TraceIngested)
    declare_publisher(broker, settings, FeedbackReceived)
    batch = {
        "batch": True,
        "max_records": settings.ingest.batch_max_records,
        "batch_timeout_ms": settings.ingest.batch_timeout_ms,
        "fetch_min_bytes": settings.ingest.fetch_min_bytes,
        "fetch_max_wait_ms": settings.ingest.fetch_max_wait_ms,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "decoder": _raw_bodies,
    }
    trace_group = settings.kafka.group(TRACE_CONSUMER)
    feedback_group = settings.kafka.group(FEEDBACK_CONSUMER)
    collector = BatchCollector()  # collects here, where a batch's objects are out of scope

    @subscribe(broker, settings, TRACE_RAW, TRACE_CONSUMER, title="trace.raw:ingest", **batch)
    async def land_traces(bodies: list[bytes], message: KafkaMessage) -> None:
        """Land a batch of traces in Iceberg and announce the consented ones on trace.ingested."""
        try:
            await worker.land_traces(message.raw_message, trace_group)
        finally:
            collector.after_batch()

    @subscribe(broker, settings, FEEDBACK_RAW, FEEDBACK_CONSUMER, title="feedback.raw:ingest", **batch)
    async def land_feedback(bodies: list[bytes], message: KafkaMessage) -> None:
        """Announce a batch of feedback on feedback.received, once per feedback id."""
        try:
            await worker.land_feedback(message.raw_message, feedback_group)
        finally:
            collector.after_batch()

    app = FastStream(broker, on_startup=[worker.start], after_shutdown=[worker.stop])
    app.context.set_global("worker", worker)
    return app


app = create_app()
"""The worker for the environment's settings (``faststream run services.ingest.app:app``)."""
