"""Ingest throughput: OTLP protobuf batches of 100 spans through the ingest service, against the same
payloads pushed straight into Kafka with aiokafka.

    python -m bench.ingest [--batches 1000] [--connections 8] [--spans-per-trace 1]

Runs the real processes with their real entry points (``python -m services.ingest.http`` and
``python -m services.ingest.worker``) on the local stack (``make stack-up``), in topics, Redis keys and
an Iceberg namespace of their own, and measures in one run:

1. the HTTP intake alone (worker stopped): batches answered 200, i.e. durable on ``trace.raw``;
2. the worker alone, draining that backlog: redaction check, consent gate, deduplication, Iceberg
   commits, ``trace.ingested`` announcements;
3. ingest end to end, both running (the headline): from the first request of a fresh set of batches
   to the last of their traces announced on ``trace.ingested``; the ``traces`` table's row count is
   checked at the end;
4. raw aiokafka: the same records ingest writes to ``trace.raw`` (one per trace, keyed by trace id),
   and then the OTLP request bodies themselves (one message per 100-span batch), each sent with
   ``AIOKafkaProducer.send`` (idempotent, acks=all), as an app publishing to Kafka would.

For each phase it prints the CPU time each process used per span (Linux /proc), so a slow run tells
where the time went, and how busy the whole machine was (other work on a shared machine shows).

The workload: consented chat generations of about 1.4 KB (one in ten carries an e-mail address to
redact). With ``--spans-per-trace 1`` (the default, the hardest case) every span is a generation in
a trace of its own, so each span becomes a row and an event; with 3, a trace is a generation, its
retriever span and the request's root span, as a RAG application sends them.
A benchmark, never a timed test: it prints a table and a closing note with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from services.ingest.auth import secret_digest
from services.ingest.settings import ApiKey, IngestSettings
from shared.bus import delete_topics, ensure_topics
from shared.events import FEEDBACK_RAW, FEEDBACK_RECEIVED, TRACE_INGESTED, TRACE_RAW
from shared.state import RedisState
from shared.store import TRACES, IcebergStore

REPO_ROOT = Path(__file__).resolve().parents[2]
SPANS_PER_BATCH = 100
SYSTEM = "You are the support assistant of an online shoe shop. Answer from the policy excerpts only."
QUESTIONS = [
    "I bought running shoes three weeks ago and they hurt my heel after two runs. Can I still return them, "
    "and do I need the original box? I threw it away, but I still have the receipt from the store.",
    "My order has been stuck in 'processing' since Monday. I paid with PayPal and got a confirmation "
    "e-mail. When will it ship, and can I change the delivery address to my office instead?",
    "Do you have the trail model in size 44 wide? The size guide says wide fits are 2 mm larger but the "
    "product page does not list wide at all. I usually wear 43.5 in other brands.",
]
ANSWER = (
    "You can return unworn shoes within 30 days of delivery for a full refund, and worn shoes within 30 "
    "days if they are faulty. The original box is not required: a receipt or the order number is enough. "
    "Start the return from your account page, print the prepaid label, and drop the parcel at any partner "
    "point. Refunds reach the original payment method within 5 business days of our warehouse receiving "
    "the parcel. If the heel pain came from a defect, mention it in the return form so we can check the pair."
)


def _value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


CONTEXTS = [
    "Returns: unworn items may be returned within 30 days of delivery for a full refund; no box needed.",
    "Faulty items: worn shoes that are faulty may be returned within 30 days; say so on the return form.",
    "Refunds reach the original payment method within 5 business days of the warehouse receiving them.",
]


def _add_span(
    scope_spans: object, trace: bytes, name: str, start: int, end: int, **attributes: object
) -> None:
    span = scope_spans.spans.add()  # type: ignore[attr-defined]
    span.trace_id = trace
    span.span_id = secrets.token_bytes(8)
    span.name = name
    span.kind = 1
    span.start_time_unix_nano = start
    span.end_time_unix_nano = end
    for key, value in attributes.items():
        span.attributes.append(KeyValue(key=key, value=_value(value)))


def batch_template(spans_per_trace: int) -> tuple[bytes, list[list[int]]]:
    """One ExportTraceServiceRequest of 100 spans, and for each trace the byte offsets of its trace id.

    With one span a trace, every span is a chat generation in a trace of its own (each span becomes a
    row and an event: the hardest case). With more, a trace is a generation, the retriever span that
    fed it and the request's root span, plus tool spans: a RAG application's shape.
    """
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=_value("shop-assistant")))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench"
    markers = []
    now = time.time_ns()
    left = SPANS_PER_BATCH
    index = 0
    while left:
        size = min(spans_per_trace, left)
        left -= size
        marker = b"\xfe\xed" + struct.pack(">H", index) + secrets.token_bytes(12)
        markers.append(marker)
        question = QUESTIONS[index % len(QUESTIONS)]
        if index % 10 == 0:
            question += f" Reach me at customer.number.{index}@example.com."
        _add_span(
            scope_spans,
            marker,
            "chat SmolLM2-135M-Instruct",
            now - 850_000_000,
            now,
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "kaizen",
                "gen_ai.request.model": "SmolLM2-135M-Instruct",
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
                        {"role": "user", "parts": [{"type": "text", "content": question}]},
                    ]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": ANSWER}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
                "gen_ai.usage.input_tokens": 96,
                "gen_ai.usage.output_tokens": 84,
                "user.id": f"user-{index % 37}",
                "session.id": f"session-{index % 11}",
                "user_consent": True,
                "kaizen.model_version": "3",
            },
        )
        if size >= 2:
            documents = {f"retrieval.documents.{n}.document.content": text for n, text in enumerate(CONTEXTS)}
            _add_span(
                scope_spans,
                marker,
                "retrieve policy",
                now - 990_000_000,
                now - 900_000_000,
                **{"openinference.span.kind": "RETRIEVER", "input.value": question, **documents},
            )
        if size >= 3:
            _add_span(scope_spans, marker, "POST /chat", now - 1_000_000_000, now, **{"http.route": "/chat"})
        for tool in range(size - 3):
            _add_span(
                scope_spans,
                marker,
                f"tool {tool}",
                now - 880_000_000,
                now - 860_000_000,
                **{"tool": "lookup"},
            )
        index += 1
    body = request.SerializeToString()
    offsets = []
    for marker in markers:
        found = []
        position = body.find(marker)
        while position >= 0:
            found.append(position)
            position = body.find(marker, position + 1)
        offsets.append(found)
    return body, offsets


class Batches:
    """Request bodies with fresh trace ids, made by patching the template's id bytes (microseconds each)."""

    def __init__(self, spans_per_trace: int = 1) -> None:
        self.template, self.offsets = batch_template(spans_per_trace)
        self.traces = len(self.offsets)
        self.run = secrets.token_bytes(4)
        self.count = 0

    def next(self) -> bytes:
        body = bytearray(self.template)
        self.count += 1
        for index, positions in enumerate(self.offsets):
            trace_id = self.run + struct.pack(">QI", self.count, index + 1)
            for position in positions:
                body[position : position + 16] = trace_id
        return bytes(body)


# ---------------------------------------------------------------------------------------------
# A lean HTTP/1.1 client: the load generator shares the CPUs with what it measures.


class Connection:
    def __init__(self, host: str, port: int, authorization: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST /v1/traces HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-protobuf\r\n"
            f"Authorization: {authorization}\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------------------


def bench_settings() -> IngestSettings:
    tag = uuid.uuid4().hex[:10]
    settings = IngestSettings(project_id=f"bench{tag}")
    settings.kafka.topic_prefix = f"bench{tag}."
    settings.catalog.namespace = f"bench_{tag}"
    settings.redis.key_prefix = f"bench{tag}:"
    return settings


def service_env(settings: IngestSettings, port: int, api_key: ApiKey) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAIZEN_")}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_HOME": str(settings.home),
        "KAIZEN_LOG_LEVEL": "WARNING",
        "KAIZEN_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_REDIS__URL": settings.redis.url,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_CATALOG__URI": settings.catalog.uri or "",
        "KAIZEN_CATALOG__WAREHOUSE": settings.catalog.warehouse or "",
        "KAIZEN_INGEST__PORT": str(port),
        "KAIZEN_INGEST__API_KEYS": json.dumps([api_key.model_dump()]),
    }
    return env


async def topic_size(settings: IngestSettings, logical_topic: str) -> int:
    topic = settings.kafka.topic(logical_topic)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        while not (found := consumer.partitions_for_topic(topic)):
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets([TopicPartition(topic, partition) for partition in found])
    finally:
        await consumer.stop()
    return sum(ends.values())


async def wait_for(settings: IngestSettings, logical_topic: str, count: int, timeout_s: float) -> float:
    """Poll the topic's size until it holds ``count`` records; return when it did."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if await topic_size(settings, logical_topic) >= count:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{logical_topic} did not reach {count} records in {timeout_s:.0f}s")
        await asyncio.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kafka_broker_pid(settings: IngestSettings) -> int | None:
    """The local stack's Kafka broker process, when it runs on this machine (for its CPU figure)."""
    home = str(settings.home)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "kafka.Kafka" in command and home in command:
            return int(entry.name)
    return None


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far, all cores (Linux /proc/stat)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def send_batches(
    port: int, authorization: str, batches: Batches, count: int, connections: int
) -> float:
    """Send ``count`` batches over ``connections`` keep-alive connections; return when the last 200 came."""
    remaining = count
    statuses: dict[int, int] = {}

    async def run(connection: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body = batches.next()
            while True:
                status = await connection.post(body)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    break
                await asyncio.sleep(0.2)  # 429/503: back off and send the same batch again

    pool = [Connection("127.0.0.1", port, authorization) for _ in range(connections)]
    try:
        await asyncio.gather(*(run(connection) for connection in pool))
    finally:
        for connection in pool:
            await connection.close()
    if set(statuses) - {200}:
        print(f"  answers: {statuses} (non-200 were retried)", file=sys.stderr)
    return time.perf_counter()


async def raw_producer(
    settings: IngestSettings, logical_topic: str, records: Sequence[tuple[bytes, bytes]]
) -> float:
    """Seconds to push ``records`` through one idempotent acks=all aiokafka producer, one ``send`` each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    topic = settings.kafka.topic(logical_topic)
    try:
        await producer.send_and_wait(topic, records[0][1], key=records[0][0])
        start = time.perf_counter()
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return time.perf_counter() - start
    finally:
        await producer.stop()


class Meter:
    """Wall time and CPU time (per process and the whole machine) over one phase."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.start_s = time.perf_counter()
        self.cpu = self._cpu()

    def _cpu(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids] + [machine_cpu_seconds()]

    def stop(self, spans: int) -> tuple[float, list[float]]:
        """Spans per second, and CPU microseconds per span for each process and for the machine."""
        elapsed = time.perf_counter() - self.start_s
        used = [after - before for before, after in zip(self.cpu, self._cpu(), strict=True)]
        return spans / elapsed, [seconds / spans * 1e6 for seconds in used]


def start_service(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"bench-ingest-{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.ingest.{name}"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )


async def main(arguments: argparse.Namespace) -> None:
    settings = bench_settings()
    try:
        await run(arguments, settings)
    finally:
        await clean_up(settings)


async def clean_up(settings: IngestSettings) -> None:
    """Delete the run's topics and Redis keys: a run writes about a gigabyte to Kafka, which the broker
    would otherwise keep for its retention time (a week on the local stack)."""
    topics = await delete_topics(settings)
    state = RedisState(settings)
    try:
        keys = await state.drop_all()
    finally:
        await state.close()
    print(f"cleaned up: {len(topics)} topics, {keys} Redis keys", file=sys.stderr)


async def run(arguments: argparse.Namespace, settings: IngestSettings) -> None:
    public_key, secret_key = f"pk-bench-{secrets.token_hex(6)}", f"sk-bench-{secrets.token_urlsafe(24)}"
    api_key = ApiKey(
        project_id=settings.project_id, public_key=public_key, secret_sha256=secret_digest(secret_key)
    )
    authorization = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    with socket_port() as port:
        pass
    env = service_env(settings, port, api_key)
    await ensure_topics(settings, [TRACE_RAW, FEEDBACK_RAW, TRACE_INGESTED, FEEDBACK_RECEIVED])
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    batches = Batches(arguments.spans_per_trace)
    spans = arguments.batches * SPANS_PER_BATCH
    traces = arguments.batches * batches.traces
    warmup = arguments.warmup * batches.traces
    me = os.getpid()
    http = start_service("http", env, logs)
    worker: subprocess.Popen[bytes] | None = None
    try:
        await wait_for_http(port)
        # 1. The intake alone (no worker yet): trace.raw fills up.
        await send_batches(port, authorization, batches, arguments.warmup, arguments.connections)
        print(f"1/3 intake alone: {arguments.batches} batches of {SPANS_PER_BATCH} spans...", file=sys.stderr)
        meter = Meter([http.pid, me])
        await send_batches(port, authorization, batches, arguments.batches, arguments.connections)
        http_rate, http_cpu = meter.stop(spans)
        # 2. The worker alone, draining that backlog (timed from its first announcement).
        print("2/3 worker alone, draining the backlog...", file=sys.stderr)
        worker = start_service("worker", env, logs)
        await wait_for(settings, TRACE_INGESTED, 1, 120)
        meter = Meter([worker.pid, me])
        first = await topic_size(settings, TRACE_INGESTED)
        await wait_for(settings, TRACE_INGESTED, warmup + traces, 900)
        worker_rate, worker_cpu = meter.stop((warmup + traces - first) * SPANS_PER_BATCH // batches.traces)
        # 3. Both together: the sustained rate from the first request to the last announcement.
        print(f"3/3 end to end: {arguments.batches} more batches...", file=sys.stderr)
        broker = kafka_broker_pid(settings)
        meter = Meter([http.pid, worker.pid, me, broker or me])
        await send_batches(port, authorization, batches, arguments.batches, arguments.connections)
        await wait_for(settings, TRACE_INGESTED, warmup + 2 * traces, 900)
        end_to_end, both_cpu = meter.stop(spans)
        store = IcebergStore(settings)
        snapshot = store.catalog.load_table(store.identifier(TRACES)).current_snapshot()
        rows = int(snapshot.summary.get("total-records") or 0) if snapshot and snapshot.summary else 0
        announced = await topic_size(settings, TRACE_INGESTED)
        sample = await sample_records(settings, TRACE_RAW, batches.traces)
    finally:
        for process in (http, worker):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)

    # 4. The same payloads, straight into Kafka.
    print("raw aiokafka producer...", file=sys.stderr)
    per_record = [sample[i % len(sample)] for i in range(traces)]
    await ensure_topics(settings, ["raw.spans", "raw.batches"], with_dlq=False)
    raw_span_rate = spans / await raw_producer(settings, "raw.spans", per_record)
    bodies = [(secrets.token_hex(16).encode(), batches.next()) for _ in range(arguments.batches)]
    raw_batch_rate = spans / await raw_producer(settings, "raw.batches", bodies)

    cpus = os.cpu_count() or 1
    http_us, worker_us, generator_us, kafka_us, machine_us = both_cpu
    if not broker:
        kafka_us = 0.0
    print()
    print(
        f"Ingest throughput: OTLP protobuf batches of {SPANS_PER_BATCH} spans "
        f"({len(batches.template) / 1024:.0f} KiB a batch, {batches.traces} traces of "
        f"{arguments.spans_per_trace} span(s) each), {spans} spans a run, {cpus} CPUs"
    )
    print()
    header = f"| {'path':<62} | {'spans/s':>8} | {'CPU us/span, ingest':>19} | {'machine':>7} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")

    def row(name: str, rate: float, ingest: float | None = None, machine: float | None = None) -> None:
        ingest_text = f"{ingest:,.0f}" if ingest is not None else "-"
        machine_text = f"{machine:,.0f}" if machine is not None else "-"
        print(f"| {name:<62} | {rate:>8,.0f} | {ingest_text:>19} | {machine_text:>7} |")

    row(
        "ingest end to end: HTTP 200 -> Iceberg -> trace.ingested",
        end_to_end,
        http_us + worker_us,
        machine_us,
    )
    row("  HTTP intake alone (until the last 200, worker stopped)", http_rate, http_cpu[0], http_cpu[2])
    row(
        "  worker alone (draining trace.raw into Iceberg + events)", worker_rate, worker_cpu[0], worker_cpu[2]
    )
    row("raw aiokafka, the trace.raw records ingest writes, one per trace", raw_span_rate)
    row("raw aiokafka, one record per batch (the OTLP request bodies)", raw_batch_rate)
    print()
    rest_us = machine_us - http_us - worker_us - generator_us - kafka_us
    kafka_text = f"{kafka_us:.0f} us" if broker else "(not found)"
    busy = machine_us * end_to_end / 1e6 / cpus
    print(
        f"End to end, CPU per span: HTTP intake {http_us:.0f} us, worker {worker_us:.0f} us, "
        f"load generator {generator_us:.0f} us, Kafka broker {kafka_text}, "
        f"everything else on the machine (Redis, other work) {rest_us:.0f} us; machine {busy:.0%} busy."
    )
    own_us = http_us + worker_us + generator_us + kafka_us
    print(
        f"CPU-bound ceiling if nothing else ran on this machine: {cpus} CPUs / {own_us:.0f} us a span "
        f"(ingest, load generator, Kafka) = {cpus * 1e6 / own_us:,.0f} spans/s (an estimate, not measured)."
    )
    print(
        f"Iceberg traces rows: {rows}, trace.ingested events: {announced} (expected {warmup + 2 * traces})."
    )
    print(
        f"Closing note: ingest sustained {end_to_end:,.0f} spans/s end to end (target >= 10,000). "
        f"Raw aiokafka pushed the same spans at {raw_span_rate:,.0f}/s as one record per trace "
        f"(ratio {end_to_end / raw_span_rate:.2f}, target >= 0.5), and the same request bodies "
        f"at {raw_batch_rate:,.0f} spans/s as one record per batch (ratio {end_to_end / raw_batch_rate:.2f})."
    )


class socket_port:
    """A free loopback port (closed again before the intake binds it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


async def wait_for_http(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if (await reader.readline()).split()[1] == b"200":
                writer.close()
                return
        except (OSError, IndexError):
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError("the ingest HTTP intake did not start")
        await asyncio.sleep(0.2)


async def sample_records(
    settings: IngestSettings, logical_topic: str, count: int
) -> list[tuple[bytes, bytes]]:
    """The first ``count`` records of a topic as (key, value)."""
    topic = settings.kafka.topic(logical_topic)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        while len(out) < count:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                out += [(message.key or b"", message.value or b"") for message in messages]
    finally:
        await consumer.stop()
    return out[:count]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--batches", type=int, default=1000, help="batches of 100 spans a phase (default 1000)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="batches sent and landed before timing")
    parser.add_argument("--connections", type=int, default=8, help="concurrent HTTP connections")
    parser.add_argument(
        "--spans-per-trace",
        type=int,
        default=1,
        help="1: every span a generation in its own trace (default); 3: generation + retriever + root span",
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_arguments()))
