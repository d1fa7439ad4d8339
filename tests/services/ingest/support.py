"""Helpers of the ingest tests: API keys, the HTTP intake served in the test's event loop, reading back
what landed (Kafka topics, Iceberg tables), and OTLP/JSON builders."""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.ingest.api.main import create_app as create_http_app
from services.ingest.auth import secret_digest
from services.ingest.settings import ApiKey, IngestSettings
from shared.events import EVENT_BY_TOPIC, FEEDBACK_RECEIVED, TRACE_INGESTED
from shared.settings import KaizenSettings
from shared.store import IcebergStore
from tests.fixtures.topics import read_records

TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Key:
    """A project's API key pair, as an app holds it."""

    project_id: str
    public_key: str
    secret_key: str

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.public_key, self.secret_key)

    def entry(self) -> ApiKey:
        return ApiKey(
            project_id=self.project_id,
            public_key=self.public_key,
            secret_sha256=secret_digest(self.secret_key),
        )


def new_key(project_id: str) -> Key:
    return Key(project_id, f"pk-lf-{secrets.token_hex(8)}", f"sk-lf-{secrets.token_urlsafe(24)}")


def free_port() -> int:
    """A loopback port nothing holds now, drawn from below the kernel's ephemeral range (32768-60999).

    A port the kernel hands out for ``bind(0)`` may be handed out again to the next process that
    asks, before the test's server binds it: Ray Serve's proxy lost its port that way to one of Ray's
    own processes (``Failed to bind to address``), which start between the choice and the bind.
    """
    for port in random.sample(range(20_000, 32_000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


def ingest_settings_for(settings: KaizenSettings, *keys: Key, **options: Any) -> IngestSettings:
    """Ingest settings on top of a test's isolated settings, with these keys and options."""
    ingest = IngestSettings(**settings.model_dump())
    ingest.ingest.api_keys = [key.entry() for key in keys]
    ingest.ingest.port = free_port()
    ingest.ingest.fetch_max_wait_ms = 100
    ingest.ingest.batch_timeout_ms = 100
    for name, value in options.items():
        setattr(ingest.ingest, name, value)
    return ingest


class Intake:
    """The HTTP intake served by uvicorn on a free loopback port, inside the test's event loop."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.ingest.port}"
        config = uvicorn.Config(
            create_http_app(settings),
            host="127.0.0.1",
            port=settings.ingest.port,
            log_config=None,
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Intake:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(TIMEOUT_S):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


# ---------------------------------------------------------------------------------------------
# Reading back


async def read_topic(
    settings: KaizenSettings, logical_topic: str, *, at_least: int, settle_s: float = 1.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic from its beginning: ``at_least`` of them, and any more within ``settle_s``."""
    return await read_records(
        settings, logical_topic, at_least=at_least, settle_s=settle_s, timeout_s=TIMEOUT_S
    )


def events(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    """The records' JSON values; announcements are validated against their event models on the way."""
    out = []
    for record in records:
        document = json.loads(record.value)
        model = EVENT_BY_TOPIC.get(str(document.get("type")))
        if model is not None and model.topic in (TRACE_INGESTED, FEEDBACK_RECEIVED):
            model.model_validate_json(record.value)
        out.append(document)
    return out


async def wait_for_rows(
    settings: KaizenSettings, table: str, count: int, *, settle_s: float = 0.5
) -> list[dict[str, Any]]:
    """The table's rows once it has at least ``count`` (and ``settle_s`` later, to catch extras)."""
    store = IcebergStore(settings)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        rows = await asyncio.to_thread(_rows, store, table)
        if len(rows) >= count:
            await asyncio.sleep(settle_s)
            return await asyncio.to_thread(_rows, store, table)
        if time.monotonic() > deadline:
            raise AssertionError(f"{table}: {len(rows)} rows after {TIMEOUT_S}s, expected {count}")
        await asyncio.sleep(0.2)


def _rows(store: IcebergStore, table: str) -> list[dict[str, Any]]:
    try:
        data: pa.Table = store.read(table)
    except Exception as exc:  # the table does not exist until the first append
        if "NoSuchTable" in type(exc).__name__:
            return []
        raise
    return data.to_pylist()


# ---------------------------------------------------------------------------------------------
# OTLP/JSON builders


def hex_id(length: int) -> str:
    return secrets.token_hex(length // 2)


def attribute(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": any_value(value)}


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [attribute(k, v) for k, v in value.items()]}}
    return {"stringValue": str(value)}


def span_json(
    attributes: dict[str, Any],
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    name: str = "chat",
    duration_ms: float = 250.0,
    **extra: Any,
) -> dict[str, Any]:
    end = time.time_ns()
    return {
        "traceId": trace_id or hex_id(32),
        "spanId": span_id or hex_id(16),
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(end - int(duration_ms * 1e6)),
        "endTimeUnixNano": end,
        "attributes": [attribute(k, v) for k, v in attributes.items()],
        **extra,
    }


def otlp_json(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [attribute(k, v) for k, v in (resource or {"service.name": "shop"}).items()]
                },
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": list(spans)}],
            }
        ]
    }


def generation(prompt: str, response: str, *, consent: bool | None = True, **more: Any) -> dict[str, Any]:
    """Attributes of a GenAI-convention chat generation."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "SmolLM2-135M-Instruct",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": response}]}]
        ),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
    }
    if consent is not None:
        attributes["user_consent"] = consent
    attributes.update(more)
    return attributes


# ---------------------------------------------------------------------------------------------
# Processes


def settings_env(settings: IngestSettings, **ingest_options: Any) -> dict[str, str]:
    """The environment that gives a service process the same settings (``KAIZEN_*``) as ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAIZEN_")}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "KAIZEN_ENVIRONMENT": settings.environment,
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_HOME": str(settings.home),
        "KAIZEN_LOG_LEVEL": "INFO",
        "KAIZEN_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_KAFKA__RETRY_BACKOFF_S": str(settings.kafka.retry_backoff_s),
        "KAIZEN_REDIS__URL": settings.redis.url,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_CATALOG__URI": settings.catalog.uri or "",
        "KAIZEN_CATALOG__WAREHOUSE": settings.catalog.warehouse or "",
        "KAIZEN_INGEST__API_KEYS": json.dumps([key.model_dump() for key in settings.ingest.api_keys]),
        "KAIZEN_INGEST__PORT": str(settings.ingest.port),
    }
    for name, value in ingest_options.items():
        env[f"KAIZEN_INGEST__{name.upper()}"] = str(value)
    return env


async def topic_size(settings: KaizenSettings, logical_topic: str) -> int:
    """How many records a topic holds (the sum of its partitions' end offsets)."""
    topic = settings.kafka.topic(logical_topic)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not (found := consumer.partitions_for_topic(topic)):
                await asyncio.sleep(0.05)
        ends = await consumer.end_offsets([TopicPartition(topic, partition) for partition in sorted(found)])
    finally:
        await consumer.stop()
    return sum(ends.values())
