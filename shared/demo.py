"""`make demo`: bring the local stack up and push sample traffic through what exists of the loop.

Today that is the foundation: every event type goes through the real Kafka broker and back,
validated; a malformed message lands on its dead-letter topic while the consumer carries on; sample
traces land in the Iceberg ``traces`` table; the model registry answers. As each service lands, the
demo routes its traffic through that service instead (the closed loop is the last step).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from faststream.kafka import KafkaMessage
from rich.console import Console
from rich.table import Table

from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event, subscribe
from shared.events import EVENT_TYPES, TRACE_INGESTED, Envelope, dlq_topic
from shared.registry import ModelRegistry
from shared.samples import sample_events, sample_trace
from shared.settings import KaizenSettings
from shared.stack import Stack
from shared.store import TRACES, IcebergStore

console = Console()


def _handler(model: type[Envelope], received: dict[str, float], sent_at: dict[str, float]) -> Any:
    async def handle(event: Any) -> None:
        received[event.type] = time.perf_counter() - sent_at[event.type]

    handle.__annotations__["event"] = model
    return handle


async def run_bus(settings: KaizenSettings) -> tuple[dict[str, float], int]:
    await ensure_topics(settings)
    broker = create_broker(settings, "demo")
    received: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    for model in EVENT_TYPES:
        subscribe(broker, settings, model.topic, f"demo-{model.topic}")(_handler(model, received, sent_at))
    dead: list[bytes] = []

    @subscribe(broker, settings, dlq_topic(TRACE_INGESTED), "demo-operator")
    async def on_dead_letter(message: KafkaMessage) -> None:
        dead.append(message.body)

    publishers = {model: declare_publisher(broker, settings, model) for model in EVENT_TYPES}
    async with broker:
        await broker.start()
        await broker.publish(b'{"type": "trace.ingested"}', topic=settings.kafka.topic(TRACE_INGESTED))
        for event in sample_events(settings.project_id, producer="demo"):
            sent_at[event.type] = time.perf_counter()
            await publish_event(publishers[type(event)], event)
        deadline = time.monotonic() + 60
        while (len(received) < len(EVENT_TYPES) or not dead) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return received, len(dead)


def main() -> int:
    settings = KaizenSettings()
    console.rule("[bold]Kaizen demo: the local stack")
    Stack(settings).up(log=lambda line: console.print(f"  {line}"))

    run_tag = uuid.uuid4().hex[:8]
    settings.kafka.topic_prefix = f"demo-{run_tag}."
    console.rule("[bold]Every event through the real broker")
    received, dead = asyncio.run(run_bus(settings))
    table = Table("topic", "delivered and validated", "latency (ms)")
    for model in EVENT_TYPES:
        latency = received.get(model.topic)
        table.add_row(
            model.topic,
            "yes" if latency is not None else "[red]no",
            f"{latency * 1000:.1f}" if latency else "-",
        )
    console.print(table)
    console.print(
        f"malformed message on {TRACE_INGESTED}: {dead} sent to {dlq_topic(TRACE_INGESTED)}, "
        "consumer carried on"
    )

    console.rule("[bold]Sample traces into Iceberg")
    store = IcebergStore(settings)
    rows = []
    for _ in range(5):
        trace = sample_trace(settings.project_id)
        rows.append(
            {
                "trace_id": trace.trace_id,
                "project_id": trace.project_id,
                "ts": trace.started_at,
                "model": trace.model,
                "consent": trace.consent,
                "prompt": trace.prompt,
                "response": trace.response,
                "contexts": trace.contexts,
            }
        )
    snapshot = store.append(TRACES, rows)
    console.print(
        f"{len(rows)} traces appended to {store.identifier(TRACES)} (snapshot {snapshot}); "
        f"the table holds {store.read(TRACES).num_rows} rows"
    )

    console.rule("[bold]Model registry")
    registry = ModelRegistry(settings)
    console.print(f"MLflow experiment {registry.experiment_id()} at {settings.mlflow.tracking_uri}")
    ok = len(received) == len(EVENT_TYPES) and dead == 1 and snapshot is not None
    console.rule("[bold green]demo finished" if ok else "[bold red]demo incomplete")
    console.print(f"Stack logs: {settings.home / 'logs'}; stop it with `scripts/stack down`.")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
