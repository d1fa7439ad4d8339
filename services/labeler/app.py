"""The labeler service's FastStream app: thin handlers over ``labeling`` and ``curator``.

Consumer groups (KEDA scales each Deployment on its group's lag):

- ``labeler`` (``LABELER_GROUP``): trace.ingested and feedback.received, in batches; writes ``labels``
  and publishes trace.labeled;
- ``curator`` (``CURATOR_GROUP``): trace.labeled and trace.ingested (live error rate); a background
  loop checks the time-based triggers and builds requested datasets, publishing dataset.ready.

Each role is one Kafka consumer on both of its topics (one group member per process), so stopping or
scaling a replica never leaves a group waiting on a sibling consumer of the same process. Batches are
validated message by message: an invalid one goes to ``<topic>.dlq`` with the bus's headers and the
rest of the batch is handled. The batch is committed only after its labels are written and published
(retries and dead letters of a failing batch: ``shared.bus``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from services.labeler.curator import Curator
from services.labeler.labeling import Labeler
from services.labeler.settings import LabelerSettings
from shared.bus import (
    create_broker,
    declare_publisher,
    ensure_topics,
    publish_event,
    split_batch,
)
from shared.events import (
    DATASET_READY,
    FEEDBACK_RECEIVED,
    TRACE_INGESTED,
    TRACE_LABELED,
    DatasetReady,
    Envelope,
    FeedbackReceived,
    TraceIngested,
    TraceLabeled,
)
from shared.rewards import RewardScorer, load_reward_config
from shared.rewards.embeddings import SentenceEmbedder
from shared.state import RedisState
from shared.store import IcebergStore
from shared.telemetry import RegistryMetrics

SERVICE = "labeler"
LABELER_GROUP = "labeler"
"""Consumer group of the labeler role (trace.ingested, feedback.received)."""
CURATOR_GROUP = "curator"
"""Consumer group of the curator role (trace.labeled, trace.ingested)."""
TOPICS = (TRACE_INGESTED, FEEDBACK_RECEIVED, TRACE_LABELED, DATASET_READY)

log = logging.getLogger("kaizen.labeler")


class LabelerMetrics(RegistryMetrics):
    """What the labeler counts beyond the bus's message metrics. One instance per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.labels = Counter(
            "kaizen_labels_total", "Labels written, by label version kind", ["kind"], registry=registry
        )
        self.missing = Counter(
            "kaizen_reward_component_missing_total",
            "Labels with a component that could not be computed, by component",
            ["component"],
            registry=registry,
        )
        self.gated = Counter(
            "kaizen_reward_gated_total", "Labels zeroed by a gate, by gate", ["gate"], registry=registry
        )
        self.datasets = Counter(
            "kaizen_datasets_total", "Datasets built, by trigger reason", ["reason"], registry=registry
        )


class Resources:
    """What the handlers use, created on startup (models load here, never at import)."""

    def __init__(self, settings: LabelerSettings, roles: Sequence[str]) -> None:
        self.settings = settings
        self.roles = tuple(roles)
        self._labeler: Labeler | None = None
        self._curator: Curator | None = None
        self.scorer: RewardScorer | None = None
        self.state: RedisState | None = None
        self.http: httpx.AsyncClient | None = None
        self._champion: tuple[float, str | None] = (0.0, None)

    @property
    def labeler(self) -> Labeler:
        if self._labeler is None:
            raise RuntimeError("the labeler role is not started")
        return self._labeler

    @property
    def curator(self) -> Curator:
        if self._curator is None:
            raise RuntimeError("the curator role is not started")
        return self._curator

    async def start(self) -> None:
        settings = self.settings
        await ensure_topics(settings, list(TOPICS))
        config = load_reward_config(settings.labeler.reward_config)
        embedder = await asyncio.to_thread(
            SentenceEmbedder.shared,
            None,
            settings.labeler.embedding_device,
            settings.labeler.embedding_precision,
        )
        store = IcebergStore(settings)
        self.state = RedisState(settings)
        if "labeler" in self.roles:
            judge = settings.judge if settings.labeler.judge_enabled else None
            self.scorer = await asyncio.to_thread(RewardScorer.create, config, judge=judge, embedder=embedder)
            self._labeler = Labeler(
                store,
                self.state,
                self.scorer,
                state_ttl_s=settings.labeler.state_ttl_s,
                use_judge=settings.labeler.judge_enabled,
            )
        if "curator" in self.roles:
            self.http = httpx.AsyncClient(timeout=5.0)
            self._curator = Curator(
                settings.curator,
                IcebergStore(settings),
                self.state,
                embedder,
                config,
                self.champion_version,
                state_ttl_s=settings.labeler.state_ttl_s,
            )
        log.info(
            "labeler started",
            extra={
                "roles": list(self.roles),
                "reward_config_hash": config.config_hash,
                "judge": settings.judge.base_url if settings.labeler.judge_enabled else None,
            },
        )

    async def close(self) -> None:
        if self.scorer is not None:
            await self.scorer.close()
        if self.http is not None:
            await self.http.aclose()
        if self.state is not None:
            await self.state.close()

    async def champion_version(self) -> str | None:
        """The version holding MLflow's ``champion`` alias (REST API: the image needs no mlflow)."""
        checked_at, version = self._champion
        if time.monotonic() - checked_at < self.settings.curator.champion_cache_s and checked_at:
            return version
        version = None
        if self.http is not None:
            try:
                response = await self.http.get(
                    f"{self.settings.mlflow.tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias",
                    params={"name": self.settings.mlflow.registered_model, "alias": "champion"},
                )
                if response.status_code == 200:
                    version = str(response.json()["model_version"]["version"])
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.info("champion version unknown", extra={"error": repr(exc)})
        self._champion = (time.monotonic(), version)
        return version


def subscribe_topics(
    broker: KafkaBroker, settings: LabelerSettings, topics: Sequence[str], consumer: str, **options: Any
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """``shared.bus.subscribe`` for several topics: one consumer of group ``consumer`` reads them all."""
    options.setdefault("auto_offset_reset", "earliest")
    decorator: Callable[[Callable[..., Awaitable[Any]]], Any] = broker.subscriber(
        *(settings.kafka.topic(topic) for topic in topics),
        group_id=settings.kafka.group(consumer),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **options,
    )
    return decorator


def create_app(
    settings: LabelerSettings | None = None,
    *,
    roles: Sequence[str] | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> FastStream:
    """The labeler app for these settings and roles (both roles unless ``settings.labeler.roles`` says)."""
    settings = settings or LabelerSettings()
    roles = tuple(roles or settings.labeler.roles)
    broker = create_broker(settings, SERVICE, logger=log, registry=registry)
    metrics = LabelerMetrics.of(registry)
    labeled_out = declare_publisher(broker, settings, TraceLabeled)
    dataset_out = declare_publisher(broker, settings, DatasetReady)
    resources = Resources(settings, roles)
    batching: dict[str, Any] = {
        "batch": True,
        "max_records": settings.labeler.batch_size,
        "batch_timeout_ms": settings.labeler.batch_timeout_ms,
    }
    labeler_group = settings.kafka.group(LABELER_GROUP)
    curator_group = settings.kafka.group(CURATOR_GROUP)
    wake = asyncio.Event()

    async def publish_labels(events: Sequence[TraceLabeled]) -> None:
        for event in events:
            await publish_event(labeled_out, event)
            metrics.labels.labels("first" if event.label_version == 1 else "update").inc()
            for name, value in event.components.items():
                if value is None:
                    metrics.missing.labels(name).inc()
            if event.gated_by:
                metrics.gated.labels(event.gated_by).inc()

    ingested, feedback, labeled = (
        settings.kafka.topic(name) for name in (TRACE_INGESTED, FEEDBACK_RECEIVED, TRACE_LABELED)
    )

    if "labeler" in roles:

        @subscribe_topics(broker, settings, [FEEDBACK_RECEIVED, TRACE_INGESTED], LABELER_GROUP, **batching)
        async def label(message: KafkaMessage) -> None:
            models: dict[str, type[Envelope]] = {ingested: TraceIngested, feedback: FeedbackReceived}
            events = await split_batch(broker, message, models, labeler_group)
            # Feedback first: a trace arriving in the same batch is then labeled with it at once.
            for batch in (
                await resources.labeler.apply_feedback(events[feedback]),
                await resources.labeler.label_traces(events[ingested]),
            ):
                await publish_labels(batch.events)
                await resources.labeler.done(batch)

    if "curator" in roles:

        @subscribe_topics(broker, settings, [TRACE_LABELED, TRACE_INGESTED], CURATOR_GROUP, **batching)
        async def curate(message: KafkaMessage) -> None:
            models: dict[str, type[Envelope]] = {labeled: TraceLabeled, ingested: TraceIngested}
            events = await split_batch(broker, message, models, curator_group)
            await resources.curator.on_ingested(events[ingested])
            await resources.curator.on_labeled(events[labeled])
            wake.set()

    async def publish_dataset(event: DatasetReady) -> None:
        await publish_event(dataset_out, event)
        metrics.datasets.labels(event.trigger_reason).inc()
        log.info(
            "dataset.ready published",
            extra={"dataset_id": event.dataset_id, "reason": event.trigger_reason, "sizes": event.sizes},
        )

    stopping = asyncio.Event()
    loop_task: list[asyncio.Task[None]] = []

    async def curate_forever() -> None:
        """Check time-based triggers and serve build requests every tick (or when woken) until shutdown.

        Shutdown sets ``stopping`` rather than cancelling: Python 3.11's ``wait_for`` can swallow a
        cancellation that races with its own completion, and this loop waits a lot.
        """
        while not stopping.is_set():
            try:
                async with asyncio.timeout(settings.curator.tick_s):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()
            if stopping.is_set():
                break
            try:
                await resources.curator.tick(publish_dataset)
            except Exception:  # logged; the request stays in Redis and the next tick retries it
                log.exception("curator tick failed")

    async def start_curator_loop() -> None:
        if "curator" in roles:
            stopping.clear()
            loop_task.append(asyncio.create_task(curate_forever(), name="curator"))

    async def stop_curator_loop() -> None:
        stopping.set()
        wake.set()
        if loop_task:
            _, pending = await asyncio.wait(loop_task, timeout=60)
            for task in pending:  # a build still running after a minute: it resumes on restart
                task.cancel()
        loop_task.clear()

    return FastStream(
        broker,
        logger=log,
        on_startup=[resources.start],
        after_startup=[start_curator_loop],
        on_shutdown=[stop_curator_loop],
        after_shutdown=[resources.close],
    )


app = create_app()
"""``faststream run services.labeler.app:app`` / ``faststream docs gen services.labeler.app:app``."""
