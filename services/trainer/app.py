"""The trainer's consumer: a FastStream app on ``dataset.ready`` that records a training job and acknowledges.

``python -m services.trainer`` (or ``faststream run services.trainer.app:app``) runs it. The handler never
trains: a job that runs for an hour must not hold the poll loop (Kafka would redeliver the message). It
submits the job to Redis (``services.trainer.jobs``), one per dataset id (a duplicate or redelivered
``dataset.ready`` finds the job and does nothing), and returns; the offset is then committed. Workers
(``python -m services.trainer.worker``) train the jobs and publish ``checkpoint.trained`` or
``training.failed``.
"""

from __future__ import annotations

import logging

from faststream import FastStream
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from services.trainer.jobs import JobQueue
from services.trainer.launcher import KubernetesLauncher
from services.trainer.settings import TrainerSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, subscribe
from shared.events import DATASET_READY, CheckpointTrained, DatasetReady, TrainingFailed
from shared.state import RedisState
from shared.telemetry import serve_metrics

SERVICE = "trainer"
CONSUMER_GROUP = "trainer"
"""Consumer group of the trainer on ``dataset.ready`` (KEDA scales the consumer on its lag)."""

log = logging.getLogger("kaizen.trainer")


class Submissions:
    """The consumer's resources, created on startup: the job queue in Redis."""

    def __init__(self, settings: TrainerSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.state: RedisState | None = None
        self.queue: JobQueue | None = None
        self.launcher: KubernetesLauncher | None = None
        self.submitted = Counter(
            "kaizen_trainer_submissions_total",
            "dataset.ready events by what became of them (queued, duplicate)",
            ["outcome"],
            registry=registry,
        )

    async def start(self) -> None:
        await ensure_topics(self.settings, [DATASET_READY])
        self.state = RedisState(self.settings)
        self.queue = JobQueue(
            self.state, lease_s=self.settings.trainer.lease_s, ttl_s=self.settings.trainer.job_ttl_s
        )
        if self.settings.trainer.launcher == "kubernetes":
            self.launcher = KubernetesLauncher(
                self.settings.trainer.job_template_dir, self.settings.trainer.namespace
            )
        if self.settings.metrics_port is not None:
            serve_metrics(self.settings.metrics_port)
        log.info("trainer consumer ready", extra={"group": self.settings.kafka.group(CONSUMER_GROUP)})

    async def stop(self) -> None:
        if self.state is not None:
            await self.state.close()

    async def submit(self, event: DatasetReady) -> bool:
        assert self.queue is not None, "the consumer has not started"
        queued = await self.queue.submit(event)
        if self.launcher is not None:  # idempotent: also creates the Job a failed earlier attempt did not
            await self.launcher.launch(event)
        self.submitted.labels("queued" if queued else "duplicate").inc()
        log.info(
            "training job queued" if queued else "duplicate dataset.ready: the dataset already has a job",
            extra={
                "dataset_id": event.dataset_id,
                "event_id": str(event.event_id),
                "algorithm": event.algorithm,
            },
        )
        return queued


def create_app(
    settings: TrainerSettings | None = None, *, registry: CollectorRegistry = REGISTRY
) -> FastStream:
    """The consumer app for these settings (the environment's by default)."""
    settings = settings or TrainerSettings()
    broker = create_broker(settings, SERVICE, logger=log, registry=registry)
    submissions = Submissions(settings, registry)
    # The workers publish the outcomes; declaring them here documents the service's topics.
    declare_publisher(broker, settings, CheckpointTrained)
    declare_publisher(broker, settings, TrainingFailed)

    @subscribe(broker, settings, DATASET_READY, CONSUMER_GROUP, title="dataset.ready:trainer")
    async def on_dataset_ready(event: DatasetReady) -> None:
        """Record a training job for the dataset (once per dataset id) and acknowledge."""
        await submissions.submit(event)

    app = FastStream(broker, on_startup=[submissions.start], after_shutdown=[submissions.stop])
    app.context.set_global("submissions", submissions)
    return app
