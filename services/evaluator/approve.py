"""Manual approval: ``python -m services.evaluator.approve <version> [--by NAME]``.

In manual-approval mode (``KAIZEN_EVALUATOR__MANUAL_APPROVAL=true``) a candidate that passed every gate
waits, tagged ``eval.status=awaiting_approval``. Approving it records who approved and when (tags
``eval.approved_by`` and ``eval.approved_at`` on the version, and the job in Redis), sets the alias
``challenger``, tags ``eval.status=passed`` and publishes the kept ``eval.passed``: only then does the
rollout see it. Approving twice is harmless (the event keeps its id). A version that is not waiting for
an approval (unknown, failed, still running) is refused with its status.

The `kaizen` CLI can mount the same command: ``app.command("approve")(approve_command)``.
"""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime

import typer

from services.evaluator.errors import ApprovalError
from services.evaluator.jobs import EvalJobs, job_key
from services.evaluator.recording import PASSED, TAG_APPROVED_AT, TAG_APPROVED_BY, TAG_STATUS
from services.evaluator.settings import EvaluatorSettings
from services.evaluator.worker import SERVICE
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import EVAL_PASSED, EvalPassed
from shared.registry import CHALLENGER, ModelRegistry
from shared.state import RedisState


async def approve(
    settings: EvaluatorSettings, version: str, approved_by: str, registered_model: str | None = None
) -> EvalPassed:
    """Approve a candidate waiting for approval: tag it, make it the challenger, publish eval.passed."""
    name = registered_model or settings.mlflow.registered_model
    state = RedisState(settings)
    try:
        jobs = EvalJobs(state, lease_s=settings.evaluator.lease_s, ttl_s=settings.evaluator.job_ttl_s)
        job = await jobs.get(job_key(name, str(version)))
        if job is None:
            raise ApprovalError(f"version {version} of {name!r} has no evaluation to approve")
        if job.status == "passed" and job.approved_by is not None and job.outcome is not None:
            return EvalPassed.model_validate(job.outcome)  # approved before: the same fact again
        if job.status != "awaiting_approval" or job.outcome is None:
            raise ApprovalError(
                f"version {version} of {name!r} is not waiting for an approval (its evaluation is "
                f"{job.status!r})"
            )
        event = EvalPassed.model_validate(job.outcome)
        event = event.model_copy(update={"reason": f"{event.reason}; approved by {approved_by}"})
        registry = ModelRegistry(settings)
        now = datetime.now(UTC).isoformat()

        def tag() -> None:
            registry.tag(str(version), TAG_APPROVED_BY, approved_by, name)
            registry.tag(str(version), TAG_APPROVED_AT, now, name)
            registry.tag(str(version), TAG_STATUS, PASSED, name)
            registry.set_alias(CHALLENGER, str(version), name)

        await asyncio.to_thread(tag)
        await ensure_topics(settings, [EVAL_PASSED])
        broker = create_broker(settings, f"{SERVICE}-approve")
        publisher = declare_publisher(broker, settings, EvalPassed)
        await broker.start()
        try:
            await publish_event(publisher, event)
        finally:
            await broker.stop()
        job.status, job.approved_by, job.published = "passed", approved_by, True
        job.outcome = event.model_dump(mode="json")
        job.note(f"approved by {approved_by}")
        await jobs.save(job)
        return event
    finally:
        await state.close()


def approve_command(
    version: str = typer.Argument(..., help="The registered model version to approve."),
    by: str = typer.Option("", "--by", help="Who approves (default: the current user)."),
    model: str = typer.Option("", "--model", help="Registered model name (default: from the settings)."),
) -> None:
    """Approve a candidate that passed the evaluation gate: it becomes the challenger and goes to rollout."""
    settings = EvaluatorSettings()
    try:
        event = asyncio.run(approve(settings, version, by or getpass.getuser(), model or None))
    except ApprovalError as error:
        typer.echo(f"approval refused: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"approved version {event.model_version} of {event.registered_model}: eval.passed published")


def main() -> None:
    typer.run(approve_command)


if __name__ == "__main__":
    main()
