"""The evaluator's FastStream app: a thin consumer of ``checkpoint.trained`` and the evaluation worker.

``python -m services.evaluator`` (or ``faststream run services.evaluator.app:app``) runs both. The
handler never evaluates: it records an evaluation job in Redis (once per registered version; a duplicate
or redelivered event finds the job and does nothing) and acknowledges. The worker (``worker.py``),
started with the app, claims jobs, evaluates and publishes ``eval.passed`` or ``eval.failed``.
"""

from __future__ import annotations

import logging

from faststream import FastStream
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from services.evaluator.settings import EvaluatorSettings
from services.evaluator.worker import SERVICE, EvaluationWorker
from shared.bus import create_broker, ensure_topics, subscribe
from shared.events import CHECKPOINT_TRAINED, EVAL_FAILED, EVAL_PASSED, CheckpointTrained
from shared.telemetry import serve_metrics

CONSUMER_GROUP = "evaluator"
"""Consumer group of the evaluator on ``checkpoint.trained`` (KEDA scales the Deployment on its lag)."""

log = logging.getLogger("kaizen.evaluator")


def create_app(
    settings: EvaluatorSettings | None = None, *, registry: CollectorRegistry = REGISTRY
) -> FastStream:
    """The evaluator app for these settings (the environment's by default)."""
    settings = settings or EvaluatorSettings()
    broker = create_broker(settings, SERVICE, logger=log, registry=registry)
    worker = EvaluationWorker(settings, broker, registry)
    submitted = Counter(
        "kaizen_evaluator_submissions_total",
        "checkpoint.trained events by what became of them (queued, duplicate)",
        ["outcome"],
        registry=registry,
    )

    async def start() -> None:
        await ensure_topics(settings, [CHECKPOINT_TRAINED, EVAL_PASSED, EVAL_FAILED])
        if settings.metrics_port is not None:
            serve_metrics(settings.metrics_port, registry)
        await worker.start()
        log.info("evaluator ready", extra={"group": settings.kafka.group(CONSUMER_GROUP)})

    @subscribe(broker, settings, CHECKPOINT_TRAINED, CONSUMER_GROUP, title="checkpoint.trained:evaluator")
    async def on_checkpoint_trained(event: CheckpointTrained) -> None:
        """Record an evaluation job for the version (once per version) and acknowledge."""
        assert worker.jobs is not None, "the evaluator has not started"
        queued = await worker.jobs.submit(event)
        submitted.labels("queued" if queued else "duplicate").inc()
        log.info(
            "evaluation queued" if queued else "duplicate checkpoint.trained: the version has a job",
            extra={"model_version": event.model_version, "event_id": str(event.event_id)},
        )

    app = FastStream(broker, on_startup=[start], after_startup=[worker.start_loop], on_shutdown=[worker.stop])
    app.context.set_global("worker", worker)
    return app
