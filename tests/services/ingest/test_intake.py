"""The intake end to end, over the real stack: unmodified OTLP clients in, rows in Iceberg and events on
trace.ingested / feedback.received out."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.ingest.settings import IngestSettings
from shared.events import FEEDBACK_RECEIVED, TRACE_INGESTED
from shared.settings import KaizenSettings
from shared.store import TRACES
from tests.services.ingest.support import (
    Intake,
    Key,
    events,
    generation,
    hex_id,
    ingest_settings_for,
    otlp_json,
    read_topic,
    span_json,
    wait_for_rows,
)

pytestmark = pytest.mark.integration


async def test_otel_sdk_protobuf_exporter_lands(
    intake: Intake, worker: None, key: Key, ingest_settings: IngestSettings
) -> None:
    exporter = OTLPSpanExporter(
        endpoint=f"{intake.url}/v1/traces",
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{key.public_key}:{key.secret_key}".encode()).decode()
        },
        compression=Compression.Gzip,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("turn", attributes={"user.id": "user-1", "user_consent": True}) as root:
        with tracer.start_as_current_span(
            "chat SmolLM2", attributes=generation("Do you ship to Spain?", "Yes, in 3 days.", consent=None)
        ):
            pass
        trace_id = f"{root.get_span_context().trace_id:032x}"
    assert await asyncio.to_thread(provider.force_flush, 30_000)
    await asyncio.to_thread(provider.shutdown)

    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert row["trace_id"] == trace_id
    assert (row["prompt"], row["response"]) == ("Do you ship to Spain?", "Yes, in 3 days.")
    assert (row["model"], row["user_id"], row["consent"]) == ("SmolLM2-135M-Instruct", "user-1", True)
    assert row["latency_ms"] > 0
    assert json.loads(row["metadata"])["resource"]["service.name"] == "shop-api"
    [ingested] = events(await read_topic(ingest_settings, TRACE_INGESTED, at_least=1))
    assert (ingested["trace_id"], ingested["project_id"], ingested["user_id"]) == (
        trace_id,
        key.project_id,
        "user-1",
    )
    assert ingested["stored"]["table"].endswith(".traces")
    assert ingested["stored"]["snapshot_id"] is not None


async def test_handwritten_otlp_json_lands(
    client: httpx.AsyncClient, worker: None, ingest_settings: IngestSettings
) -> None:
    trace_id = hex_id(32)
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "handwritten"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": hex_id(16),
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000000420000000,
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "tiny-llama"}},
                                    {"key": "gen_ai.prompt.0.role", "value": {"stringValue": "user"}},
                                    {"key": "gen_ai.prompt.0.content", "value": {"stringValue": "Hours?"}},
                                    {
                                        "key": "gen_ai.completion.0.content",
                                        "value": {"stringValue": "9 to 5."},
                                    },
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "4"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 3}},
                                    {"key": "session.id", "value": {"stringValue": "s-9"}},
                                    {"key": "kaizen.consent", "value": {"boolValue": True}},
                                    {"key": "kaizen.model_version", "value": {"stringValue": "4"}},
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = await client.post("/v1/traces", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert (row["trace_id"], row["prompt"], row["response"]) == (trace_id, "Hours?", "9 to 5.")
    assert (row["prompt_tokens"], row["completion_tokens"], row["latency_ms"]) == (4, 3, 420.0)
    assert (row["session_id"], row["model_version"], row["model"]) == ("s-9", "4", "tiny-llama")
    [ingested] = events(await read_topic(ingest_settings, TRACE_INGESTED, at_least=1))
    assert (ingested["trace_id"], ingested["model_version"], ingested["latency_ms"]) == (trace_id, "4", 420.0)


async def test_partial_success_names_the_rejected_span_and_stores_only_the_good_one(
    client: httpx.AsyncClient, worker: None, ingest_settings: IngestSettings
) -> None:
    good = span_json(generation("fine", "ok"))
    bad = span_json(generation("bad id", "never stored"), trace_id="not-hex")
    response = await client.post("/v1/traces", json=otlp_json(good, bad))
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "traceId must be 32 hex characters" in partial["errorMessage"]
    rows = await wait_for_rows(ingest_settings, TRACES, 1, settle_s=1.0)
    assert [row["trace_id"] for row in rows] == [good["traceId"]]


async def test_contexts_from_an_earlier_export_join_their_generation(
    client: httpx.AsyncClient, worker: None, ingest_settings: IngestSettings
) -> None:
    trace_id = hex_id(32)
    retriever = span_json(
        {
            "langfuse.observation.type": "retriever",
            "langfuse.observation.output": json.dumps(
                ["Returns: 30 days.", {"page_content": "Refunds: 5 days."}]
            ),
        },
        trace_id=trace_id,
        name="retrieve",
    )
    assert (await client.post("/v1/traces", json=otlp_json(retriever))).status_code == 200
    llm = span_json(generation("Can I return it?", "Within 30 days."), trace_id=trace_id)
    assert (await client.post("/v1/traces", json=otlp_json(llm))).status_code == 200
    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert row["contexts"] == ["Returns: 30 days.", "Refunds: 5 days."]


async def test_feedback_of_every_kind_lands_once_with_the_traces_model_version(
    client: httpx.AsyncClient, worker: None, ingest_settings: IngestSettings
) -> None:
    trace_id = hex_id(32)
    span = span_json(generation("q", "a", **{"kaizen.model_version": "9"}), trace_id=trace_id)
    assert (await client.post("/v1/traces", json=otlp_json(span))).status_code == 200
    await read_topic(ingest_settings, TRACE_INGESTED, at_least=1, settle_s=0)
    feedback = [
        {"trace_id": trace_id, "kind": "thumbs", "value": "up", "feedback_id": "f-thumbs"},
        {"trace_id": trace_id, "kind": "stars", "value": 4, "feedback_id": "f-stars"},
        {"trace_id": trace_id, "kind": "engage", "dwell_ms": 5400, "feedback_id": "f-engage"},
        {
            "trace_id": trace_id,
            "kind": "copy",
            "feedback_id": "f-copy",
            "comment": "mail me: bob@example.com",
        },
    ]
    response = await client.post("/v1/feedback", json=feedback)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 4
    resent = await client.post("/v1/feedback", json=feedback[0])
    assert resent.status_code == 200, "a resent feedback is accepted and deduplicated by the worker"
    received = events(await read_topic(ingest_settings, FEEDBACK_RECEIVED, at_least=4, settle_s=1.5))
    by_id = {event["feedback_id"]: event for event in received}
    assert len(received) == 4, "the resent thumbs is announced once"
    assert (by_id["f-thumbs"]["kind"], by_id["f-thumbs"]["value"]) == ("thumbs", 1.0)
    assert by_id["f-stars"]["value"] == 0.75
    assert (by_id["f-engage"]["value"], by_id["f-engage"]["dwell_ms"]) == (None, 5400)
    assert {event["model_version"] for event in received} == {"9"}
    assert {event["trace_id"] for event in received} == {trace_id}


async def test_backpressure_answers_429_and_a_silent_kafka_503_with_retry_after(
    settings: KaizenSettings, key: Key
) -> None:
    busy = ingest_settings_for(settings, key, max_inflight_records=1)
    async with Intake(busy), httpx.AsyncClient(auth=key.auth) as http:
        bodies = [otlp_json(*(span_json(generation("q", "a")) for _ in range(20))) for _ in range(12)]
        answers = await asyncio.gather(
            *(http.post(f"{busy_url(busy)}/v1/traces", json=body) for body in bodies)
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    assert "waiting for Kafka" in refused.json()["message"]

    silent = ingest_settings_for(settings, key, publish_timeout_s=1e-6)
    async with Intake(silent), httpx.AsyncClient(auth=key.auth) as http:
        answer = await http.post(
            f"{busy_url(silent)}/v1/traces", json=otlp_json(span_json(generation("q", "a")))
        )
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert "Kafka did not acknowledge" in answer.json()["message"]
        feedback = await http.post(
            f"{busy_url(silent)}/v1/feedback", json={"trace_id": hex_id(32), "kind": "copy"}
        )
        assert (feedback.status_code, feedback.headers["Retry-After"]) == (503, "1")


def busy_url(settings: IngestSettings) -> str:
    return f"http://127.0.0.1:{settings.ingest.port}"


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    await client.post("/v1/traces", json=otlp_json(span_json(generation("q", "a"))))
    metrics = (await client.get("/metrics")).text
    assert "kaizen_ingest_spans_received_total" in metrics
    assert 'kaizen_ingest_spans_accepted_total{kind="generation"}' in metrics
    # The request counter the HTTP autoscaler's metric is derived from (deploy/prometheus-adapter).
    assert 'kaizen_http_requests_total{route="/v1/traces",service="ingest-http",status="200"}' in metrics
    await client.get("/no/such/path")
    metrics = (await client.get("/metrics")).text
    assert 'kaizen_http_requests_total{route="unmatched",service="ingest-http",status="404"}' in metrics
