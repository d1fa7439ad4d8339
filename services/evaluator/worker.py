"""The evaluation worker: claims evaluation jobs from Redis, evaluates, records in MLflow, publishes.

It runs inside ``python -m services.evaluator`` beside the consumer (``app.py`` starts it) and scales
with it. For each claimed job (its lease held, a heartbeat renewing it): ``evaluation.evaluate``, then
``recording.record_evaluation``, then ``eval.passed`` or ``eval.failed``. In manual-approval mode a
passed candidate is recorded ``awaiting_approval`` and its ``eval.passed`` is kept on the job until
``services.evaluator.approve`` publishes it.

Outcome events have deterministic ids (from the registered model and version), so an evaluation redone
after a crash does not announce a different fact under a new id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from services.evaluator.evaluation import Evaluation, create_scorer, evaluate
from services.evaluator.jobs import EvalJob, EvalJobs
from services.evaluator.recording import record_evaluation
from services.evaluator.settings import EvaluatorSettings
from shared.bus import declare_publisher, publish_event
from shared.events import EVAL_FAILED, EVAL_PASSED, EvalFailed, EvalPassed
from shared.registry import ModelRegistry
from shared.rewards import RewardScorer
from shared.state import RedisState

SERVICE = "evaluator"
EVENT_NAMESPACE = uuid.UUID("a3f6c2d4-1b7e-4f0a-9c85-2d6e4b1f7a90")

log = logging.getLogger("kaizen.evaluator.worker")


def outcome_event(evaluation: Evaluation, project_id: str) -> EvalPassed | EvalFailed:
    """The event announcing an evaluation's outcome (a deterministic id per version and outcome)."""
    name, version = evaluation.registered_model, evaluation.model_version
    common: dict[str, Any] = {
        "producer": SERVICE,
        "project_id": project_id,
        "correlation_id": version,
        "model_version": version,
        "registered_model": name,
        "champion_version": evaluation.champion.version,
        "metrics": evaluation.candidate_metrics,
        "verdicts": evaluation.verdicts,
        "reason": evaluation.reason,
    }
    if evaluation.passed:
        return EvalPassed(event_id=uuid.uuid5(EVENT_NAMESPACE, f"eval.passed:{name}:{version}"), **common)
    return EvalFailed(event_id=uuid.uuid5(EVENT_NAMESPACE, f"eval.failed:{name}:{version}"), **common)


class EvaluationWorker:
    """Claims evaluation jobs one at a time and runs them; see the module docstring."""

    def __init__(
        self, settings: EvaluatorSettings, broker: KafkaBroker, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.publishers = {
            EVAL_PASSED: declare_publisher(broker, settings, EvalPassed),
            EVAL_FAILED: declare_publisher(broker, settings, EvalFailed),
        }
        self.outcomes = Counter(
            "kaizen_evaluations_total",
            "Evaluations by outcome (passed, failed, awaiting_approval, error, retried)",
            ["outcome"],
            registry=registry,
        )
        self.state: RedisState | None = None
        self.jobs: EvalJobs | None = None
        self.scorer: RewardScorer | None = None
        self.model_registry: ModelRegistry | None = None
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        options = self.settings.evaluator
        self.state = RedisState(self.settings)
        self.jobs = EvalJobs(self.state, lease_s=options.lease_s, ttl_s=options.job_ttl_s)
        self.model_registry = ModelRegistry(self.settings)
        # Loading MiniLM (and ragas) takes seconds: in a thread, before any job is claimed.
        self.scorer = await asyncio.to_thread(create_scorer, self.settings)

    async def start_loop(self) -> None:
        """Claim and run jobs in the background until ``stop`` (once the broker can publish)."""
        self._task = asyncio.create_task(self.run(), name="evaluation-worker")

    async def stop(self) -> None:
        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.scorer is not None:
            await self.scorer.close()
        if self.state is not None:
            await self.state.close()

    async def run(self) -> None:
        assert self.jobs is not None
        while not self.stopping.is_set():
            try:
                claimed = await self.jobs.claim(timeout_s=self.settings.evaluator.poll_s)
            except Exception:
                log.exception("claiming an evaluation job failed")
                await asyncio.sleep(self.settings.evaluator.poll_s)
                continue
            if claimed is not None:
                await self.process(*claimed)

    async def process(self, job: EvalJob, lease: Lock) -> None:
        """Run one claimed job to an outcome (or back onto the queue) and let its lease go."""
        assert self.jobs is not None
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            job.attempts += 1
            job.status = "running"
            job.note(f"attempt {job.attempts}")
            await self.jobs.save(job)
            try:
                await self._evaluate(job)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                log.exception("evaluation failed", extra={"job": job.key, "attempt": job.attempts})
                if job.attempts >= self.settings.evaluator.max_attempts:
                    await self._give_up(job, detail)
                else:
                    self.outcomes.labels("retried").inc()
                    job.status, job.detail = "queued", detail
                    job.note(f"attempt failed: {detail}")
                    await self.jobs.save(job)
                    await self.jobs.requeue(job.key)
        finally:
            heartbeat.cancel()
            try:
                await lease.release()
            except LockError:
                pass

    async def _evaluate(self, job: EvalJob) -> None:
        assert self.jobs is not None and self.scorer is not None and self.model_registry is not None
        event = job.checkpoint
        evaluation = await evaluate(self.settings, event, scorer=self.scorer, registry=self.model_registry)
        awaiting = evaluation.passed and self.settings.evaluator.manual_approval
        job.run_id = await asyncio.to_thread(
            record_evaluation, self.model_registry, evaluation, event.project_id, awaiting_approval=awaiting
        )
        outcome = outcome_event(evaluation, event.project_id)
        job.outcome = outcome.model_dump(mode="json")
        if awaiting:
            job.status = "awaiting_approval"
            job.note("passed; waiting for an approval")
            await self.jobs.save(job)
        else:
            await publish_event(self.publishers[outcome.type], outcome)
            job.status = "passed" if evaluation.passed else "failed"
            job.published = True
            job.note(f"{job.status}: {evaluation.reason[:300]}")
            await self.jobs.save(job)
        await self.jobs.release(job.key)
        self.outcomes.labels(job.status).inc()
        log.info(
            "evaluation decided",
            extra={"job": job.key, "status": job.status, "reason": evaluation.reason, "run_id": job.run_id},
        )

    async def _give_up(self, job: EvalJob, detail: str) -> None:
        """An evaluation that errored on every attempt fails the candidate, with the error as the reason."""
        assert self.jobs is not None and self.model_registry is not None
        event = job.checkpoint
        reason = f"evaluation error after {job.attempts} attempts: {detail}"
        failed = EvalFailed(
            event_id=uuid.uuid5(
                EVENT_NAMESPACE, f"eval.failed:{event.registered_model}:{event.model_version}"
            ),
            producer=SERVICE,
            project_id=event.project_id,
            correlation_id=event.model_version,
            model_version=event.model_version,
            registered_model=event.registered_model,
            reason=reason,
        )
        try:
            await asyncio.to_thread(self._tag_failure, event.registered_model, event.model_version, reason)
        except Exception:
            log.exception("could not tag the failed evaluation", extra={"job": job.key})
        await publish_event(self.publishers[EVAL_FAILED], failed)
        job.status, job.detail, job.published = "failed", detail, True
        job.outcome = failed.model_dump(mode="json")
        job.note(reason[:300])
        await self.jobs.save(job)
        await self.jobs.release(job.key)
        self.outcomes.labels("error").inc()

    def _tag_failure(self, name: str, version: str, reason: str) -> None:
        from services.evaluator.recording import FAILED, TAG_REASON, TAG_STATUS

        assert self.model_registry is not None
        self.model_registry.tag(version, TAG_STATUS, FAILED, name)
        self.model_registry.tag(version, TAG_REASON, reason[:5000], name)

    async def _heartbeat(self, lease: Lock) -> None:
        while True:
            await asyncio.sleep(self.settings.evaluator.heartbeat_s)
            try:
                await lease.reacquire()
            except LockError:
                log.error("the evaluation's lease could not be renewed")
                return
