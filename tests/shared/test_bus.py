"""The bus over the real Kafka broker: every event round-trips; bad messages go to the DLQ and the
consumer carries on; offsets are committed only once a message is done with."""

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaMessage

from shared.bus import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_REASON,
    create_broker,
    declare_publisher,
    delete_topics,
    ensure_topics,
    publish_event,
    split_batch,
    subscribe,
)
from shared.errors import KaizenError
from shared.events import EVENT_TYPES, TRACE_INGESTED, TRACE_RAW, Envelope, TraceIngested, dlq_topic
from shared.samples import sample_events
from shared.settings import KaizenSettings

pytestmark = pytest.mark.integration
TIMEOUT_S = 60


async def _wait_for(condition: Any, timeout: float = TIMEOUT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.05)


async def _read_all(settings: KaizenSettings, topic: str, count: int) -> list[Any]:
    """Read ``count`` records from a physical topic from the beginning, with a plain aiokafka consumer."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


def _handler_for(model: type[Envelope], received: dict[str, Envelope]) -> Any:
    async def handle(event: Any) -> None:
        received[event.type] = event

    handle.__annotations__["event"] = model
    return handle


async def test_every_event_type_round_trips_validated(settings: KaizenSettings) -> None:
    await ensure_topics(settings)
    broker = create_broker(settings, "roundtrip")
    received: dict[str, Envelope] = {}
    for model in EVENT_TYPES:
        subscribe(broker, settings, model.topic, f"roundtrip-{model.topic}")(_handler_for(model, received))
    publishers = {model: declare_publisher(broker, settings, model) for model in EVENT_TYPES}
    events = sample_events(settings.project_id)
    async with broker:
        await broker.start()
        for event in events:
            await publish_event(publishers[type(event)], event)
        await _wait_for(lambda: len(received) == len(EVENT_TYPES))
    for event in events:
        got = received[event.type]
        assert type(got) is type(event)
        assert got == event, f"{event.type} changed on the way"


async def test_invalid_message_goes_to_dlq_with_error_and_next_message_is_processed(
    settings: KaizenSettings,
) -> None:
    await ensure_topics(settings, [TRACE_INGESTED])
    broker = create_broker(settings, "dlq-test")
    handled: list[str] = []

    @subscribe(broker, settings, TRACE_INGESTED, "labeler-under-test")
    async def handle(event: TraceIngested) -> None:
        handled.append(event.trace_id)

    good = next(e for e in sample_events(settings.project_id) if isinstance(e, TraceIngested))
    bad_body = json.dumps({"type": "trace.ingested", "trace_id": "t-1", "model": "m"}).encode()
    topic = settings.kafka.topic(TRACE_INGESTED)
    async with broker:
        await broker.start()
        await broker.publish(bad_body, topic=topic, key=b"t-1", headers={"content-type": "application/json"})
        await broker.publish(b"\x00not json at all", topic=topic, key=b"t-2")
        await publish_event(declare_publisher(broker, settings, TraceIngested), good)
        await _wait_for(lambda: handled == [good.trace_id])

    dead = {record.key: record for record in await _read_all(settings, dlq_topic(topic), 2)}
    assert {key: record.value for key, record in dead.items()} == {
        b"t-1": bad_body,
        b"t-2": b"\x00not json at all",
    }, "the DLQ keeps the original message and key"
    headers = dict((name, value.decode()) for name, value in dead[b"t-1"].headers)
    assert headers[DLQ_CONSUMER] == settings.kafka.group("labeler-under-test")
    assert headers[DLQ_REASON] == "invalid"
    assert headers[DLQ_ATTEMPTS] == "1", "an invalid message is not retried"
    for missing_field in ("producer", "project_id", "consent", "stored"):
        assert missing_field in headers[DLQ_ERROR]

    # All three messages are done with, so the group's committed offsets reach the end of the topic.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.kafka.group("labeler-under-test"))
    finally:
        await admin.close()
    assert sum(meta.offset for meta in committed.values()) == 3


async def test_failing_handler_is_retried_then_dead_lettered(settings: KaizenSettings) -> None:
    settings.kafka.handler_retries = 2
    await ensure_topics(settings, [TRACE_INGESTED])
    broker = create_broker(settings, "retry-test")
    attempts: dict[str, int] = {}
    flaky, doomed, after = (
        next(e for e in sample_events(settings.project_id) if isinstance(e, TraceIngested)) for _ in range(3)
    )

    @subscribe(broker, settings, TRACE_INGESTED, "retry-consumer")
    async def handle(event: TraceIngested) -> None:
        attempts[event.trace_id] = attempts.get(event.trace_id, 0) + 1
        if event.trace_id == flaky.trace_id and attempts[event.trace_id] < 3:
            raise ConnectionError("judge endpoint unavailable")
        if event.trace_id == doomed.trace_id:
            raise RuntimeError("this handler always fails on this trace")

    async with broker:
        await broker.start()
        publisher = declare_publisher(broker, settings, TraceIngested)
        for event in (flaky, doomed, after):
            await publish_event(publisher, event)
        # The three keys land on different partitions, so they may finish in any order.
        expected = {flaky.trace_id: 3, doomed.trace_id: 3, after.trace_id: 1}
        await _wait_for(lambda: attempts == expected)
        await asyncio.sleep(0.5)  # nothing more arrives: no redelivery of what was done with

    assert attempts == expected
    dead = await _read_all(settings, dlq_topic(settings.kafka.topic(TRACE_INGESTED)), 1)
    assert len(dead) == 1
    headers = dict((name, value.decode()) for name, value in dead[0].headers)
    assert json.loads(dead[0].value)["trace_id"] == doomed.trace_id
    assert headers[DLQ_REASON] == "retries_exhausted"
    assert headers[DLQ_ATTEMPTS] == "3"
    assert "this handler always fails" in headers[DLQ_ERROR]


async def test_consumer_lag_and_message_metrics_are_exported(settings: KaizenSettings) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    await ensure_topics(settings, [TRACE_INGESTED])
    broker = create_broker(settings, "metrics-test", registry=registry)
    seen: list[str] = []

    @subscribe(broker, settings, TRACE_INGESTED, "metrics-consumer")
    async def handle(event: TraceIngested, message: KafkaMessage) -> None:
        seen.append(event.trace_id)

    events = [e for e in sample_events(settings.project_id) if isinstance(e, TraceIngested)]
    async with broker:
        await broker.start()
        for event in events:
            await publish_event(declare_publisher(broker, settings, TraceIngested), event)
        await _wait_for(lambda: len(seen) == len(events))
    text = generate_latest(registry).decode()
    assert 'kaizen_received_messages_total{app_name="metrics-test"' in text
    assert "kaizen_received_processed_messages_duration_seconds" in text
    assert 'kaizen_published_messages_total{app_name="metrics-test"' in text
    assert f'kaizen_consumer_lag_messages{{group="{settings.kafka.group("metrics-consumer")}"' in text
    assert TopicPartition  # imported for readers: lag is per topic partition


async def test_a_failing_batch_dead_letters_each_of_its_records(settings: KaizenSettings) -> None:
    settings.kafka.handler_retries = 1
    await ensure_topics(settings, [TRACE_INGESTED])
    broker = create_broker(settings, "batch-test")
    calls: list[int] = []

    @subscribe(broker, settings, TRACE_INGESTED, "batch-consumer", batch=True, max_records=10)
    async def handle(events: list[TraceIngested]) -> None:
        calls.append(len(events))
        raise RuntimeError("the whole batch fails")

    events = [e for _ in range(3) for e in sample_events(settings.project_id) if isinstance(e, TraceIngested)]
    topic = settings.kafka.topic(TRACE_INGESTED)
    async with broker:
        await broker.start()
        publisher = declare_publisher(broker, settings, TraceIngested)
        for event in events:
            await publish_event(publisher, event)
        dead = await _read_all(settings, dlq_topic(topic), len(events))
    assert sorted(json.loads(record.value)["trace_id"] for record in dead) == sorted(
        e.trace_id for e in events
    )
    assert all(dict(record.headers)[DLQ_REASON] == b"retries_exhausted" for record in dead)
    assert sum(calls) == 2 * len(events), "each batch ran once and was retried once"


async def test_split_batch_dead_letters_only_the_invalid_records(settings: KaizenSettings) -> None:
    await ensure_topics(settings, [TRACE_INGESTED])
    broker = create_broker(settings, "split-test")
    topic = settings.kafka.topic(TRACE_INGESTED)
    group = settings.kafka.group("split-consumer")
    valid: list[str] = []

    @subscribe(broker, settings, TRACE_INGESTED, "split-consumer", batch=True, max_records=50)
    async def handle(message: KafkaMessage) -> None:
        events = await split_batch(broker, message, {topic: TraceIngested}, group)
        valid.extend(event.trace_id for event in events[topic])

    good = next(e for e in sample_events(settings.project_id) if isinstance(e, TraceIngested))
    traces = [good.model_copy(update={"trace_id": f"ok-{i}"}) for i in range(6)]
    broken = {**json.loads(good.model_dump_json()), "trace_id": None}
    async with broker:
        await broker.start()
        for event in traces[:3]:
            await broker.publish(event.model_dump_json().encode(), topic=topic)
        await broker.publish(json.dumps(broken).encode(), topic=topic)
        for event in traces[3:]:
            await broker.publish(event.model_dump_json().encode(), topic=topic)
        (dead,) = await _read_all(settings, dlq_topic(topic), 1)
        await _wait_for(lambda: len(valid) == len(traces))
    assert sorted(valid) == sorted(event.trace_id for event in traces), "the batch's valid records went on"
    headers = dict(dead.headers)
    assert headers[DLQ_REASON] == b"invalid" and headers[DLQ_CONSUMER] == group.encode()
    assert b"trace_id" in headers[DLQ_ERROR]
    assert json.loads(dead.value)["trace_id"] is None


async def test_delete_topics_deletes_a_prefix_and_nothing_else(settings: KaizenSettings) -> None:
    """What a benchmark or a test session made goes when it ends; other prefixes' topics stay."""
    neighbour = settings.model_copy(deep=True)
    neighbour.kafka.topic_prefix = settings.kafka.topic_prefix.rstrip(".") + "x."
    mine = await ensure_topics(settings, [TRACE_INGESTED, TRACE_RAW])
    theirs = await ensure_topics(neighbour, [TRACE_INGESTED], with_dlq=False)

    deleted = await delete_topics(settings)

    assert deleted == sorted(mine) and len(mine) == 4, "both topics and their dead-letter topics"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        left: set[str] = set(mine)
        deadline = asyncio.get_running_loop().time() + TIMEOUT_S
        while left & set(mine) and asyncio.get_running_loop().time() < deadline:
            left = set(await admin.list_topics())
            await asyncio.sleep(0.1)
        assert not left & set(mine), "the deleted topics are gone from the cluster"
        assert set(theirs) <= left, "another prefix's topics are kept"
    finally:
        await admin.close()
    assert await delete_topics(settings) == [], "deleting again finds nothing to do"
    assert await delete_topics(neighbour) == theirs

    with pytest.raises(KaizenError, match="non-empty topic prefixes"):
        await delete_topics(settings, [""])
