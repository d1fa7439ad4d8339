"""The client for production apps, over HTTP and straight to Kafka; what comes over Kafka is validated
and redacted by the worker as what comes over HTTP."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from services.ingest.settings import IngestSettings
from shared.bus import DLQ_ERROR, DLQ_REASON
from shared.client import ClientError, KaizenClient
from shared.events import FEEDBACK_RECEIVED, TRACE_INGESTED, TRACE_RAW, FeedbackRecord, TraceRaw, dlq_topic
from shared.samples import sample_trace
from shared.store import TRACES
from tests.services.ingest.support import Intake, Key, events, read_topic, wait_for_rows

pytestmark = pytest.mark.integration


async def test_over_http_a_record_round_trips_into_the_table(
    intake: Intake, worker: None, key: Key, ingest_settings: IngestSettings
) -> None:
    record = sample_trace(key.project_id)
    record = record.model_copy(update={"reference": "30 days", "completion_token_ids": [1, 2, 3]})
    async with KaizenClient.over_http(
        intake.url, public_key=key.public_key, secret_key=key.secret_key
    ) as kaizen:
        await kaizen.send_trace(record)
        await kaizen.send_feedback(
            FeedbackRecord(
                trace_id=record.trace_id, project_id=key.project_id, kind="stars", raw_value=5, value=1.0
            )
        )
        with pytest.raises(ClientError, match="32 hex characters"):
            await kaizen.send_trace(record.model_copy(update={"trace_id": "order-17"}))
        with pytest.raises(ClientError, match="403"):
            await kaizen.send_trace(record.model_copy(update={"project_id": "someone-else"}))

    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert row["trace_id"] == record.trace_id
    assert (row["prompt"], row["response"], row["contexts"]) == (
        record.prompt,
        record.response,
        record.contexts,
    )
    assert json.loads(row["input_messages"]) == [m.model_dump() for m in record.input_messages]
    assert (row["user_id"], row["session_id"], row["tags"]) == (
        record.user_id,
        record.session_id,
        record.tags,
    )
    assert (row["model"], row["model_version"], row["latency_ms"]) == (
        record.model,
        record.model_version,
        record.latency_ms,
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (42, 17)
    assert (row["reference"], row["completion_token_ids"]) == ("30 days", [1, 2, 3])
    assert json.loads(row["metadata"])["channel"] == "web"
    [feedback] = events(await read_topic(ingest_settings, FEEDBACK_RECEIVED, at_least=1))
    assert (feedback["kind"], feedback["value"]) == ("stars", 1.0)


async def test_over_kafka_the_worker_validates_and_redacts(
    worker: None, key: Key, ingest_settings: IngestSettings
) -> None:
    record = sample_trace(key.project_id).model_copy(
        update={"prompt": "I am carol@example.com", "response": "Card 4111 1111 1111 1111 noted."}
    )
    async with KaizenClient.over_kafka(ingest_settings) as kaizen:
        await kaizen.send_trace(record)
        await kaizen.send_feedback(
            FeedbackRecord(trace_id=record.trace_id, project_id=key.project_id, kind="share")
        )

    # Messages a client could put on trace.raw that can never land: they go to the DLQ, saying why.
    topic = ingest_settings.kafka.topic(TRACE_RAW)
    stranger = sample_trace("no-such-project")
    producer = AIOKafkaProducer(bootstrap_servers=ingest_settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{not json", key=b"k1")
        await producer.send_and_wait(
            topic, json.dumps({"type": "trace.raw", "record": {}}).encode(), key=b"k2"
        )
        await producer.send_and_wait(
            topic,
            TraceRaw(
                producer="app",
                project_id=stranger.project_id,
                correlation_id=stranger.trace_id,
                record=stranger,
            )
            .model_dump_json()
            .encode(),
            key=stranger.trace_id.encode(),
        )
    finally:
        await producer.stop()

    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert (row["prompt"], row["response"]) == ("I am [EMAIL]", "Card [CARD] noted.")
    assert row["redactions"] == 2
    [ingested] = events(await read_topic(ingest_settings, TRACE_INGESTED, at_least=1))
    assert ingested["trace_id"] == record.trace_id
    [feedback] = events(await read_topic(ingest_settings, FEEDBACK_RECEIVED, at_least=1))
    assert feedback["kind"] == "share"

    dead = await read_topic(ingest_settings, dlq_topic(TRACE_RAW), at_least=3)
    reasons = {record.key: dict((k, v.decode()) for k, v in record.headers) for record in dead}
    assert reasons[b"k1"][DLQ_REASON] == "invalid"
    assert "invalid event" in reasons[b"k1"][DLQ_ERROR]
    assert "producer: Field required" in reasons[b"k2"][DLQ_ERROR]
    assert "unknown project 'no-such-project'" in reasons[stranger.trace_id.encode()][DLQ_ERROR]
    assert {record.value for record in dead} >= {b"{not json"}, "the DLQ keeps the original message"
