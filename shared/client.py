"""Send traces and feedback to Kaizen from a production app: over HTTP, or straight to Kafka.

Over HTTP the client speaks the ingest service's public API (OTLP/JSON traces with GenAI semantic
conventions, ``/v1/feedback``), authenticated with the project's API key::

    kaizen = KaizenClient.over_http("http://ingest:4318", public_key="pk-...", secret_key="sk-...")
    async with kaizen:
        await kaizen.send_trace(TraceRecord(trace_id=..., project_id="shop", model="...", prompt=..., ...))
        await kaizen.send_feedback(FeedbackRecord(trace_id=..., project_id="shop", kind="thumbs", value=1.0))

Straight to Kafka, for apps inside the cluster, it publishes ``trace.raw`` / ``feedback.raw`` with an
idempotent ``acks=all`` producer, keyed by trace id; the ingest worker validates and redacts them as
it does what comes over HTTP::

    async with KaizenClient.over_kafka(KaizenSettings()) as kaizen:
        await kaizen.send_trace(record)

Either way a call returns once the record is durable (HTTP 200, or Kafka's acknowledgement) and raises
``ClientError`` when it is refused.
"""

from __future__ import annotations

import json
import re
import secrets
from types import TracebackType
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaProducer

from shared.errors import KaizenError
from shared.events import (
    FEEDBACK_RAW,
    TRACE_RAW,
    FeedbackRaw,
    FeedbackRecord,
    TraceRaw,
    TraceRecord,
)
from shared.settings import KaizenSettings

CLIENT = "kaizen-client"
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")


class ClientError(KaizenError):
    """Kaizen refused a record, or could not be reached; the message says why."""


class _Transport(Protocol):
    async def send_trace(self, record: TraceRecord) -> None: ...
    async def send_feedback(self, record: FeedbackRecord) -> None: ...
    async def close(self) -> None: ...


class KaizenClient:
    """Sends trace and feedback records; build it with ``over_http`` or ``over_kafka``."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport

    @classmethod
    def over_http(
        cls, base_url: str, *, public_key: str, secret_key: str, timeout_s: float = 10.0
    ) -> KaizenClient:
        """A client of the ingest service at ``base_url`` with a project's API key."""
        return cls(_HttpTransport(base_url, public_key, secret_key, timeout_s))

    @classmethod
    def over_kafka(cls, settings: KaizenSettings, *, producer_name: str = CLIENT) -> KaizenClient:
        """A client publishing straight to the deployment's ``trace.raw`` / ``feedback.raw``."""
        return cls(_KafkaTransport(settings, producer_name))

    async def send_trace(self, record: TraceRecord) -> None:
        """Send one generation; returns once it is durable."""
        await self._transport.send_trace(record)

    async def send_feedback(self, record: FeedbackRecord) -> None:
        """Send one feedback; returns once it is durable."""
        await self._transport.send_feedback(record)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> KaizenClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


# ---------------------------------------------------------------------------------------------
# HTTP


class _HttpTransport:
    def __init__(self, base_url: str, public_key: str, secret_key: str, timeout_s: float) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), auth=(public_key, secret_key), timeout=timeout_s
        )

    async def send_trace(self, record: TraceRecord) -> None:
        response = await self._post("/v1/traces", trace_to_otlp_json(record))
        partial = response.json().get("partialSuccess") if response.content else None
        if partial and int(partial.get("rejectedSpans", 0)):
            raise ClientError(f"Kaizen rejected the trace: {partial.get('errorMessage', '')}")

    async def send_feedback(self, record: FeedbackRecord) -> None:
        await self._post("/v1/feedback", feedback_to_json(record))

    async def _post(self, path: str, document: dict[str, Any]) -> httpx.Response:
        try:
            response = await self.client.post(path, json=document)
        except httpx.HTTPError as exc:
            raise ClientError(f"Kaizen ingest could not be reached: {exc}") from exc
        if response.status_code != 200:
            raise ClientError(f"Kaizen ingest answered {response.status_code}: {_message(response)}")
        return response

    async def close(self) -> None:
        await self.client.aclose()


def _message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(document, dict):
        return str(document.get("detail") or document.get("message") or document)
    return str(document)


def trace_to_otlp_json(record: TraceRecord) -> dict[str, Any]:
    """A trace record as an OTLP/JSON ``ExportTraceServiceRequest`` of one span (GenAI conventions)."""
    if not _HEX32.fullmatch(record.trace_id):
        raise ClientError(
            f"trace_id {record.trace_id!r} is not 32 hex characters, as OTLP requires: "
            "send it over Kafka, or use an OTLP trace id"
        )
    span_id = record.span_id if record.span_id and _HEX16.fullmatch(record.span_id) else secrets.token_hex(8)
    start_ns = int(record.started_at.timestamp() * 1e9)
    end_ns = start_ns + int((record.latency_ms or 0.0) * 1e6)
    messages = [message.model_dump() for message in record.input_messages]
    if not messages and record.prompt:
        messages = [{"role": "user", "content": record.prompt}]
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": record.model,
        "gen_ai.input.messages": json.dumps(
            [
                {"role": message["role"], "parts": [{"type": "text", "content": message["content"]}]}
                for message in messages
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": record.response}]}]
        ),
        "kaizen.consent": record.consent,
        "kaizen.project_id": record.project_id,
    }
    optional: dict[str, Any] = {
        "gen_ai.usage.input_tokens": record.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": record.usage.completion_tokens,
        "gen_ai.usage.total_tokens": record.usage.total_tokens,
        "user.id": record.user_id,
        "session.id": record.session_id,
        "kaizen.model_version": record.model_version,
        "kaizen.reference": record.reference,
        "kaizen.tags": record.tags or None,
        "kaizen.contexts": record.contexts or None,
        "kaizen.completion_token_ids": record.completion_token_ids,
        "kaizen.completion_logprobs": record.completion_logprobs,
        "metadata": json.dumps(record.metadata, default=str) if record.metadata else None,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    span: dict[str, Any] = {
        "traceId": record.trace_id.lower(),
        "spanId": span_id.lower(),
        "name": record.name or "chat",
        "kind": 3,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [{"key": key, "value": _any_value(value)} for key, value in attributes.items()],
        "status": {"code": 2, "message": record.error or ""} if record.status == "error" else {"code": 0},
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "telemetry.sdk.name", "value": {"stringValue": CLIENT}}]},
                "scopeSpans": [{"scope": {"name": CLIENT}, "spans": [span]}],
            }
        ]
    }


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def feedback_to_json(record: FeedbackRecord) -> dict[str, Any]:
    """A feedback record as the body of ``POST /v1/feedback`` (the value as the user gave it)."""
    value: Any = record.raw_value
    if value is None and record.value is not None:
        value = record.value * 4 + 1 if record.kind == "stars" else record.value
    document: dict[str, Any] = {
        "feedback_id": record.feedback_id,
        "trace_id": record.trace_id,
        "project_id": record.project_id,
        "kind": record.kind,
        "value": value,
        "name": record.name,
        "dwell_ms": record.dwell_ms,
        "user_id": record.user_id,
        "comment": record.comment,
        "occurred_at": record.occurred_at.isoformat(),
    }
    return {key: item for key, item in document.items() if item is not None}


# ---------------------------------------------------------------------------------------------
# Kafka


class _KafkaTransport:
    def __init__(self, settings: KaizenSettings, producer_name: str) -> None:
        self.settings = settings
        self.producer_name = producer_name
        self.producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                client_id=self.producer_name,
                acks="all",
                enable_idempotence=True,
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def send_trace(self, record: TraceRecord) -> None:
        event = TraceRaw(
            producer=self.producer_name,
            project_id=record.project_id,
            correlation_id=record.trace_id,
            record=record,
        )
        await self._send(TRACE_RAW, event.correlation_id, event.model_dump_json())

    async def send_feedback(self, record: FeedbackRecord) -> None:
        event = FeedbackRaw(
            producer=self.producer_name,
            project_id=record.project_id,
            correlation_id=record.trace_id,
            record=record,
        )
        await self._send(FEEDBACK_RAW, event.correlation_id, event.model_dump_json())

    async def _send(self, logical_topic: str, key: str, value: str) -> None:
        producer = await self._started()
        topic = self.settings.kafka.topic(logical_topic)
        try:
            await producer.send_and_wait(
                topic,
                value.encode(),
                key=key.encode(),
                headers=[
                    ("content-type", b"application/json"),
                    ("kaizen-event-type", logical_topic.encode()),
                ],
            )
        except Exception as exc:  # aiokafka raises KafkaError and asyncio timeouts alike
            raise ClientError(f"Kafka did not take the record on {topic}: {exc}") from exc

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
