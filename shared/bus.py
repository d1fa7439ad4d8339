"""Kafka through FastStream, with Kaizen's delivery rules.

- The producer is idempotent with ``acks=all``: a publish returns only once the broker has the record.
- A consumer commits its offset only after its handler succeeded, or after the message was put on the
  dead-letter topic: nothing is skipped, nothing is lost.
- A message that can never be valid (bad JSON, wrong schema, ``InvalidMessage``) goes to
  ``<topic>.dlq`` at once. Any other failure is retried ``handler_retries`` times with exponential
  backoff, then goes to ``<topic>.dlq``. The DLQ record is the original message (value, key, headers)
  plus headers naming the error, the consumer, and where it came from. The consumer carries on.
- Metrics: FastStream's Prometheus middleware (messages in and out, failures, handler latency) plus
  consumer lag and dead letters (``shared.telemetry.BusMetrics``).

A service builds its broker with ``create_broker``, declares publishers with ``declare_publisher`` and
subscribers with ``subscribe``; its handlers take typed events and never see any of this.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pydantic
from aiokafka import TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fast_depends.exceptions import ValidationError as DependencyValidationError
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.message import StreamMessage
from prometheus_client import REGISTRY, CollectorRegistry

from shared.errors import InvalidMessage, KaizenError
from shared.events import DLQ_SUFFIX, EVENT_TYPES, Envelope, dlq_topic
from shared.settings import KaizenSettings
from shared.telemetry import BusMetrics

DLQ_ERROR = "kaizen-dlq-error"
DLQ_REASON = "kaizen-dlq-reason"
DLQ_CONSUMER = "kaizen-dlq-consumer"
DLQ_SOURCE = "kaizen-dlq-source"
DLQ_ATTEMPTS = "kaizen-dlq-attempts"
DLQ_AT = "kaizen-dlq-at"

INVALID_ERRORS: tuple[type[BaseException], ...] = (
    InvalidMessage,
    DependencyValidationError,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)
"""Failures no retry can fix: the message goes to the DLQ at once."""


def dead_letter_headers(
    record: Any, error: str, *, reason: str, consumer: str, attempts: int
) -> dict[str, str]:
    """A DLQ copy's headers: the record's own, plus why it failed, who gave up and where it came from."""
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    return headers | {
        DLQ_ERROR: error[:4000],
        DLQ_REASON: reason,
        DLQ_CONSUMER: consumer,
        DLQ_SOURCE: f"{record.topic}/{record.partition}@{record.offset}",
        DLQ_ATTEMPTS: str(attempts),
        DLQ_AT: datetime.now(UTC).isoformat(),
    }


class DeliveryPolicy:
    """Retries, dead letters and lag for one broker (one service)."""

    def __init__(
        self,
        service: str,
        retries: int,
        backoff_s: float,
        logger: logging.Logger,
        metrics: BusMetrics,
    ) -> None:
        self.service = service
        self.retries = retries
        self.backoff_s = backoff_s
        self.logger = logger
        self.metrics = metrics
        self.broker: KafkaBroker | None = None

    async def dead_letter(
        self, msg: StreamMessage[Any], error: BaseException, *, attempts: int, reason: str, consumer: str
    ) -> None:
        """Put the message (every record of it, for a batch subscriber) on its topic's DLQ."""
        if self.broker is None:
            raise RuntimeError("the delivery policy has no broker")
        for record in _records(msg):
            await self.dead_letter_record(record, error, attempts=attempts, reason=reason, consumer=consumer)

    async def dead_letter_record(
        self, record: Any, error: BaseException, *, attempts: int, reason: str, consumer: str
    ) -> None:
        """Put one Kafka record on its topic's DLQ, with headers naming the error and where it came from."""
        if self.broker is None:
            raise RuntimeError("the delivery policy has no broker")
        headers = dead_letter_headers(
            record, f"{type(error).__name__}: {error}", reason=reason, consumer=consumer, attempts=attempts
        )
        await self.broker.publish(
            record.value, topic=dlq_topic(record.topic), key=record.key, headers=headers
        )
        self.metrics.dead_letters.labels(self.service, record.topic, reason).inc()
        self.logger.warning(
            "message sent to the dead-letter topic",
            extra={
                "topic": record.topic,
                "dlq_topic": dlq_topic(record.topic),
                "consumer": consumer,
                "reason": reason,
                "attempts": attempts,
                "error": headers[DLQ_ERROR],
                "event_id": _event_id(record.value),
            },
        )

    def record_lag(self, msg: StreamMessage[Any], consumer_name: str) -> None:
        highwater = getattr(getattr(msg, "consumer", None), "highwater", None)
        if highwater is None:
            return
        last: dict[tuple[str, int], int] = {}
        for record in _records(msg):
            key = (record.topic, record.partition)
            last[key] = max(last.get(key, -1), record.offset)
        for (topic, partition), offset in last.items():
            end = highwater(TopicPartition(topic, partition))
            if end is not None:
                self.metrics.consumer_lag.labels(self.service, topic, str(partition), consumer_name).set(
                    max(0, end - offset - 1)
                )


def _records(msg: StreamMessage[Any]) -> tuple[Any, ...]:
    """The Kafka records behind a message: one, or several for a batch subscriber."""
    raw = msg.raw_message
    return tuple(raw) if isinstance(raw, tuple | list) else (raw,)


class _DeliveryMiddleware(BaseMiddleware):
    """Retry, then dead-letter; return normally so the message is committed and the consumer goes on."""

    def __init__(self, msg: Any, /, *, context: Any, policy: DeliveryPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Callable[[Any], Any], msg: StreamMessage[Any]) -> Any:
        policy = self.policy
        consumer = _consumer_name(self.context, msg)
        topic = str(getattr(_records(msg)[0], "topic", "unknown"))
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await call_next(msg)
            except Exception as error:
                if topic.endswith(DLQ_SUFFIX):
                    # A dead letter whose handler fails is logged and stays on its DLQ: never a .dlq.dlq.
                    policy.logger.error(
                        "dead-letter handler failed; the message stays on its DLQ",
                        extra={"topic": topic, "consumer": consumer, "error": repr(error)},
                    )
                    break
                if isinstance(error, INVALID_ERRORS):
                    await policy.dead_letter(
                        msg, error, attempts=attempt, reason="invalid", consumer=consumer
                    )
                    break
                if attempt > policy.retries:
                    await policy.dead_letter(
                        msg, error, attempts=attempt, reason="retries_exhausted", consumer=consumer
                    )
                    break
                policy.metrics.retries.labels(policy.service, topic).inc()
                policy.logger.info(
                    "handler failed, retrying",
                    extra={
                        "topic": topic,
                        "attempt": attempt,
                        "error": repr(error),
                        "event_id": _event_id(msg.body),
                    },
                )
                await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
            else:
                policy.record_lag(msg, consumer)
                return result
        policy.record_lag(msg, consumer)
        return None


def _consumer_name(context: Any, msg: StreamMessage[Any]) -> str:
    handler = context.get_local("handler_", None) if context is not None else None
    group = getattr(handler, "group_id", None) or getattr(getattr(msg, "consumer", None), "_group_id", None)
    return str(group or "unknown")


def _event_id(body: bytes | None) -> str | None:
    try:
        value = json.loads(body or b"").get("event_id")
    except (ValueError, AttributeError, TypeError):
        return None
    return str(value) if value is not None else None


def create_broker(
    settings: KaizenSettings,
    service: str,
    *,
    logger: logging.Logger | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> KafkaBroker:
    """A FastStream Kafka broker with Kaizen's delivery rules and metrics, for one service."""
    log = logger or logging.getLogger(f"kaizen.{service}")
    policy = DeliveryPolicy(
        service=service,
        retries=settings.kafka.handler_retries,
        backoff_s=settings.kafka.retry_backoff_s,
        logger=log,
        metrics=BusMetrics.of(registry),
    )

    def delivery(msg: Any, /, *, context: Any) -> _DeliveryMiddleware:
        return _DeliveryMiddleware(msg, context=context, policy=policy)

    broker = KafkaBroker(
        settings.kafka.bootstrap_servers,
        client_id=f"kaizen-{service}",
        enable_idempotence=True,
        acks="all",
        middlewares=[
            KafkaPrometheusMiddleware(registry=registry, app_name=service, metrics_prefix="kaizen"),
            delivery,
        ],
        logger=log,
        description=f"Kaizen {service}",
    )
    policy.broker = broker
    POLICIES[id(broker)] = policy
    return broker


POLICIES: dict[int, DeliveryPolicy] = {}
"""Each broker's delivery policy, for handlers that dead-letter single records of a batch."""


async def split_batch(
    broker: KafkaBroker, message: StreamMessage[Any], models: dict[str, type[Envelope]], consumer: str
) -> dict[str, list[Any]]:
    """A batch's valid events by physical topic; each invalid record goes to its own DLQ at once.

    A batch subscriber whose handler takes the raw ``KafkaMessage`` calls this: one record that fails
    validation is dead-lettered alone (reason ``invalid``) instead of taking its whole batch with it.
    """
    policy = POLICIES[id(broker)]
    events: dict[str, list[Any]] = {topic: [] for topic in models}
    for record in _records(message):
        try:
            events[record.topic].append(
                pydantic.TypeAdapter(models[record.topic]).validate_json(record.value or b"")
            )
        except pydantic.ValidationError as error:
            await policy.dead_letter_record(record, error, attempts=1, reason="invalid", consumer=consumer)
    return events


def subscribe(
    broker: KafkaBroker,
    settings: KaizenSettings,
    topic: str,
    consumer: str,
    **options: Any,
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """A subscriber on a logical topic in consumer group ``consumer`` that commits only after success.

    Use it as FastStream's own decorator: ``@subscribe(broker, settings, TRACE_RAW, "ingest-worker")``.
    A new group starts from the earliest offset, so nothing published before it joined is missed.
    """
    options.setdefault("auto_offset_reset", "earliest")
    decorator: Callable[[Callable[..., Awaitable[Any]]], Any] = broker.subscriber(
        settings.kafka.topic(topic),
        group_id=settings.kafka.group(consumer),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **options,
    )
    return decorator


def declare_publisher(
    broker: KafkaBroker, settings: KaizenSettings, event_type: type[Envelope]
) -> DefaultPublisher:
    """A publisher of one event type on its topic, with the schema in the AsyncAPI document."""
    return broker.publisher(
        settings.kafka.topic(event_type.topic),
        schema=event_type,
        title=event_type.topic,
        description=(event_type.__doc__ or event_type.topic).strip().splitlines()[0],
    )


async def publish_event(publisher: DefaultPublisher, event: Envelope) -> None:
    """Publish one event, keyed by its correlation id, and wait for the broker's acknowledgement."""
    await publisher.publish(event, key=event.key(), headers={"kaizen-event-type": event.type})


async def ensure_topics(
    settings: KaizenSettings, topics: Sequence[str] | None = None, *, with_dlq: bool = True
) -> list[str]:
    """Create Kaizen's topics (and their DLQs) with the configured partitions; existing ones are kept."""
    logical = list(topics) if topics is not None else [event.topic for event in EVENT_TYPES]
    names = [settings.kafka.topic(name) for name in logical]
    if with_dlq:
        names += [dlq_topic(name) for name in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, settings.kafka.partitions, settings.kafka.replication_factor)
            for name in names
            if name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        await _wait_for_leaders(admin, names)
    finally:
        await admin.close()
    return names


async def delete_topics(settings: KaizenSettings, prefixes: Sequence[str] | None = None) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (the settings' topic prefix by
    default), dead-letter topics included; return the names deleted.

    For benchmarks and test sessions that made topics of their own: a broker keeps a topic's records
    for its retention time (a week locally), and one ingest benchmark writes about a gigabyte.
    An empty prefix would name every topic of the cluster, and is refused.
    """
    chosen = list(prefixes) if prefixes is not None else [settings.kafka.topic_prefix]
    if not chosen or not all(chosen):
        raise KaizenError(f"delete_topics needs non-empty topic prefixes, got {chosen!r}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        names = sorted(name for name in await admin.list_topics() if name.startswith(tuple(chosen)))
        refused: list[str] = []
        for start in range(0, len(names), 500):  # a bounded request, however many a test session made
            response = await admin.delete_topics(names[start : start + 500])
            refused += [
                f"{topic} ({errors.for_code(code).__name__})"
                for topic, code in response.topic_error_codes
                # gone meanwhile (deleted by someone else) is what was asked for
                if code not in (0, errors.UnknownTopicOrPartitionError.errno)
            ]
        if refused:
            raise KaizenError(f"the broker did not delete {len(refused)} topics: {', '.join(refused[:5])}")
    finally:
        await admin.close()
    return names


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: Sequence[str], timeout_s: float = 30.0
) -> None:
    """Return once every partition of ``topics`` has a leader, so first produces and fetches succeed."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(list(topics))
        if all(
            topic.get("error_code", 0) == 0
            and topic.get("partitions")
            and all(partition.get("leader", -1) >= 0 for partition in topic["partitions"])
            for topic in described
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics without a partition leader after {timeout_s:.0f}s: {list(topics)}")
        await asyncio.sleep(0.1)
