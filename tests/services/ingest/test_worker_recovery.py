"""Every crash window of the worker, made exact: the state a worker killed at each point leaves behind
(in Redis, Iceberg and Kafka) is written first, then the same trace.raw messages are delivered again,
as Kafka does after a crash. Each trace must end up exactly once in the table and on trace.ingested."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from services.ingest.app import create_app
from services.ingest.landing import SNAPSHOT_TOKEN, WORKER, trace_columns, trace_event_id
from services.ingest.ledger import Entry, Ledger, Stage, now_ms
from services.ingest.settings import IngestSettings
from shared.bus import ensure_topics
from shared.client import KaizenClient
from shared.events import TRACE_INGESTED, TableRef, TraceIngested
from shared.samples import sample_trace
from shared.state import RedisState
from shared.store import TRACES, IcebergStore
from tests.services.ingest.support import Key, events, read_topic, wait_for_rows

pytestmark = pytest.mark.integration


async def test_a_redelivered_batch_finishes_what_a_killed_worker_left(
    key: Key, ingest_settings: IngestSettings
) -> None:
    settings = ingest_settings
    await ensure_topics(settings, [TRACE_INGESTED])
    windows = {
        "claimed, killed before the commit": sample_trace(key.project_id),
        "committed, killed before the ledger knew": sample_trace(key.project_id),
        "committed, killed before the ledger knew, its snapshot expired since": sample_trace(key.project_id),
        "announcing, the event was published": sample_trace(key.project_id),
        "announcing, the event was not published": sample_trace(key.project_id),
        "done, killed before the offset commit": sample_trace(key.project_id),
        "never seen": sample_trace(key.project_id),
    }
    trace_of = {window: record.trace_id for window, record in windows.items()}
    state = RedisState(settings)
    ledger = Ledger(state, settings.ingest.dedup_ttl_s)
    store = IcebergStore(settings)

    def ledger_key(window: str) -> str:
        return ledger.key("trace", key.project_id, trace_of[window])

    def append(*names: str, token: str) -> int:
        columns = trace_columns([windows[name] for name in names], datetime.now(UTC))
        snapshot = store.append_columns(TRACES, columns, snapshot_properties={SNAPSHOT_TOKEN: token})
        assert snapshot is not None
        return snapshot

    # What a worker killed at each point leaves behind.
    await ledger.put(
        [ledger_key("claimed, killed before the commit")], [Entry(Stage.PENDING, token="t-lost")]
    )
    expired = await asyncio.to_thread(
        append, "committed, killed before the ledger knew, its snapshot expired since", token="t-expired"
    )
    await ledger.put(
        [ledger_key("committed, killed before the ledger knew, its snapshot expired since")],
        [Entry(Stage.PENDING, token="t-expired")],
    )
    committed = await asyncio.to_thread(append, "committed, killed before the ledger knew", token="t-kept")
    await ledger.put(
        [ledger_key("committed, killed before the ledger knew")], [Entry(Stage.PENDING, token="t-kept")]
    )
    announced = await asyncio.to_thread(
        append,
        "announcing, the event was published",
        "announcing, the event was not published",
        "done, killed before the offset commit",
        token="t-earlier",
    )
    for window in ("announcing, the event was published", "announcing, the event was not published"):
        await ledger.put(
            [ledger_key(window)],
            [Entry(Stage.ANNOUNCING, snapshot_id=announced, announce_started_ms=now_ms())],
        )
    await ledger.put(
        [ledger_key("done, killed before the offset commit")], [Entry(Stage.DONE, snapshot_id=announced)]
    )
    await asyncio.to_thread(store.table(TRACES).maintenance.expire_snapshots().by_id(expired).commit)
    assert store.table(TRACES).snapshot_by_id(expired) is None
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for window in ("announcing, the event was published", "done, killed before the offset commit"):
            record = windows[window]
            event = TraceIngested(
                event_id=trace_event_id(key.project_id, record.trace_id),
                producer=WORKER,
                project_id=key.project_id,
                correlation_id=record.trace_id,
                trace_id=record.trace_id,
                model=record.model,
                consent=True,
                stored=TableRef(table=store.identifier(TRACES), snapshot_id=announced),
            )
            await producer.send_and_wait(
                settings.kafka.topic(TRACE_INGESTED),
                event.model_dump_json().encode(),
                key=record.trace_id.encode(),
            )
    finally:
        await producer.stop()
    await state.close()

    # Kafka delivers the batch again (every window), to a new worker.
    async with create_app(settings), KaizenClient.over_kafka(settings) as kaizen:
        for record in windows.values():
            await kaizen.send_trace(record)
        rows = await wait_for_rows(settings, TRACES, len(windows), settle_s=2.0)
        ingested = events(await read_topic(settings, TRACE_INGESTED, at_least=len(windows), settle_s=2.0))

    row_counts = {window: sum(row["trace_id"] == trace for row in rows) for window, trace in trace_of.items()}
    assert row_counts == dict.fromkeys(windows, 1), row_counts
    event_counts = {
        window: sum(e["trace_id"] == trace for e in ingested) for window, trace in trace_of.items()
    }
    assert event_counts == dict.fromkeys(windows, 1), event_counts
    by_trace = {event["trace_id"]: event for event in ingested}
    assert (
        by_trace[trace_of["committed, killed before the ledger knew"]]["stored"]["snapshot_id"] == committed
    )
    # Its rows prove the commit; the event names a snapshot that holds them.
    stored_in = by_trace[trace_of["committed, killed before the ledger knew, its snapshot expired since"]]
    snapshot_id = stored_in["stored"]["snapshot_id"]
    assert snapshot_id not in (None, expired)
    held = await asyncio.to_thread(store.read_snapshot, TRACES, snapshot_id)
    assert trace_of["committed, killed before the ledger knew, its snapshot expired since"] in set(
        held.column("trace_id").to_pylist()
    )
    assert {event["event_id"] for event in ingested} == {
        str(trace_event_id(key.project_id, trace)) for trace in trace_of.values()
    }
    assert uuid.UUID(by_trace[trace_of["never seen"]]["event_id"]).version == 5

    state = RedisState(settings)
    stages = await Ledger(state, 60).get([ledger_key(window) for window in windows])
    await state.close()
    assert {entry.stage for entry in stages if entry} == {Stage.DONE}
