"""The HTTP intake's work, without HTTP: read, check, map, redact, and make it durable in Kafka.

``Intake.accept_traces`` returns only once every record of the request is acknowledged by Kafka
(idempotent producer, ``acks=all``); only then may the caller answer 200. Too many records waiting
for acknowledgement is ``Overloaded`` (429), no acknowledgement in time is ``Unavailable`` (503):
in both cases nothing is promised and the client sends again (the worker deduplicates).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from pydantic_core import to_json

from services.ingest.auth import Project
from services.ingest.bulk import BulkProducer, Header
from services.ingest.encoding import decompress
from services.ingest.errors import (
    InvalidSpans,
    Overloaded,
    ProjectMismatch,
    Unavailable,
    UnsupportedMediaType,
)
from services.ingest.ids import random_id
from services.ingest.mapping import map_spans, requested_projects
from services.ingest.metrics import IngestMetrics
from services.ingest.otlp import JSON, PROTOBUF, decode_json, decode_protobuf
from services.ingest.redaction import Redactor, redact_feedback, redact_fields
from services.ingest.settings import IngestSettings
from shared.events import FEEDBACK_RAW, TRACE_RAW, FeedbackRaw, FeedbackRecord

INTAKE = "ingest-http"
"""The ``producer`` of the events the HTTP intake publishes."""
_MAX_REASONS = 5


def otlp_media_type(content_type: str | None) -> str:
    """``application/x-protobuf`` or ``application/json`` from a Content-Type header, else 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not supported: send OTLP as {PROTOBUF} or {JSON}"
    )


@dataclass(frozen=True, slots=True)
class TracesAccepted:
    """What a 200 says: how many spans were taken, how many rejected, and why."""

    accepted_spans: int
    rejected_spans: int
    message: str
    records: int


def raw_event(fields: dict[str, Any], project_id: str, occurred_at: str) -> bytes:
    """The ``trace.raw`` event of a mapped, redacted trace record, as JSON (no model on the way)."""
    return to_json(
        {
            "event_id": random_id(),
            "type": TRACE_RAW,
            "occurred_at": occurred_at,
            "producer": INTAKE,
            "project_id": project_id,
            "correlation_id": fields["trace_id"],
            "record": fields,
        },
        fallback=str,
    )


class Intake:
    def __init__(
        self,
        settings: IngestSettings,
        producer: BulkProducer,
        redactor: Redactor,
        metrics: IngestMetrics,
        logger: logging.Logger,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.redactor = redactor
        self.metrics = metrics
        self.log = logger
        self.inflight = 0
        self._trace_topic = settings.kafka.topic(TRACE_RAW)
        self._feedback_topic = settings.kafka.topic(FEEDBACK_RAW)
        self._headers: dict[str, list[Header]] = {
            event: [
                ("content-type", b"application/json"),
                ("kaizen-event-type", event.encode()),
            ]
            for event in (TRACE_RAW, FEEDBACK_RAW)
        }

    async def accept_traces(
        self,
        project: Project,
        body: bytes,
        content_type: str | None,
        content_encoding: str | None,
        endpoint: str,
    ) -> TracesAccepted:
        """Decode an OTLP request and publish its traces to ``trace.raw``; durable when this returns."""
        media_type = otlp_media_type(content_type)
        payload = decompress(body, content_encoding, self.settings.ingest.max_decompressed_bytes)
        decoded = decode_protobuf(payload) if media_type == PROTOBUF else decode_json(payload)
        self.metrics.spans_received.labels(endpoint).inc(decoded.total)
        others = requested_projects(decoded.spans) - {project.project_id}
        if others:
            self.metrics.spans_rejected.labels("project_mismatch").inc(decoded.total)
            raise ProjectMismatch(
                f"this API key belongs to project {project.project_id!r} and cannot write to project "
                f"{sorted(others)[0]!r} (kaizen.project_id)"
            )
        message = ""
        if decoded.rejected:
            self.metrics.spans_rejected.labels("invalid_span").inc(len(decoded.rejected))
            shown = "; ".join(decoded.rejected[:_MAX_REASONS])
            more = (
                f" (and {len(decoded.rejected) - _MAX_REASONS} more)"
                if len(decoded.rejected) > _MAX_REASONS
                else ""
            )
            message = f"rejected {len(decoded.rejected)} of {decoded.total} spans: {shown}{more}"
            if not decoded.spans:
                raise InvalidSpans(message)
        mapped = map_spans(decoded.spans, project.project_id)
        occurred_at = datetime.now(UTC).isoformat()
        records = [*mapped.records, *mapped.contexts_only]
        # The records are JSON-ready by construction (``mapping``); the worker validates every message
        # it reads, and a property test holds the mapping to producing only records it accepts.
        values = []
        for fields in records:
            redact_fields(fields, self.redactor)
            values.append(raw_event(fields, project.project_id, occurred_at))
        await self._publish(
            self._trace_topic,
            [(fields["trace_id"].encode(), value) for fields, value in zip(records, values, strict=True)],
            self._headers[TRACE_RAW],
        )
        self.metrics.spans_accepted.labels("generation").inc(mapped.generation_spans)
        self.metrics.spans_accepted.labels("retriever").inc(mapped.retriever_spans)
        self.metrics.spans_accepted.labels("other").inc(mapped.other_spans)
        return TracesAccepted(
            accepted_spans=len(decoded.spans),
            rejected_spans=len(decoded.rejected),
            message=message,
            records=len(values),
        )

    async def accept_feedback(self, records: Sequence[FeedbackRecord]) -> None:
        """Publish feedback records to ``feedback.raw``; durable when this returns."""
        events = [
            FeedbackRaw(
                producer=INTAKE,
                project_id=record.project_id,
                correlation_id=record.trace_id,
                record=redact_feedback(record, self.redactor),
            )
            for record in records
        ]
        await self._publish(
            self._feedback_topic,
            [(event.correlation_id.encode(), event.model_dump_json().encode()) for event in events],
            self._headers[FEEDBACK_RAW],
        )

    async def _publish(self, topic: str, records: list[tuple[bytes, bytes]], headers: list[Header]) -> None:
        if not records:
            return
        count = len(records)
        limit = self.settings.ingest.max_inflight_records
        if self.inflight and self.inflight + count > limit:
            raise Overloaded(f"{self.inflight} records are waiting for Kafka (limit {limit}): retry later")
        self.inflight += count
        try:
            with self.metrics.publish_seconds.time():
                await self.producer.send_and_wait(
                    topic, records, headers, timeout_s=self.settings.ingest.publish_timeout_s
                )
        except (KafkaError, TimeoutError) as exc:
            self.log.warning("Kafka did not acknowledge in time", extra={"topic": topic, "error": repr(exc)})
            raise Unavailable(
                f"Kafka did not acknowledge the records ({type(exc).__name__}): retry later"
            ) from exc
        finally:
            self.inflight -= count
