"""`make demo`: bring the local stack up and push sample traffic through what exists of the loop.

Today: every event type goes through the real Kafka broker and back, validated; a malformed message
lands on its dead-letter topic while the consumer carries on; then the ingest service runs as its
two processes (HTTP intake and worker, the containers' entry points) and sample production traffic
goes through it with the production client: consented traces land in the Iceberg ``traces`` table
and on trace.ingested, the others are refused for training; the model registry answers. As each
service lands, the demo routes its traffic through that service too (the closed loop comes last).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from faststream.kafka import KafkaMessage
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event, subscribe
from shared.client import KaizenClient
from shared.events import (
    EVENT_TYPES,
    FEEDBACK_RECEIVED,
    TRACE_INGESTED,
    Envelope,
    FeedbackReceived,
    FeedbackRecord,
    TraceIngested,
    dlq_topic,
)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(module: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with open(logs / f"demo-{module.rsplit('.', 1)[-1]}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT)


async def run_ingest(settings: KaizenSettings, count: int = 20) -> dict[str, int]:
    """Start the ingest intake and worker (their real entry points), send traces and feedback, count."""
    port = _free_port()
    env = {
        **os.environ,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_INGEST__PORT": str(port),
    }
    logs = settings.home / "logs"
    processes = [_start(module, env, logs) for module in ("services.ingest.http", "services.ingest.worker")]
    traces = [sample_trace(settings.project_id, consent=i % 2 == 0) for i in range(count)]
    wanted = {t.trace_id for t in traces}
    announced: set[str] = set()
    feedback: set[str] = set()
    broker = create_broker(settings, "demo-observer")

    @subscribe(broker, settings, TRACE_INGESTED, "demo-observer-traces")
    async def on_ingested(event: TraceIngested) -> None:
        announced.add(event.trace_id)

    @subscribe(broker, settings, FEEDBACK_RECEIVED, "demo-observer-feedback")
    async def on_feedback(event: FeedbackReceived) -> None:
        feedback.add(event.trace_id)

    accepted = 0
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        async with (
            broker,
            KaizenClient.over_http(
                f"http://127.0.0.1:{port}", public_key="pk-kaizen-dev", secret_key="kaizen-dev-only"
            ) as client,
        ):
            await broker.start()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("sending traces and feedback", total=count)
                for trace in traces:
                    await client.send_trace(trace)
                    kind = "copy" if trace.consent else "dismiss"
                    await client.send_feedback(
                        FeedbackRecord(trace_id=trace.trace_id, project_id=trace.project_id, kind=kind)
                    )
                    accepted += 1
                    progress.advance(task)
            consented = {t.trace_id for t in traces if t.consent}
            deadline = time.monotonic() + 120
            while (announced & wanted) != consented and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    stored = IcebergStore(settings).read(TRACES).column("trace_id").to_pylist()
    return {
        "sent": count,
        "consented": sum(t.consent for t in traces),
        "accepted": accepted,
        "announced": len(announced & wanted),
        "stored": len(set(stored) & wanted),
        "feedback": len(feedback & wanted),
    }


def main() -> int:
    settings = KaizenSettings()
    console.rule("[bold]Kaizen demo: the local stack")
    Stack(settings).up(log=lambda line: console.print(f"  {line}"))

    run_tag = uuid.uuid4().hex[:8]
    settings.kafka.topic_prefix = f"demo-{run_tag}."
    settings.catalog.namespace = f"demo_{run_tag}"
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

    console.rule("[bold]Production traffic through ingest")
    landed = asyncio.run(run_ingest(settings))
    table = Table(
        "traces sent",
        "with consent",
        "answered 200",
        "on trace.ingested",
        "rows in traces",
        "feedback received",
    )
    table.add_row(
        *(str(landed[key]) for key in ("sent", "consented", "accepted", "announced", "stored", "feedback"))
    )
    console.print(table)
    console.print("traces without consent were accepted, counted and kept out of the trainable table")

    console.rule("[bold]Model registry")
    registry = ModelRegistry(settings)
    console.print(f"MLflow experiment {registry.experiment_id()} at {settings.mlflow.tracking_uri}")
    ok = (
        len(received) == len(EVENT_TYPES)
        and dead == 1
        and landed["announced"] == landed["stored"] == landed["consented"]
        and landed["accepted"] == landed["sent"]
    )
    console.rule("[bold green]demo finished" if ok else "[bold red]demo incomplete")
    console.print(f"Stack logs: {settings.home / 'logs'}; stop it with `scripts/stack down`.")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
