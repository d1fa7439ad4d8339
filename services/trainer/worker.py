"""The training worker: ``python -m services.trainer.worker``.

It claims jobs from Redis (``services.trainer.jobs``), holds each job's lease while it trains (a
heartbeat renews it), runs the job (``services.trainer.job.run_training``) in a thread so the heartbeat
keeps beating, and publishes the outcome: ``checkpoint.trained`` with the registered version, or
``training.failed`` with the reason. A worker that dies mid-job loses the lease; the next worker (or
this one, restarted) claims the job and resumes it from its last checkpoint, in the same MLflow run.

On SIGTERM or SIGINT the worker asks the running job to stop: it saves a checkpoint at the end of the
current step and goes back on the queue, then the worker exits.

Outcomes are published with deterministic event ids (from the dataset id, or the registered version), so
a worker that crashed between publishing and recording does not announce a different fact again.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Coroutine
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from services.trainer.errors import TrainingFailure
from services.trainer.jobs import JobQueue, JobRecord
from services.trainer.settings import TrainerSettings
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import (
    CHECKPOINT_TRAINED,
    DATASET_READY,
    TRAINING_FAILED,
    CheckpointTrained,
    TrainingFailed,
    TrainingFailureReason,
)
from shared.state import RedisState
from shared.telemetry import RegistryMetrics, configure_logging, serve_metrics

SERVICE = "trainer-worker"
EVENT_NAMESPACE = uuid.UUID("5b0f3c1e-7d8a-4c55-9f0e-6b7a2f1d9c40")

log = logging.getLogger("kaizen.trainer.worker")


class WorkerMetrics(RegistryMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter(
            "kaizen_trainer_jobs_total",
            "Training job attempts by outcome (succeeded, failed, retried, interrupted, lost)",
            ["outcome"],
            registry=registry,
        )
        self.running = Gauge("kaizen_trainer_jobs_running", "Jobs training in this worker", registry=registry)
        self.step = Gauge("kaizen_trainer_step", "Optimizer step of the running job", registry=registry)


_TRAINING_MODULES = (
    "services.trainer.data",
    "services.trainer.job",
    "services.trainer.rewards",
    "services.trainer.trainers",
    "shared.kernels.grpc_backend",
    "shared.kernels.torch_backend",
    "mlflow",
)


def _preload() -> None:
    for name in _TRAINING_MODULES:
        importlib.import_module(name)


class _Hooks:
    """The running job's line to its worker; called from the training thread."""

    def __init__(self, worker: TrainingWorker, record: JobRecord, loop: asyncio.AbstractEventLoop) -> None:
        self.worker = worker
        self.record = record
        self.loop = loop
        self.lost = threading.Event()

    def _soon(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run_started(self, run_id: str) -> None:
        """Record the MLflow run before training, and wait for it: a resume must find the same run."""
        future = asyncio.run_coroutine_threadsafe(self.worker.update(self.record, run_id=run_id), self.loop)
        future.result(timeout=60)

    def started(self, run_id: str, max_steps: int, resumed_from_step: int | None) -> None:
        note = f"training to step {max_steps}" + (
            f", resumed from step {resumed_from_step}" if resumed_from_step is not None else ""
        )
        self._soon(
            self.worker.update(
                self.record, max_steps=max_steps, resumed_from_step=resumed_from_step, note=note
            )
        )

    def progress(self, step: int) -> None:
        self.worker.metrics.step.set(step)
        self._soon(self.worker.update(self.record, step=step))

    def should_stop(self) -> bool:
        return self.worker.stopping.is_set()

    def lease_lost(self) -> bool:
        return self.lost.is_set()


class TrainingWorker:
    """Claims jobs one at a time and trains them; see the module docstring."""

    def __init__(
        self,
        settings: TrainerSettings,
        *,
        worker_id: str | None = None,
        registry: CollectorRegistry = REGISTRY,
        backend: Any = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = WorkerMetrics.of(registry)
        self.backend = backend
        self.stopping = threading.Event()
        self.state: RedisState | None = None
        self.queue: JobQueue | None = None
        self.broker: KafkaBroker | None = None
        self._publishers: dict[str, Any] = {}

    async def start(self) -> None:
        settings = self.settings
        # Import the training stack now, in a thread: an import on the event loop (tens of seconds for
        # torch, transformers, TRL and MLflow) would stall the heartbeat and cost a running job its lease.
        await asyncio.to_thread(_preload)
        await ensure_topics(settings, [DATASET_READY, CHECKPOINT_TRAINED, TRAINING_FAILED])
        self.state = RedisState(settings)
        self.queue = JobQueue(self.state, lease_s=settings.trainer.lease_s, ttl_s=settings.trainer.job_ttl_s)
        self.broker = create_broker(settings, SERVICE, logger=log)
        self._publishers = {
            CHECKPOINT_TRAINED: declare_publisher(self.broker, settings, CheckpointTrained),
            TRAINING_FAILED: declare_publisher(self.broker, settings, TrainingFailed),
        }
        await self.broker.start()
        log.info("training worker ready", extra={"worker": self.worker_id})

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
        if self.state is not None:
            await self.state.close()

    # The loop

    async def run(self) -> None:
        """Claim and train jobs until asked to stop."""
        assert self.queue is not None
        while not self.stopping.is_set():
            claimed = await self.queue.claim(timeout_s=self.settings.trainer.poll_s)
            if claimed is not None:
                await self.process(*claimed)

    async def process(self, record: JobRecord, lease: Lock) -> None:
        """Train one claimed job (its lease held) to an outcome, and let the lease go."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        hooks = _Hooks(self, record, loop)
        heartbeat = asyncio.create_task(self._heartbeat(lease, hooks))
        self.metrics.running.inc()
        try:
            record.attempts += 1
            record.status = "running"
            record.worker = self.worker_id
            record.note(f"attempt {record.attempts} on {self.worker_id}")
            await self.queue.save(record)
            if record.attempts > self.settings.trainer.max_attempts:
                await self._fail(
                    record,
                    "error",
                    f"gave up after {record.attempts - 1} attempts; last: "
                    f"{record.detail or 'its worker was lost (killed, e.g. out of memory, or node gone)'}",
                )
                return
            if record.model_version and not record.published:  # registered before a crash: announce it
                await self._succeed(record)
                return
            await self._train(record, hooks)
        finally:
            heartbeat.cancel()
            self.metrics.running.dec()
            try:
                await lease.release()
            except LockError:
                pass

    async def _train(self, record: JobRecord, hooks: _Hooks) -> None:
        from services.trainer.job import JobContext, JobInterrupted, LeaseLost, run_training
        from shared.kernels.errors import KernelUnavailableError

        assert self.queue is not None
        context = JobContext(event=record.dataset_ready, run_id=record.run_id, on_run=hooks.run_started)
        try:
            result = await asyncio.to_thread(run_training, self.settings, context, hooks, self.backend)
        except TrainingFailure as failure:
            await self._fail(record, failure.reason, failure.detail, step=failure.step)
        except LeaseLost:
            self.metrics.jobs.labels("lost").inc()
            log.error("lease lost; the job is left to its new owner", extra={"dataset_id": record.dataset_id})
        except JobInterrupted as stopped:
            self.metrics.jobs.labels("interrupted").inc()
            record.attempts -= 1  # not a failed attempt
            await self.update(record, status="queued", note=str(stopped))
            await self.queue.requeue(record.dataset_id)
        except Exception as exc:
            reason: TrainingFailureReason = (
                "kernel_unavailable" if isinstance(exc, KernelUnavailableError) else "error"
            )
            detail = f"{type(exc).__name__}: {exc}"
            log.exception("training attempt failed", extra={"dataset_id": record.dataset_id})
            if record.attempts >= self.settings.trainer.max_attempts:
                await self._fail(record, reason, f"after {record.attempts} attempts: {detail}")
            else:
                self.metrics.jobs.labels("retried").inc()
                await self.update(record, status="queued", detail=detail, note=f"attempt failed: {detail}")
                await self.queue.requeue(record.dataset_id)
        else:
            await self.update(
                record,
                run_id=result.run_id,
                step=result.global_step,
                model_version=result.model_version,
                model_uri=result.model_uri,
                metrics=result.metrics,
            )
            await self._succeed(record)

    async def _succeed(self, record: JobRecord) -> None:
        assert self.queue is not None and record.model_version is not None and record.model_uri is not None
        event_in = record.dataset_ready
        name = self.settings.mlflow.registered_model
        event = CheckpointTrained(
            event_id=uuid.uuid5(EVENT_NAMESPACE, f"checkpoint.trained:{name}:{record.model_version}"),
            producer="trainer",
            project_id=event_in.project_id,
            correlation_id=record.model_version,
            model_version=record.model_version,
            registered_model=name,
            model_uri=record.model_uri,
            run_id=record.run_id or "",
            dataset_id=record.dataset_id,
            algorithm=self.settings.training.algorithm or event_in.algorithm,
            base_model=self.settings.training.base_model,
            metrics=record.metrics,
        )
        await publish_event(self._publishers[CHECKPOINT_TRAINED], event)
        await self.update(record, status="succeeded", published=True, note=f"registered {record.model_uri}")
        await self.queue.release(record.dataset_id)
        self.metrics.jobs.labels("succeeded").inc()
        log.info(
            "training job succeeded",
            extra={"dataset_id": record.dataset_id, "model_uri": record.model_uri, "run_id": record.run_id},
        )

    async def _fail(
        self, record: JobRecord, reason: TrainingFailureReason, detail: str, step: int | None = None
    ) -> None:
        assert self.queue is not None
        event_in = record.dataset_ready
        if record.run_id is not None and reason in ("error", "kernel_unavailable"):
            await asyncio.to_thread(self._fail_run, record.run_id, reason, detail)
        event = TrainingFailed(
            event_id=uuid.uuid5(EVENT_NAMESPACE, f"training.failed:{record.dataset_id}"),
            producer="trainer",
            project_id=event_in.project_id,
            correlation_id=record.dataset_id,
            dataset_id=record.dataset_id,
            algorithm=self.settings.training.algorithm or event_in.algorithm,
            reason=reason,
            detail=detail,
            run_id=record.run_id,
            base_model=self.settings.training.base_model,
            step=step if step is not None else record.step,
            attempts=max(1, record.attempts),
        )
        await publish_event(self._publishers[TRAINING_FAILED], event)
        await self.update(record, status="failed", reason=reason, detail=detail, note=f"failed: {reason}")
        await self.queue.release(record.dataset_id)
        self.metrics.jobs.labels("failed").inc()
        log.error(
            "training job failed", extra={"dataset_id": record.dataset_id, "reason": reason, "detail": detail}
        )

    def _fail_run(self, run_id: str, reason: str, detail: str) -> None:
        from services.trainer.job import RunTracker

        tracker = RunTracker(self.settings)
        tracker.run_id = run_id
        tracker.fail(reason, detail)

    async def update(self, record: JobRecord, note: str | None = None, **changes: Any) -> None:
        """Apply changes to the job record and save it."""
        assert self.queue is not None
        for name, value in changes.items():
            setattr(record, name, value)
        if note:
            record.note(note)
        await self.queue.save(record)

    async def _heartbeat(self, lease: Lock, hooks: _Hooks) -> None:
        while True:
            await asyncio.sleep(self.settings.trainer.heartbeat_s)
            try:
                await lease.reacquire()
            except LockError:
                hooks.lost.set()
                log.error(
                    "the job's lease could not be renewed", extra={"dataset_id": hooks.record.dataset_id}
                )
                return


async def run_one(settings: TrainerSettings, dataset_id: str) -> int:
    """Run the job of one dataset to its end (``python -m services.trainer.job``); see ``job.main``."""
    worker = TrainingWorker(settings)
    await worker.start()
    try:
        assert worker.queue is not None
        record = await worker.queue.get(dataset_id)
        if record is None:
            log.error("no training job for this dataset", extra={"dataset_id": dataset_id})
            return 2
        if record.status in ("succeeded", "failed"):
            log.info("the job already ended", extra={"dataset_id": dataset_id, "status": record.status})
            return 0
        lease = worker.queue.lease(dataset_id)
        if not await lease.acquire():
            log.warning("another worker holds the job", extra={"dataset_id": dataset_id})
            return 75
        record = await worker.queue.get(dataset_id)
        assert record is not None
        await worker.process(record, lease)
        final = await worker.queue.get(dataset_id)
        return 0 if final is not None and final.status in ("succeeded", "failed") else 75
    finally:
        await worker.stop()


async def serve(settings: TrainerSettings) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    worker = TrainingWorker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    if settings.metrics_port is not None:
        serve_metrics(settings.metrics_port)
    await worker.start()
    try:
        await worker.run()
    finally:
        await worker.stop()


def main() -> None:
    settings = TrainerSettings()
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
